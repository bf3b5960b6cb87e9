//! Collecting replaced answers while the relay runs: when this process publishes an entry over
//! one with another answer, the old answer file (no longer referred to) is queued here, and the
//! upkeep thread deletes it once it is past the scan's grace period, unless the key's
//! `.request` refers to it again by then. A reader that read the old `.request` just before the
//! new one was published has that long to open the answer it named. The queue holds at most
//! [`MAX_QUEUED`] files; beyond that, and for answers replaced by other replicas or left by a
//! crash, the scan collects them (`scan.rs`).

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store;

/// Replaced answers waiting, at most.
pub const MAX_QUEUED: usize = 100_000;

/// Answer files replaced by this process's writes, oldest first.
#[derive(Default)]
pub struct Replaced {
    queue: Mutex<VecDeque<(Instant, String, PathBuf)>>,
}

impl Replaced {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, String, PathBuf)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `answer`, an answer file of `key` that a write just replaced.
    pub fn push(&self, key: &str, answer: PathBuf) {
        let mut q = self.lock();
        if q.len() < MAX_QUEUED {
            q.push_back((Instant::now(), key.to_string(), answer));
        }
    }

    /// Deletes the queued answers replaced at least `grace` ago that no `.request` refers to
    /// and that no writer renamed into place again since (a file younger than `grace` is left
    /// to the scan). Returns how many it deleted.
    pub fn collect(&self, dir: &Path, grace: Duration) -> u64 {
        let mut deleted = 0;
        loop {
            let (key, answer) = {
                let mut q = self.lock();
                match q.front() {
                    Some((at, _, _)) if at.elapsed() >= grace => {}
                    _ => return deleted,
                }
                let Some((_, key, answer)) = q.pop_front() else {
                    return deleted;
                };
                (key, answer)
            };
            let referenced = store::referenced_answer(dir, &key).is_some_and(|a| a == answer);
            let settled = store::age(&answer).is_some_and(|a| a >= grace);
            if !referenced && settled && fs::remove_file(&answer).is_ok() {
                deleted += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{checksum, entry_key};
    use crate::cache::store::{save, Meta};

    #[test]
    fn a_replaced_answer_goes_after_the_grace_period_a_referenced_one_stays() {
        let dir = std::env::temp_dir().join(format!("llm-relay-collect-{}", std::process::id()));
        let request = br#"{"model":"m"}"#;
        let key = entry_key("/chat/completions", "", request);
        let write = |answer: &[u8]| {
            let meta = Meta {
                route: "/chat/completions".to_string(),
                version: 1,
                created: 0.0,
                scope: String::new(),
                sha256: checksum(answer),
                ..Meta::default()
            };
            let before = store::referenced_answer(&dir, &key);
            save(&dir, &key, &meta, request, answer, true).unwrap();
            before
        };
        let replaced = Replaced::default();
        write(b"first");
        let first = write(b"second").unwrap();
        replaced.push(&key, first.clone());
        // within the grace period it stays: a reader may be about to open it
        assert_eq!(replaced.collect(&dir, Duration::from_secs(60)), 0);
        assert!(first.exists());
        assert_eq!(replaced.collect(&dir, Duration::ZERO), 1);
        assert!(!first.exists());
        // an answer referred to again (the same bytes written back) is kept
        let second = write(b"first").unwrap();
        replaced.push(&key, second.clone());
        write(b"second");
        assert_eq!(replaced.collect(&dir, Duration::ZERO), 0);
        assert!(second.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
