//! Process-wide counters, gauges and latency histograms, rendered for `GET /metrics` in the
//! Prometheus text format (version 0.0.4) by hand.
//!
//! Everything lives in one mutex-protected [`Registry`] (label sets are small and known) plus
//! two atomics for the gauges that change on every request. Recording is a few map updates
//! under a lock held for microseconds; rendering (`render.rs`) sorts labels so the output is
//! stable. Other modules call the small `pub fn`s below; only this module knows the metric names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::log::{Access, CacheResult};

mod render;
pub use render::{escape, header, render};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) for the total request time: model calls take seconds to minutes.
const TOTAL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds (seconds) for the relay's own share of a request (total minus upstream time).
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(n) = bounds
            .iter()
            .position(|b| secs <= *b)
            .and_then(|i| self.counts.get_mut(i))
        {
            *n += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Registry {
    /// (route, status) → count
    requests: BTreeMap<(&'static str, u16), u64>,
    /// (route, what the cache did) → count
    cache: BTreeMap<(&'static str, CacheResult), u64>,
    upstream_errors: BTreeMap<String, u64>,
    retries: BTreeMap<String, u64>,
    rate_limited: u64,
    budget_exceeded: u64,
    /// Shared state (Redis): `None` without it, else whether it answered last.
    state_available: Option<bool>,
    state_errors: u64,
    /// Requests served without limits because Redis was down (`on_unavailable: allow`).
    state_allowed: u64,
    /// Requests refused because Redis was down (`on_unavailable: refuse`).
    state_refused: u64,
    /// Usage figures that could not be recorded (Redis down).
    pending_usage: u64,
    /// Calls to Redis answered `Down` at once while its circuit breaker was open.
    state_fast_failures: u64,
    /// Single calls that tested whether Redis answers again, after a back-off.
    state_probes: u64,
    /// Tokens of answers, by (served from the upstream or a cache hit, kind).
    tokens: BTreeMap<(&'static str, &'static str), u64>,
    /// Web searches the provider ran for the answers, by what served them (a hit: saved).
    web_searches: BTreeMap<&'static str, u64>,
    cache_entries: u64,
    cache_bytes: u64,
    /// Whether a trace exporter was started (`telemetry.otlp_endpoint`).
    tracing: bool,
    trace_exported: u64,
    /// Why spans were dropped (`queue_full`, `export_failed`, `rejected`) → count.
    trace_dropped: BTreeMap<&'static str, u64>,
    total: BTreeMap<&'static str, Histogram>,
    overhead: BTreeMap<&'static str, Histogram>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);
static BUSY_WORKERS: AtomicI64 = AtomicI64::new(0);
static WORKERS: AtomicUsize = AtomicUsize::new(0);
static KEPT_REQUESTS: AtomicU64 = AtomicU64::new(0);

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    // A panic while holding the lock leaves plain counters behind: still usable.
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Registry::default))
}

/// The `route` label for a request path: the API path without `/v1`, or `other` (so unknown
/// paths cannot grow the label set without bound).
pub fn route_label(path: &str) -> &'static str {
    let route = crate::util::api_route(path);
    match route {
        "/chat/completions" => "/v1/chat/completions",
        "/completions" => "/v1/completions",
        "/embeddings" => "/v1/embeddings",
        "/models" => "/v1/models",
        "/responses" => "/v1/responses",
        "/messages" => "/v1/messages",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Records one finished request from its access record: count by route and status, total
/// latency, and, when an upstream was called, the relay's overhead.
pub fn request_done(a: &Access) {
    let route = route_label(&a.path);
    let total = a.duration.as_secs_f64();
    with(|r| {
        *r.requests.entry((route, a.status)).or_default() += 1;
        r.total
            .entry(route)
            .or_default()
            .observe(TOTAL_BUCKETS, total);
        if !a.upstream_time.is_zero() {
            let own = a.duration.saturating_sub(a.upstream_time).as_secs_f64();
            r.overhead
                .entry(route)
                .or_default()
                .observe(OVERHEAD_BUCKETS, own);
        }
        if let Some(result) = a.cache {
            *r.cache.entry((route, result)).or_default() += 1;
        }
        let served = if a.cache == Some(CacheResult::Hit) {
            "cache"
        } else {
            "upstream"
        };
        let u = &a.usage;
        for (kind, n) in [
            ("input", u.input),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
            ("cache_write_1h", u.cache_write_1h),
            ("output", u.output),
            ("reasoning", u.reasoning),
        ] {
            if n > 0 {
                *r.tokens.entry((served, kind)).or_default() += n;
            }
        }
        if u.web_searches > 0 {
            *r.web_searches.entry(served).or_default() += u.web_searches;
        }
    });
}

/// A call to Redis refused at once because its circuit breaker is open.
pub fn state_fast_failure() {
    with(|r| r.state_fast_failures += 1);
}

/// A call that tests whether Redis answers again.
pub fn state_probe() {
    with(|r| r.state_probes += 1);
}

/// A cache lookup's result for a request on `route`.
#[cfg(test)] // requests record theirs in `request_done`, under the same lock
pub fn cache_result(route: &str, result: CacheResult) {
    let key = (route_label(route), result);
    with(|r| *r.cache.entry(key).or_default() += 1);
}

/// The cache's current size.
pub fn cache_size(entries: u64, bytes: u64) {
    with(|r| {
        r.cache_entries = entries;
        r.cache_bytes = bytes;
    });
}

/// A failed call (transport error or 5xx) to the upstream `endpoint` (its `name`).
pub fn upstream_error(endpoint: &str) {
    with(|r| *r.upstream_errors.entry(endpoint.to_string()).or_default() += 1);
}

/// A retry of a call against `endpoint` (its `name`).
pub fn retry(endpoint: &str) {
    with(|r| *r.retries.entry(endpoint.to_string()).or_default() += 1);
}

/// A request refused by a rate limit.
pub fn rate_limited() {
    with(|r| r.rate_limited += 1);
}

/// A request refused by a budget.
pub fn budget_exceeded() {
    with(|r| r.budget_exceeded += 1);
}

/// Whether the shared state (Redis) answered its last call.
pub fn state_available(up: bool) {
    with(|r| r.state_available = Some(up));
}

/// A failed call to the shared state (Redis).
pub fn state_error() {
    with(|r| r.state_errors += 1);
}

/// A request that met Redis down: served without limits (`allowed`) or refused.
pub fn state_bypass(allowed: bool) {
    with(|r| {
        if allowed {
            r.state_allowed += 1;
        } else {
            r.state_refused += 1;
        }
    });
}

/// Requests whose usage waits for the shared state (Redis) to answer again.
pub fn state_pending_usage(requests: u64) {
    with(|r| r.pending_usage = requests);
}

/// A trace exporter started: its families appear in `/metrics`.
pub fn tracing_on() {
    with(|r| r.tracing = true);
}

/// `n` spans the collector accepted.
pub fn trace_spans_exported(n: u64) {
    with(|r| r.trace_exported += n);
}

/// `n` spans dropped, for `reason` (`queue_full`, `export_failed`, `rejected`).
pub fn trace_spans_dropped(reason: &'static str, n: u64) {
    if n > 0 {
        with(|r| *r.trace_dropped.entry(reason).or_default() += n);
    }
}

/// A request read by the worker that answered its connection's previous one.
pub fn kept_request() {
    KEPT_REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// The number of worker threads, for `llm_relay_workers`.
pub fn set_workers(n: usize) {
    WORKERS.store(n, Ordering::Relaxed);
}

/// Requests being handled right now.
pub fn in_flight() -> i64 {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Counts one request as in flight from receipt to its last byte, across both thread pools
/// (a drain waits for these). Dropped also on panic.
pub struct InFlight(());

pub fn in_flight_guard() -> InFlight {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    InFlight(())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a thread (front or worker) busy with one step of a request until the guard drops.
pub struct Busy(());

pub fn busy() -> Busy {
    BUSY_WORKERS.fetch_add(1, Ordering::SeqCst);
    Busy(())
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY_WORKERS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::render::histograms;
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_output() {
        let mut m = BTreeMap::new();
        let mut h = Histogram::default();
        h.observe(&[0.1, 1.0], 0.05);
        h.observe(&[0.1, 1.0], 0.5);
        h.observe(&[0.1, 1.0], 5.0);
        m.insert("r", h);
        let mut out = String::new();
        histograms(&mut out, "x", "help", &[0.1, 1.0], &m);
        assert!(
            out.contains("x_bucket{route=\"r\",le=\"0.1\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{route=\"r\",le=\"1\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{route=\"r\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{route=\"r\"} 3\n"), "{out}");
    }

    #[test]
    fn recorders_for_cache_failover_and_limits_show_in_render() {
        // the only test touching these families of the process-wide registry
        cache_result("/v1/chat/completions", CacheResult::Hit);
        cache_result("/chat/completions", CacheResult::Hit);
        cache_result("/v1/embeddings", CacheResult::Miss);
        cache_size(3, 1000);
        retry("http://a/v1");
        rate_limited();
        let out = render();
        for line in [
            "llm_relay_cache_requests_total{route=\"/v1/chat/completions\",result=\"hit\"} 2",
            "llm_relay_cache_requests_total{route=\"/v1/embeddings\",result=\"miss\"} 1",
            "llm_relay_cache_hits_total 2",
            "llm_relay_cache_misses_total 1",
            "llm_relay_cache_entries 3",
            "llm_relay_cache_bytes 1000",
            "llm_relay_upstream_retries_total{endpoint=\"http://a/v1\"} 1",
            "llm_relay_rate_limited_total 1",
        ] {
            assert!(out.contains(&format!("{line}\n")), "{line} in:\n{out}");
        }
    }

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(route_label("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_label("/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_label("/v1/whatever/123"), "other");
    }
}
