//! `cache.repeat: "sequence"`: the i-th identical request gets sample i (agent loops that send
//! the same request again and expect the next recorded answer).
//!
//! Counted per entry key (which holds the namespace) and cache mode, so a recording run and a
//! replay run count apart; in Redis when `state.redis` is set (every replica sees one count),
//! else in this process (at most [`MAX_LOCAL`] counts, the idlest dropped first). A count
//! restarts after `cache.repeat_window_seconds` without an identical request; while Redis
//! cannot be reached the local count is used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::Redis;

/// Counts kept in process memory, at most.
const MAX_LOCAL: usize = 100_000;

#[derive(Default)]
pub struct Sequences {
    redis: Option<Arc<Redis>>,
    local: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Sequences {
    /// Counts in `redis` when given, else in this process.
    pub fn new(redis: Option<Arc<Redis>>) -> Sequences {
        Sequences {
            redis,
            local: Mutex::default(),
        }
    }

    /// The sample index of the next request with `name` (1 for the first).
    pub fn next(&self, name: &str, window: Duration) -> u32 {
        if let Some(r) = &self.redis {
            if let Ok(n) = r.next_in_sequence(name, window.as_secs()) {
                return u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        let now = Instant::now();
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() >= MAX_LOCAL && !local.contains_key(name) {
            local.retain(|_, (_, at)| now.duration_since(*at) < window);
            if local.len() >= MAX_LOCAL {
                if let Some(idlest) = local
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    local.remove(&idlest);
                }
            }
        }
        let slot = local.entry(name.to_string()).or_insert((0, now));
        if now.duration_since(slot.1) >= window {
            slot.0 = 0;
        }
        slot.0 += 1;
        slot.1 = now;
        u32::try_from(slot.0).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_name_and_restarts_after_the_window() {
        let s = Sequences::default();
        let long = Duration::from_secs(3600);
        assert_eq!(
            [s.next("a", long), s.next("a", long), s.next("b", long)],
            [1, 2, 1]
        );
        assert_eq!(s.next("a", Duration::ZERO), 1);
    }
}
