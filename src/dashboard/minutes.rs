//! Per-minute aggregates of finished API requests in a bounded ring: the overview's charts
//! (requests/s, hit ratio, tokens and dollars saved, errors by kind, p50/p99) over the last
//! hour and day. Prometheus histograms are cumulative since start and cannot give these.
//!
//! A minute is a [`Bucket`] of counters and a latency histogram with fixed logarithmic bounds
//! (each 25 % above the last, from 0.1 ms to about 14 minutes), so a quantile is known to within
//! half a bucket (about 12 %). The ring keeps at most its `capacity` most recent minutes; one
//! bucket is under 1 KiB, a day of them under 1.5 MB.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use crate::usage::{KeyUsage, Outcome};

/// Latency histogram buckets: bucket `i` holds durations up to `FIRST_MS × GROWTH^i`.
const LATENCY_BUCKETS: usize = 72;
const FIRST_MS: f64 = 0.1;
const GROWTH: f64 = 1.25;
/// Distinct error kinds kept per minute (status codes and error codes are a bounded set, but a
/// minute never holds more than this many; the rest count as `other`).
const MAX_KINDS: usize = 32;

/// What one finished request adds to its minute.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub duration_ms: f64,
    /// Status, tokens, hit and cost, counted as the per-key figures count them.
    pub outcome: Outcome,
    /// True when the cache was looked up and missed (or refreshed).
    pub missed: bool,
    /// The error kind when the request failed (status ≥ 400).
    pub error: Option<String>,
}

/// The figures of one minute.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Requests, hits, tokens, cost, savings and errors, as `/admin/stats` counts them.
    pub figures: KeyUsage,
    pub misses: u64,
    pub errors: BTreeMap<String, u64>,
    latency: [u32; LATENCY_BUCKETS],
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            figures: KeyUsage::default(),
            misses: 0,
            errors: BTreeMap::new(),
            latency: [0; LATENCY_BUCKETS],
        }
    }
}

impl Bucket {
    fn add(&mut self, s: &Sample, now: u64) {
        self.figures.add(&s.outcome.figures(now));
        self.misses += u64::from(s.missed);
        if let Some(kind) = &s.error {
            let kind = if self.errors.len() < MAX_KINDS || self.errors.contains_key(kind) {
                kind.clone()
            } else {
                "other".to_string()
            };
            *self.errors.entry(kind).or_default() += 1;
        }
        let i = latency_bucket(s.duration_ms);
        if let Some(n) = self.latency.get_mut(i) {
            *n = n.saturating_add(1);
        }
    }

    /// Adds another bucket's figures (to sum minutes into a window).
    pub fn merge(&mut self, o: &Bucket) {
        self.figures.add(&o.figures);
        self.misses += o.misses;
        for (k, n) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a = a.saturating_add(b);
        }
    }

    pub fn requests(&self) -> u64 {
        self.figures.requests
    }

    /// Requests that failed (status ≥ 400).
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `q` quantile (0..1) of the durations, in milliseconds (`None` without requests).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(bucket_mid_ms(i));
            }
        }
        None
    }

    /// The figures as JSON (a window's totals, or one chart point): the per-key figures'
    /// fields, plus misses, hit ratio, errors by kind and p50/p99.
    pub fn describe(&self) -> Value {
        let hits = self.figures.cache_hits;
        let looked_up = hits + self.misses;
        let mut v = self.figures.describe();
        if let Some(o) = v.as_object_mut() {
            o.remove("last_used_at");
            let ratio = (looked_up > 0).then(|| hits as f64 / looked_up as f64);
            for (name, x) in [
                ("cache_misses", json!(self.misses)),
                ("hit_ratio", json!(ratio)),
                ("errors_by_kind", json!(self.errors)),
                ("p50_ms", json!(self.quantile_ms(0.5))),
                ("p99_ms", json!(self.quantile_ms(0.99))),
            ] {
                o.insert(name.to_string(), x);
            }
        }
        v
    }
}

fn latency_bucket(ms: f64) -> usize {
    if ms <= FIRST_MS || ms.is_nan() {
        return 0;
    }
    let i = ((ms / FIRST_MS).ln() / GROWTH.ln()).ceil();
    (i as usize).min(LATENCY_BUCKETS - 1)
}

/// The geometric middle of bucket `i` (its bounds are `FIRST_MS × GROWTH^(i-1)` and `^i`).
fn bucket_mid_ms(i: usize) -> f64 {
    if i == 0 {
        return FIRST_MS;
    }
    FIRST_MS * GROWTH.powf(i as f64 - 0.5)
}

/// The ring: at most `capacity` minutes, newest last.
#[derive(Debug)]
pub struct Ring {
    capacity: usize,
    minutes: VecDeque<(u64, Bucket)>,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            capacity,
            minutes: VecDeque::new(),
        }
    }

    /// Adds a request finished at Unix second `now`.
    pub fn add(&mut self, now: u64, s: &Sample) {
        let minute = now / 60;
        match self.minutes.back_mut() {
            Some((m, b)) if *m == minute => b.add(s, now),
            // a clock step back lands in the newest minute rather than reordering the ring
            Some((m, b)) if *m > minute => b.add(s, now),
            _ => {
                let mut b = Bucket::default();
                b.add(s, now);
                self.minutes.push_back((minute, b));
                while self.minutes.len() > self.capacity {
                    self.minutes.pop_front();
                }
            }
        }
    }

    /// The window of `minutes` minutes ending at `now`: its totals, and one point per `step`
    /// minutes (oldest first, `t` its start in Unix seconds; empty steps are zero).
    pub fn window(&self, now: u64, minutes: u64, step: u64) -> (Bucket, Vec<(u64, Bucket)>) {
        let step = step.max(1);
        let last = now / 60;
        let first = (last + 1).saturating_sub(minutes);
        let points = minutes.div_ceil(step);
        let mut series: Vec<(u64, Bucket)> = (0..points)
            .map(|i| ((first + i * step) * 60, Bucket::default()))
            .collect();
        let mut total = Bucket::default();
        for (m, b) in self
            .minutes
            .iter()
            .filter(|(m, _)| (first..=last).contains(m))
        {
            total.merge(b);
            let i = usize::try_from((m - first) / step).unwrap_or(usize::MAX);
            if let Some((_, p)) = series.get_mut(i) {
                p.merge(b);
            }
        }
        (total, series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: f64, hit: Option<bool>, error: Option<&str>) -> Sample {
        Sample {
            duration_ms: ms,
            outcome: Outcome {
                status: if error.is_some() { 502 } else { 200 },
                usage: crate::answer::Usage {
                    input: 10,
                    output: 5,
                    ..Default::default()
                },
                cache_hit: hit == Some(true),
                cost_micro_usd: 100,
            },
            missed: hit == Some(false),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut b = Bucket::default();
        for i in 1..=100 {
            b.add(&sample(f64::from(i), None, None), 0);
        }
        let p50 = b.quantile_ms(0.5).unwrap();
        let p99 = b.quantile_ms(0.99).unwrap();
        assert!((p50 - 50.0).abs() / 50.0 < 0.13, "{p50}");
        assert!((p99 - 99.0).abs() / 99.0 < 0.13, "{p99}");
        assert_eq!(Bucket::default().quantile_ms(0.5), None);
    }

    #[test]
    fn hits_count_as_saved_and_errors_by_kind() {
        let mut r = Ring::new(60);
        let t0 = 29_000_000 * 60;
        r.add(t0, &sample(5.0, Some(true), None));
        r.add(t0 + 1, &sample(5.0, Some(false), Some("http_502")));
        r.add(t0 + 65, &sample(5.0, None, Some("rate_limit_exceeded")));
        let (t, series) = r.window(t0 + 65, 60, 1);
        let f = &t.figures;
        assert_eq!((f.requests, f.cache_hits, t.misses), (3, 1, 1));
        assert_eq!((f.saved_tokens, f.saved_micro_usd), (15, 100));
        assert_eq!((f.prompt_tokens, f.cost_micro_usd), (20, 200));
        assert_eq!(f.errors, 2);
        assert_eq!(t.errors.get("http_502"), Some(&1));
        assert_eq!(t.error_count(), 2);
        assert_eq!(series.len(), 60);
        assert_eq!(series.last().map(|(_, b)| b.requests()), Some(1));
        assert_eq!(series.get(58).map(|(_, b)| b.requests()), Some(2));
    }

    #[test]
    fn the_ring_is_bounded() {
        let mut r = Ring::new(3);
        for m in 0..10 {
            r.add(m * 60, &sample(1.0, None, None));
        }
        assert_eq!(r.minutes.len(), 3);
        let (t, _) = r.window(9 * 60, 1440, 60);
        assert_eq!(t.requests(), 3);
    }
}
