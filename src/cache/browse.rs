//! Browsing the cache for the dashboard: a bounded in-memory [`Index`] of recorded requests
//! (entries by model and namespace, search by text), opening one entry with credentials
//! redacted, and a selection of entries as a cassette.
//!
//! The index never walks the whole directory on a request: it is filled once at start, on its
//! own thread, from at most [`MAX_READ_AT_START`] `.request` files, then by every entry the
//! relay stores. It holds at most `ui.cache_index_bytes` (each entry's request text cut to
//! [`MAX_TEXT`]); past that the oldest indexed entries leave it. A search reads only the index,
//! so its answer says how many entries it covers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::store;

/// `.request` files read into the index at start, at most.
pub const MAX_READ_AT_START: usize = 20_000;
/// Characters of an entry's request text the index keeps for search.
const MAX_TEXT: usize = 4096;
/// Matches one search returns, at most.
const MAX_MATCHES: usize = 200;
/// Per-entry overhead counted against the bound, on top of its strings.
const ENTRY_OVERHEAD: usize = 160;

/// One indexed entry.
#[derive(Debug, Clone)]
struct Indexed {
    key: String,
    route: String,
    model: String,
    /// `shared`, or the first 12 hex digits of the hashed credential (`cache.scope: "key"`).
    namespace: String,
    created: f64,
    bytes: u64,
    /// The canonical request, lower-cased, cut to [`MAX_TEXT`] characters.
    text: String,
}

impl Indexed {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + self.key.len()
            + self.route.len()
            + self.model.len()
            + self.namespace.len()
            + self.text.len()
    }

    fn describe(&self) -> Value {
        json!({
            "key": self.key,
            "route": self.route,
            "model": self.model,
            "namespace": self.namespace,
            "created": self.created,
            "bytes": self.bytes,
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<String>,
    entries: HashMap<String, Indexed>,
    bytes: usize,
    /// True once the start-up fill is done.
    filled: bool,
    /// The start-up fill stopped at [`MAX_READ_AT_START`] files.
    cut: bool,
}

/// The index of recorded requests.
#[derive(Debug)]
pub struct Index {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

fn namespace(scope: &str) -> String {
    if scope.is_empty() {
        "shared".to_string()
    } else {
        scope.chars().take(12).collect()
    }
}

impl Index {
    pub fn new(max_bytes: u64) -> Index {
        Index {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) an entry from its metadata and canonical request.
    pub fn add(&self, key: &str, meta: &store::Meta, request: &[u8], bytes: u64) {
        let parsed: Option<Value> = serde_json::from_slice(request).ok();
        let model = parsed
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let text = String::from_utf8_lossy(request)
            .chars()
            .take(MAX_TEXT)
            .collect::<String>()
            .to_lowercase();
        let item = Indexed {
            key: key.to_string(),
            route: meta.route.clone(),
            model,
            namespace: namespace(&meta.scope),
            created: meta.created,
            bytes,
            text,
        };
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(key) {
            inner.bytes = inner.bytes.saturating_sub(old.cost());
            inner.order.retain(|k| k != key);
        }
        inner.bytes += item.cost();
        inner.order.push_back(key.to_string());
        inner.entries.insert(key.to_string(), item);
        while inner.bytes > self.max_bytes {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&old) {
                inner.bytes = inner.bytes.saturating_sub(gone.cost());
            }
        }
    }

    /// Reads up to [`MAX_READ_AT_START`] entries of `dir` (run once, on its own thread).
    pub fn fill(&self, dir: &Path) {
        let mut cut = false;
        for (read, (key, path)) in store::entries(dir).enumerate() {
            if read >= MAX_READ_AT_START {
                cut = true;
                break;
            }
            let Ok(file) = std::fs::read(&path) else {
                continue;
            };
            let Some((meta, request)) = store::split_request(&file) else {
                continue;
            };
            let answer = store::answer_path(dir, &key, &meta.sha256);
            let bytes = std::fs::metadata(answer).map_or(0, |m| m.len());
            // an entry stored meanwhile is newer; do not put it back as older
            if !self.lock().entries.contains_key(&key) {
                self.add(&key, &meta, request, bytes);
            }
        }
        let mut inner = self.lock();
        inner.filled = true;
        inner.cut = cut;
    }

    /// Entries by model and namespace, and what the index covers.
    pub fn summary(&self) -> Value {
        let inner = self.lock();
        let mut groups: BTreeMap<(&str, &str, &str), (u64, u64)> = BTreeMap::new();
        for e in inner.entries.values() {
            let g = groups
                .entry((e.model.as_str(), e.namespace.as_str(), e.route.as_str()))
                .or_default();
            g.0 += 1;
            g.1 += e.bytes;
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|((model, ns, route), (n, bytes))| {
                json!({"model": model, "namespace": ns, "route": route, "entries": n, "bytes": bytes})
            })
            .collect();
        json!({
            "indexed": inner.entries.len(),
            "index_bytes": inner.bytes,
            "index_max_bytes": self.max_bytes,
            "filled": inner.filled,
            "read_at_start_max": MAX_READ_AT_START,
            "start_fill_cut": inner.cut,
            "groups": groups,
        })
    }

    /// Indexed entries whose request text contains `q` (case-insensitive; empty: all) and
    /// whose model is `model` (if given), newest first, at most [`MAX_MATCHES`].
    pub fn search(&self, q: &str, model: Option<&str>) -> Value {
        let q = q.to_lowercase();
        let inner = self.lock();
        let mut found: Vec<&Indexed> = inner
            .entries
            .values()
            .filter(|e| model.map_or(true, |m| e.model == m))
            .filter(|e| q.is_empty() || e.text.contains(&q))
            .collect();
        found.sort_by(|a, b| b.created.total_cmp(&a.created));
        let total = found.len();
        let data: Vec<Value> = found
            .iter()
            .take(MAX_MATCHES)
            .map(|e| e.describe())
            .collect();
        json!({
            "object": "list",
            "data": data,
            "matches": total,
            "searched": inner.entries.len(),
            "truncated": total > MAX_MATCHES,
        })
    }
}

/// Entry `key` for the dashboard: metadata, the request and the answer with credentials
/// redacted, and a recorded stream as its events. `None` when absent or unservable.
pub fn open(dir: &Path, key: &str) -> Option<Value> {
    if !super::key::is_key(key) {
        return None;
    }
    let store::Loaded::Found(meta, pair) = store::load(dir, key) else {
        return None;
    };
    let (_, request) = store::split_request(&pair.request)?;
    let answer = crate::body_log::redacted(&pair.response);
    // a recorded stream is text (not JSON): shown as its events
    let events: Option<Vec<&str>> = answer.as_str().map(|text| {
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .collect()
    });
    Some(json!({
        "key": key,
        "route": meta.route,
        "namespace": namespace(&meta.scope),
        "created": meta.created,
        "request": crate::body_log::redacted(request),
        "response": answer,
        "events": events,
    }))
}
