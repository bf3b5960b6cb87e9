//! The one index of recorded requests, in memory: what a `replay` miss searches for its
//! closest entry and what the dashboard's cache page lists and searches, so neither ever walks
//! the cache directory on a request's thread.
//!
//! Per entry: route, scope, model, time, answer size and a fingerprint of its canonical
//! request (`sketch.rs`). The fingerprints of two requests that differ in a few fields differ
//! in about as many hashes, so ranking by the fingerprint difference finds the nearest entries
//! without reading them; only the best [`READ`] are then read and diffed exactly. Once the
//! dashboard is on ([`Index::enable_search`]), each entry also keeps its request text (cut to
//! [`MAX_TEXT`], lower-cased) for the page's search.
//!
//! Filled once at start (one read of each of the newest [`MAX_INDEXED`] `.request` files, after
//! the start-up scan, on the upkeep thread), then by every store; entries removed by
//! maintenance or quarantined leave it. Bounded: at most [`MAX_INDEXED`] entries (the oldest
//! leave first; each a little over 1 KiB without text, its fingerprint), and the texts at most
//! `ui.cache_index_bytes` (past it the oldest entries leave the search, not the index). A
//! replay search compares at most [`MAX_COMPARED`] fingerprints, same model first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

use super::sketch::{distance, sketch};
use super::store;

/// Entries indexed at most (the oldest go first).
pub const MAX_INDEXED: usize = 30_000;
/// Fingerprints one search compares at most.
pub const MAX_COMPARED: usize = 10_000;
/// Entries one search reads from disk at most (the nearest by fingerprint).
pub const READ: usize = 3;
/// Characters of an entry's request text kept for the dashboard's search.
const MAX_TEXT: usize = 4096;
/// Per-entry overhead counted against `ui.cache_index_bytes`, on top of its strings.
pub(super) const ENTRY_OVERHEAD: usize = 160;

/// One indexed entry.
#[derive(Debug)]
pub(super) struct Item {
    /// Its place in insertion order (a key stored again gets a new one).
    pub(super) seq: u64,
    pub(super) route: String,
    pub(super) scope: String,
    pub(super) model: String,
    pub(super) created: f64,
    /// The answer's size.
    pub(super) bytes: u64,
    /// The smallest leaf hashes, ascending.
    sketch: Box<[u64]>,
    /// Whether leaves beyond the sketch were left out.
    cut: bool,
    /// The canonical request, lower-cased, cut to [`MAX_TEXT`] characters (search on only).
    pub(super) text: Option<Box<str>>,
}

impl Item {
    /// What its search text costs against `ui.cache_index_bytes`.
    fn text_cost(&self, key: &str) -> usize {
        self.text.as_ref().map_or(0, |t| {
            ENTRY_OVERHEAD + key.len() + self.route.len() + self.model.len() + t.len()
        })
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) items: HashMap<String, Item>,
    /// (route, scope) → keys, oldest first.
    pub(super) groups: HashMap<(String, String), Vec<String>>,
    /// Insertion order for the bound: (seq, key); stale pairs are skipped.
    pub(super) order: VecDeque<(u64, String)>,
    /// Entries holding a search text, oldest first: (seq, key); stale pairs are skipped.
    pub(super) texts: VecDeque<(u64, String)>,
    next_seq: u64,
    /// What the search texts cost.
    pub(super) text_bytes: usize,
    /// `ui.cache_index_bytes`, once the dashboard asked for search.
    pub(super) search_max: Option<usize>,
    /// Whether the start-up fill is done.
    pub(super) ready: bool,
    /// Entries that left for [`MAX_INDEXED`].
    pub(super) dropped: u64,
}

impl Inner {
    fn forget(&mut self, key: &str) {
        if let Some(item) = self.items.remove(key) {
            self.text_bytes = self.text_bytes.saturating_sub(item.text_cost(key));
            if let Some(g) = self.groups.get_mut(&(item.route, item.scope)) {
                g.retain(|k| k != key);
            }
        }
    }

    fn live(&self, (seq, key): &(u64, String)) -> bool {
        self.items.get(key).is_some_and(|i| i.seq == *seq)
    }

    /// Applies both bounds, and drops stale pairs once they are most of a queue.
    fn bound(&mut self) {
        while self.items.len() > MAX_INDEXED {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.live(&old) {
                self.forget(&old.1);
                self.dropped += 1;
            }
        }
        while self.text_bytes > self.search_max.unwrap_or(usize::MAX) {
            let Some(old) = self.texts.pop_front() else {
                break;
            };
            if self.live(&old) {
                if let Some(item) = self.items.get_mut(&old.1) {
                    let cost = item.text_cost(&old.1);
                    item.text = None;
                    self.text_bytes = self.text_bytes.saturating_sub(cost);
                }
            }
        }
        for queue in [&mut self.order, &mut self.texts] {
            if queue.len() > 2 * self.items.len() + 1024 {
                let items = &self.items;
                queue.retain(|(seq, key)| items.get(key).is_some_and(|i| i.seq == *seq));
            }
        }
    }
}

/// The index (see the module documentation).
#[derive(Debug, Default)]
pub struct Index {
    inner: RwLock<Inner>,
}

/// `shared`, or the first 12 hex digits of the hashed credential (`cache.scope: "key"`).
pub fn namespace(scope: &str) -> String {
    if scope.is_empty() {
        "shared".to_string()
    } else {
        scope.chars().take(12).collect()
    }
}

pub(super) fn search_text(canonical: &[u8]) -> Box<str> {
    String::from_utf8_lossy(canonical)
        .chars()
        .take(MAX_TEXT)
        .collect::<String>()
        .to_lowercase()
        .into_boxed_str()
}

impl Index {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces, as the newest) the entry `key` from its metadata, canonical request
    /// and answer size.
    pub fn insert(&self, key: &str, meta: &store::Meta, canonical: &[u8], bytes: u64) {
        let Ok(request) = crate::json::from_slice::<Value>(canonical) else {
            return;
        };
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let (sketch, cut) = sketch(&request);
        let text = self.read().search_max.map(|_| search_text(canonical));
        let mut inner = self.write();
        inner.forget(key);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let item = Item {
            seq,
            route: meta.route.clone(),
            scope: meta.scope.clone(),
            model,
            created: meta.created,
            bytes,
            sketch,
            cut,
            text,
        };
        if item.text.is_some() {
            inner.text_bytes += item.text_cost(key);
            inner.texts.push_back((seq, key.to_string()));
        }
        inner
            .groups
            .entry((item.route.clone(), item.scope.clone()))
            .or_default()
            .push(key.to_string());
        inner.items.insert(key.to_string(), item);
        inner.order.push_back((seq, key.to_string()));
        inner.bound();
    }

    /// Forgets entries (removed by maintenance or quarantined).
    pub fn remove(&self, keys: &[String]) {
        let mut inner = self.write();
        for key in keys {
            inner.forget(key);
        }
    }

    /// Indexes the newest [`MAX_INDEXED`] entries under `dir` not indexed yet and marks the
    /// index ready (at start, on the upkeep thread, after the scan; an entry stored meanwhile
    /// is newer and stays). Returns how many were read.
    pub fn fill(&self, dir: &Path) -> u64 {
        self.fill_newest(dir, MAX_INDEXED)
    }

    /// [`Index::fill`] with at most `max` entries read: the newest by their `.request`'s time
    /// (a `stat` each, no read: a directory of a million entries read 30,000 `.request` files,
    /// not all of them to keep the last 30,000 met), read oldest first so that the bound drops
    /// the oldest.
    fn fill_newest(&self, dir: &Path, max: usize) -> u64 {
        let mut newest = BinaryHeap::new();
        for (key, path) in store::entries(dir) {
            let Ok(modified) = fs::metadata(&path).and_then(|m| m.modified()) else {
                continue;
            };
            newest.push(Reverse((modified, key, path)));
            if newest.len() > max {
                newest.pop();
            }
        }
        // ascending: the oldest of the newest first
        let newest = newest.into_sorted_vec().into_iter().rev();
        let mut read = 0;
        for Reverse((_, key, path)) in newest {
            if self.read().items.contains_key(&key) {
                continue;
            }
            let Ok(file) = fs::read(&path) else {
                continue;
            };
            if let Some((meta, canonical)) = store::split_request(&file) {
                let answer = store::answer_path(dir, &key, &meta.sha256);
                let bytes = fs::metadata(answer).map_or(0, |m| m.len());
                self.insert(&key, &meta, canonical, bytes);
                read += 1;
            }
        }
        self.write().ready = true;
        read
    }

    pub fn ready(&self) -> bool {
        self.read().ready
    }

    /// The keys of at most [`READ`] entries of `route` and `scope` nearest to `asked`, nearest
    /// first (same model first among equals), and how many were compared.
    pub fn nearest(&self, route: &str, scope: &str, asked: &Value) -> (Vec<String>, u64) {
        let model = asked.get("model").and_then(Value::as_str).unwrap_or("");
        let (sketch_a, cut_a) = sketch(asked);
        let inner = self.read();
        let Some(group) = inner.groups.get(&(route.to_string(), scope.to_string())) else {
            return (Vec::new(), 0);
        };
        let items = group
            .iter()
            .rev()
            .filter_map(|k| inner.items.get(k).map(|i| (k, i)));
        // same model first, newest first, at most MAX_COMPARED
        let candidates = items
            .clone()
            .filter(|(_, i)| i.model == model)
            .chain(items.filter(|(_, i)| i.model != model))
            .take(MAX_COMPARED);
        let mut best: Vec<(usize, bool, &str)> = Vec::with_capacity(READ + 1);
        let mut compared = 0u64;
        for (key, item) in candidates {
            compared += 1;
            let d = distance(&sketch_a, cut_a, &item.sketch, item.cut);
            let rank = (d, item.model != model, key.as_str());
            let at = best.iter().position(|b| rank < *b).unwrap_or(best.len());
            if at < READ {
                best.insert(at, rank);
                best.truncate(READ);
            }
        }
        (
            best.into_iter().map(|(_, _, k)| k.to_string()).collect(),
            compared,
        )
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
