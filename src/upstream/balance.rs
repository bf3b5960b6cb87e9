//! Choosing an endpoint: weighted random among the healthy endpoints that serve the model,
//! standbys (weight 0) only when no weighted one is available, and passive health.
//!
//! Passive health: every attempt reports success or failure; `fail_threshold` failures in a
//! row put an endpoint in cooldown, during which it is only chosen when nothing else is left
//! (a last resort is better than refusing outright). After the cooldown it is tried again; its
//! first success resets it. A 429 with `Retry-After` cools the endpoint down for that long.
//! Per-endpoint counters (requests, errors, retries) live here; [`render_metrics`] writes them
//! and the health state in the Prometheus text format for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics;

/// The longest cooldown a `Retry-After` header may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Counters of one endpoint, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Attempts sent to this endpoint.
    pub requests: AtomicU64,
    /// Attempts that failed (transport error, timeout, 429, 500, 502, 503, 504).
    pub errors: AtomicU64,
    /// Attempts that were a failover from another endpoint.
    pub retries: AtomicU64,
}

/// Mutable health of one endpoint.
#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    cooling_until: Option<Instant>,
}

/// Health and counters of one endpoint.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
    pub counters: Counters,
}

/// A snapshot of one endpoint's health, for `/ready` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub name: String,
    pub url: String,
    /// False while cooling down.
    pub healthy: bool,
    pub consecutive_failures: u32,
    /// Time left in the cooldown, if cooling down.
    pub cooling_down_for: Option<Duration>,
    /// Wall-clock end of the cooldown, if cooling down.
    pub cooling_down_until: Option<SystemTime>,
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of two integers; the data
        // is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the cooldown ends, if the endpoint is cooling down at `now`.
    pub fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.lock().cooling_until.filter(|&t| t > now)
    }

    pub fn success(&self) {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        s.cooling_until = None;
    }

    /// Records a failure; `retry_after` is the upstream's `Retry-After`, if it sent one.
    /// Returns the cooldown if this failure started one.
    pub fn failure(
        &self,
        threshold: u32,
        cooldown: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let was = s.cooling_until.filter(|&t| t > now);
        let mut until = was;
        if s.consecutive_failures >= threshold {
            until = until.max(Some(now + cooldown));
        }
        if let Some(wait) = retry_after {
            until = until.max(Some(now + wait.min(MAX_RETRY_AFTER)));
        }
        s.cooling_until = until;
        match (was, until) {
            (None, Some(t)) => Some(t - now),
            _ => None,
        }
    }

    pub fn report(&self, name: &str, url: &str) -> HealthReport {
        let now = Instant::now();
        let s = self.lock();
        let left = s.cooling_until.filter(|&t| t > now).map(|t| t - now);
        HealthReport {
            name: name.to_string(),
            url: url.to_string(),
            healthy: left.is_none(),
            consecutive_failures: s.consecutive_failures,
            cooling_down_for: left,
            cooling_down_until: left.map(|d| SystemTime::now() + d),
            requests: self.counters.requests.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
        }
    }
}

/// A candidate for the next attempt: index into the endpoint list, weight, cooldown end.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub index: usize,
    pub weight: u32,
    pub cooling_until: Option<Instant>,
}

/// Picks the next endpoint: weighted random among healthy weighted candidates, else uniform
/// among healthy standbys, else the candidate whose cooldown ends first. `None` if empty.
pub fn choose(candidates: &[Candidate], random: u64) -> Option<usize> {
    let healthy = || candidates.iter().filter(|c| c.cooling_until.is_none());
    let total: u64 = healthy().map(|c| u64::from(c.weight)).sum();
    if total > 0 {
        let mut ticket = random % total;
        for c in healthy().filter(|c| c.weight > 0) {
            let w = u64::from(c.weight);
            if ticket < w {
                return Some(c.index);
            }
            ticket -= w;
        }
    }
    let standby: Vec<_> = healthy().collect();
    if !standby.is_empty() {
        let pick = (random % standby.len() as u64) as usize;
        return standby.get(pick).map(|c| c.index);
    }
    candidates
        .iter()
        .min_by_key(|c| c.cooling_until)
        .map(|c| c.index)
}

/// One per-endpoint metric family: name, type, help, and how to read it from a report.
type EndpointFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&HealthReport) -> u64,
);

const ENDPOINT_FAMILIES: [EndpointFamily; 3] = [
    (
        "llm_relay_upstream_healthy",
        "gauge",
        "1 while the endpoint is not cooling down.",
        |h| u64::from(h.healthy),
    ),
    (
        "llm_relay_upstream_consecutive_failures",
        "gauge",
        "Failures in a row of the endpoint.",
        |h| u64::from(h.consecutive_failures),
    ),
    (
        "llm_relay_upstream_attempts_total",
        "counter",
        "Upstream attempts per endpoint, retries included.",
        |h| h.requests,
    ),
];

/// Appends per-endpoint health and counters (owned by the upstream module) to `out`.
pub fn render_metrics(out: &mut String, upstreams: &[HealthReport]) {
    for (name, kind, help, value) in ENDPOINT_FAMILIES {
        metrics::header(out, name, kind, help);
        for h in upstreams {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\"}} {}",
                metrics::escape(&h.name),
                value(h)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: usize, weight: u32, cooling: bool) -> Candidate {
        Candidate {
            index,
            weight,
            cooling_until: cooling.then(|| Instant::now() + Duration::from_secs(index as u64 + 1)),
        }
    }

    #[test]
    fn weights_split_tickets() {
        let cs = [c(0, 1, false), c(1, 3, false)];
        assert_eq!(choose(&cs, 0), Some(0));
        assert_eq!(choose(&cs, 1), Some(1));
        assert_eq!(choose(&cs, 3), Some(1));
        assert_eq!(choose(&cs, 4), Some(0));
    }

    #[test]
    fn standby_only_when_no_weighted_is_healthy() {
        let cs = [c(0, 0, false), c(1, 5, false)];
        for r in 0..20 {
            assert_eq!(choose(&cs, r), Some(1));
        }
        let cs = [c(0, 0, false), c(1, 5, true)];
        assert_eq!(choose(&cs, 7), Some(0));
    }

    #[test]
    fn all_cooling_picks_earliest_end() {
        let cs = [c(2, 1, true), c(1, 1, true)];
        assert_eq!(choose(&cs, 0), Some(1));
        assert_eq!(choose(&[], 0), None);
    }

    #[test]
    fn threshold_starts_cooldown_and_success_resets() {
        let h = Health::default();
        let cd = Duration::from_secs(60);
        h.failure(2, cd, None);
        assert!(h.cooling_until(Instant::now()).is_none());
        h.failure(2, cd, None);
        assert!(h.cooling_until(Instant::now()).is_some());
        h.success();
        let r = h.report("a", "u");
        assert!(
            r.healthy && r.consecutive_failures == 0 && r.errors == 2,
            "{r:?}"
        );
        h.failure(5, cd, Some(Duration::from_secs(5)));
        assert!(h.cooling_until(Instant::now()).is_some());
    }
}
