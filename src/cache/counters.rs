//! The cache's running totals: entries and bytes of the directory (from the start-up scan on),
//! hits, misses and tokens saved since start, and `GET /cache/stats`.
//!
//! The scan (or, without the scan lease, the count) and the stores of this process both add
//! to the entry and byte totals without overwriting each other: from [`Counters::scan_started`]
//! to [`Counters::scan_finished`], every entry a store creates is counted at once and its key
//! kept, the scan leaves those keys out ([`Counters::fresh`]), and its result is added to what
//! was stored meanwhile. So a store made while a slow scan runs is counted exactly once,
//! whether the scan had passed its folder or not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use super::scan::Report;
use super::{Cache, Entry};

#[derive(Debug)]
pub struct Counters {
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub tokens_saved: AtomicU64,
    /// While a scan runs: the entries stores created since it started, with their bytes.
    fresh: Mutex<Option<HashMap<String, u64>>>,
}

impl Default for Counters {
    /// Totals of zero, waiting for the start-up scan (stores before it are kept apart).
    fn default() -> Counters {
        Counters {
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            tokens_saved: AtomicU64::new(0),
            fresh: Mutex::new(Some(HashMap::new())),
        }
    }
}

impl Counters {
    fn fresh_lock(&self) -> MutexGuard<'_, Option<HashMap<String, u64>>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A store is about to publish the new entry `key` of `bytes` (both files): counted now
    /// (under the lock the end of a scan takes, so never lost to it).
    pub fn created(&self, key: &str, bytes: u64) {
        let mut fresh = self.fresh_lock();
        if let Some(f) = fresh.as_mut() {
            f.insert(key.to_string(), bytes);
        }
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The store announced by [`Counters::created`] failed.
    pub fn not_created(&self, key: &str, bytes: u64) {
        let mut fresh = self.fresh_lock();
        if let Some(f) = fresh.as_mut() {
            f.remove(key);
        }
        self.sub(1, bytes);
    }

    /// Takes `entries` and `bytes` off the totals (entries removed), never below zero.
    pub fn sub(&self, entries: u64, bytes: u64) {
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.entries, entries);
        sub(&self.bytes, bytes);
    }

    /// A scan (or count) of the directory starts: stores from now on are kept apart.
    pub fn scan_started(&self) {
        *self.fresh_lock() = Some(HashMap::new());
    }

    /// Whether a store created `key` since the scan started (the scan leaves it out).
    pub fn fresh(&self, key: &str) -> bool {
        self.fresh_lock()
            .as_ref()
            .is_some_and(|f| f.contains_key(key))
    }

    /// The scan found `report` (without the fresh entries): the totals are that plus what was
    /// stored since it started.
    pub fn scan_finished(&self, report: &Report) {
        let mut fresh = self.fresh_lock();
        let stored = fresh.take().unwrap_or_default();
        let bytes: u64 = stored.values().sum();
        self.entries
            .store(report.entries + stored.len() as u64, Ordering::Relaxed);
        self.bytes.store(report.bytes + bytes, Ordering::Relaxed);
    }

    /// The scan did not run (another replica holds its lease): the totals stand.
    pub fn scan_abandoned(&self) {
        *self.fresh_lock() = None;
    }
}

impl Cache {
    /// Counts a served hit.
    pub fn served(&self, entry: &Entry) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .tokens_saved
            .fetch_add(entry.usage.unwrap_or_default().total(), Ordering::Relaxed);
        self.hits.record(&entry.key, crate::util::now_secs());
    }

    pub fn missed(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// `GET /cache/stats`.
    pub fn stats_json(&self) -> Vec<u8> {
        let c = &self.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        json!({
            "enabled": true,
            "entries": c.entries.load(Ordering::Relaxed),
            "bytes": c.bytes.load(Ordering::Relaxed),
            "hits": hits,
            "misses": misses,
            "hit_ratio": ratio,
            "tokens_saved": c.tokens_saved.load(Ordering::Relaxed),
            "memory_entries": self.memory.usage().0,
            "memory_bytes": self.memory.usage().1,
        })
        .to_string()
        .into_bytes()
    }
}
