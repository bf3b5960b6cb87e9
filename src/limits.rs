//! Per-key rate limits: the `rate_limit` config section and the limiter that enforces it.
//!
//! A sliding-window log per key: the admission instants of the last hour (or minute, if only
//! `per_minute` is set), behind one mutex. Checking and recording happen under the same lock,
//! so concurrent requests on one key are admitted exactly up to the limit, never beyond.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// `rate_limit` as written: `{ per_minute, per_hour }`, both optional.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    per_minute: Option<u32>,
    per_hour: Option<u32>,
}

/// A checked limit; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
}

impl RateLimit {
    /// Checks a raw limit; `what` names it in errors (e.g. `rate_limit`).
    pub fn from_raw(raw: Option<RawRateLimit>, what: &str) -> Result<RateLimit, String> {
        let raw = raw.unwrap_or_default();
        let limit = RateLimit {
            per_minute: raw.per_minute,
            per_hour: raw.per_hour,
        };
        limit.check(what)?;
        Ok(limit)
    }

    /// A limit of 0 would refuse every request: an error naming it (`what`, e.g.
    /// `keys[2].rate_limit`), for the config and the `keys_file` alike.
    pub fn check(&self, what: &str) -> Result<(), String> {
        for (field, v) in [("per_minute", self.per_minute), ("per_hour", self.per_hour)] {
            if v == Some(0) {
                return Err(format!(
                    "`{what}.{field}` must be positive; leave it out for no limit"
                ));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.per_minute.is_none() && self.per_hour.is_none()
    }

    /// This limit, with `default` filling the fields it leaves open.
    pub fn or(self, default: RateLimit) -> RateLimit {
        RateLimit {
            per_minute: self.per_minute.or(default.per_minute),
            per_hour: self.per_hour.or(default.per_hour),
        }
    }
}

/// The figures for the `X-RateLimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The limit that binds (the one with the fewest requests left).
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a request would be admitted again (0 when admitted).
    pub retry_after: u64,
}

impl Verdict {
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-RateLimit-Limit".to_string(), self.limit.to_string()),
            (
                "X-RateLimit-Remaining".to_string(),
                self.remaining.to_string(),
            ),
        ];
        if self.retry_after > 0 {
            h.push(("Retry-After".to_string(), self.retry_after.to_string()));
        }
        h
    }
}

/// Admission logs per key id.
#[derive(Debug, Default)]
pub struct Limiter {
    logs: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// Admits one request for `key` under `limit` at `now`: `Ok` (with the figures, `None` when
    /// unlimited) records it, `Err` refuses it and records nothing.
    pub fn admit(
        &self,
        key: &str,
        limit: RateLimit,
        now: Instant,
    ) -> Result<Option<Verdict>, Verdict> {
        if limit.is_empty() {
            return Ok(None);
        }
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs.entry(key.to_string()).or_default();
        let keep = if limit.per_hour.is_some() {
            HOUR
        } else {
            MINUTE
        };
        while log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= keep)
        {
            log.pop_front();
        }
        let windows = [(limit.per_minute, MINUTE), (limit.per_hour, HOUR)];
        let mut binding: Option<Verdict> = None;
        let mut refused = false;
        for (max, window) in windows {
            let Some(max) = max else { continue };
            // entries are in time order: those inside the window are a suffix
            let first = log.partition_point(|t| now.saturating_duration_since(*t) >= window);
            let used = (log.len() - first) as u32;
            let v = if used >= max {
                refused = true;
                let oldest = log[first + (used - max) as usize];
                let wait = window.saturating_sub(now.saturating_duration_since(oldest));
                Verdict {
                    limit: max,
                    remaining: 0,
                    retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
                }
            } else {
                Verdict {
                    limit: max,
                    remaining: max - used - 1,
                    retry_after: 0,
                }
            };
            let tighter = binding.map_or(true, |b| {
                (v.retry_after, u32::MAX - v.remaining) > (b.retry_after, u32::MAX - b.remaining)
            });
            if tighter {
                binding = Some(v);
            }
        }
        let verdict = binding.unwrap_or(Verdict {
            limit: 0,
            remaining: 0,
            retry_after: 0,
        });
        if refused {
            return Err(verdict);
        }
        log.push_back(now);
        Ok(Some(verdict))
    }

    /// Forgets a key's log (after revocation).
    pub fn forget(&self, key: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(per_minute: Option<u32>, per_hour: Option<u32>) -> RateLimit {
        RateLimit {
            per_minute,
            per_hour,
        }
    }

    #[test]
    fn per_minute_window_slides() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let rl = lim(Some(2), None);
        assert_eq!(l.admit("k", rl, t0).unwrap().unwrap().remaining, 1);
        assert_eq!(l.admit("k", rl, t0).unwrap().unwrap().remaining, 0);
        let refused = l.admit("k", rl, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!((refused.limit, refused.retry_after), (2, 50));
        assert!(l.admit("other", rl, t0).is_ok(), "keys are independent");
        assert!(l.admit("k", rl, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn hour_limit_binds_after_minute_limit_resets() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let rl = lim(Some(2), Some(3));
        assert!(l.admit("k", rl, t0).is_ok());
        assert!(l.admit("k", rl, t0).is_ok());
        assert!(l.admit("k", rl, t0 + MINUTE).is_ok());
        let refused = l.admit("k", rl, t0 + MINUTE * 2).unwrap_err();
        assert_eq!(refused.limit, 3);
        assert_eq!(refused.retry_after, 3600 - 120);
    }

    #[test]
    fn key_limit_overrides_default_field_by_field() {
        let merged = lim(Some(5), None).or(lim(Some(60), Some(1000)));
        assert_eq!(merged, lim(Some(5), Some(1000)));
    }

    #[test]
    fn zero_is_refused() {
        let raw = RawRateLimit {
            per_minute: Some(0),
            per_hour: None,
        };
        assert!(RateLimit::from_raw(Some(raw), "rate_limit")
            .unwrap_err()
            .contains("rate_limit.per_minute"));
    }
}
