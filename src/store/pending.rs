//! Usage served while Redis could not be reached, kept on this machine until it is added to
//! Redis exactly once.
//!
//! Figures are summed per key and UTC day (the buckets Redis keeps), so memory grows with keys
//! × days of outage, never with requests. A flush takes everything pending into one [`Batch`]
//! with an id of its own; Redis applies a batch in one script that first claims the id, so a
//! batch whose answer was lost (Redis died after applying it) is retried with the same id and
//! applied at most once. Until a flush is confirmed its batch stays pending; usage recorded
//! meanwhile waits for the next batch. A request's own usage call whose reply was lost (Redis
//! may have applied it) is kept the same way, as a batch of its own with its id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::Down;
use crate::usage::KeyUsage;

/// One flush's worth of pending usage: (key, UTC day number, figures summed over that day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Unique across replicas and restarts: what Redis claims so a retry applies nothing twice.
    pub id: String,
    pub entries: Vec<(String, u64, KeyUsage)>,
}

impl Batch {
    /// A batch of `entries` with a fresh id.
    pub fn new(entries: Vec<(String, u64, KeyUsage)>) -> Batch {
        Batch {
            id: batch_id(),
            entries,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Usage not yet in a batch, by (key, UTC day number).
    open: BTreeMap<(String, u64), KeyUsage>,
    /// Batches sent to Redis and not yet confirmed, oldest first.
    sent: VecDeque<Batch>,
}

/// Usage waiting for Redis.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<Inner>,
    /// Held for the whole of a flush: one batch in flight at a time.
    flushing: Mutex<()>,
}

impl Pending {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a request's figures, recorded at `now`, to the key's bucket for that UTC day.
    pub fn add(&self, key: &str, figures: &KeyUsage, now: u64) {
        self.inner()
            .open
            .entry((key.to_string(), now / 86_400))
            .or_default()
            .add(figures);
    }

    /// Keeps a batch that was sent and not confirmed (its reply was lost): it is sent again as
    /// it is, so Redis applies it once.
    pub fn add_sent(&self, batch: Batch) {
        self.inner().sent.push_back(batch);
    }

    /// Requests whose usage is waiting for Redis (for the metric and `/admin/stats`).
    pub fn requests(&self) -> u64 {
        let inner = self.inner();
        let open: u64 = inner.open.values().map(|u| u.requests).sum();
        let sent: u64 = inner
            .sent
            .iter()
            .flat_map(|b| &b.entries)
            .map(|(_, _, u)| u.requests)
            .sum();
        open + sent
    }

    pub fn is_empty(&self) -> bool {
        let inner = self.inner();
        inner.open.is_empty() && inner.sent.is_empty()
    }

    /// Sends the unconfirmed batches, oldest first (or, when there are none, a new one made of
    /// all open usage) through `apply`; a confirmed batch is dropped, an unconfirmed one stays
    /// to be retried as it is. `Ok(())` also when there was nothing to send. Waits for a flush
    /// under way on another thread (the last one at shutdown must not return while the retry
    /// thread's batch is in flight).
    pub fn flush(&self, mut apply: impl FnMut(&Batch) -> Result<(), Down>) -> Result<(), Down> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut inner = self.inner();
            if inner.sent.is_empty() && !inner.open.is_empty() {
                let entries = std::mem::take(&mut inner.open)
                    .into_iter()
                    .map(|((key, day), u)| (key, day, u))
                    .collect();
                inner.sent.push_back(Batch::new(entries));
            }
        }
        loop {
            let Some(batch) = self.inner().sent.front().cloned() else {
                return Ok(());
            };
            apply(&batch)?;
            let mut inner = self.inner();
            if inner.sent.front().is_some_and(|b| b.id == batch.id) {
                inner.sent.pop_front();
            }
        }
    }
}

/// `<unix nanos>-<pid>-<sequence>`: distinct across replicas, restarts and flushes.
fn batch_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(requests: u64, prompt: u64, at: u64) -> KeyUsage {
        KeyUsage {
            requests,
            prompt_tokens: prompt,
            last_used_at: Some(at),
            ..KeyUsage::default()
        }
    }

    const DAY: u64 = 86_400;

    /// Flushes `p` with Redis answering `result`; the batch it was given.
    fn flush_with(p: &Pending, result: Result<(), Down>) -> Batch {
        let mut seen = None;
        assert_eq!(
            p.flush(|b| {
                seen = Some(b.clone());
                result
            }),
            result
        );
        seen.unwrap()
    }

    #[test]
    fn usage_is_summed_per_key_and_day() {
        let p = Pending::default();
        p.add("a", &used(1, 5, 10 * DAY + 1), 10 * DAY + 1);
        p.add("a", &used(2, 7, 10 * DAY + 9), 10 * DAY + 9);
        p.add("a", &used(1, 1, 11 * DAY), 11 * DAY);
        p.add("b", &used(1, 3, 10 * DAY + 5), 10 * DAY + 5);
        assert_eq!(p.requests(), 5);
        let entries = flush_with(&p, Ok(())).entries;
        assert_eq!(
            entries,
            vec![
                ("a".to_string(), 10, used(3, 12, 10 * DAY + 9)),
                ("a".to_string(), 11, used(1, 1, 11 * DAY)),
                ("b".to_string(), 10, used(1, 3, 10 * DAY + 5)),
            ]
        );
        assert!(p.is_empty());
        assert_eq!(p.requests(), 0);
    }

    #[test]
    fn a_failed_flush_is_retried_with_the_same_batch_and_later_usage_waits() {
        let p = Pending::default();
        p.add("a", &used(1, 5, 1), 1);
        let first = flush_with(&p, Err(Down));
        p.add("a", &used(1, 5, 2), 2);
        assert_eq!(p.requests(), 2);
        let second = flush_with(&p, Ok(()));
        assert_eq!(
            first, second,
            "the unconfirmed batch is sent again as it was"
        );
        assert_eq!(p.requests(), 1, "usage recorded meanwhile is still pending");
        let third = flush_with(&p, Ok(()));
        assert_ne!(third.id, first.id);
        assert_eq!(third.entries, vec![("a".to_string(), 0, used(1, 5, 2))]);
        assert!(p.is_empty());
        p.flush(|_| panic!("nothing to send")).unwrap();
    }
}
