//! The dashboard's view of the cache: entries by model and namespace and search by text, both
//! over the one index of recorded requests (`index.rs`; a search reads only the index, so its
//! answer says how many entries it covers), and one entry opened with credentials redacted.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::index::{self, namespace, Index, Item};
use super::store;

/// Matches one search returns, at most.
const MAX_MATCHES: usize = 200;

impl Index {
    /// Entries by model, namespace and route, and what the index covers.
    pub fn summary(&self) -> Value {
        let inner = self.read();
        let mut groups: BTreeMap<(&str, String, &str), (u64, u64)> = BTreeMap::new();
        for e in inner.items.values() {
            let g = groups
                .entry((e.model.as_str(), namespace(&e.scope), e.route.as_str()))
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
            "indexed": inner.items.len(),
            "max_indexed": index::MAX_INDEXED,
            "dropped": inner.dropped,
            "searchable": inner.items.values().filter(|i| i.text.is_some()).count(),
            "index_bytes": inner.text_bytes,
            "index_max_bytes": inner.search_max,
            "filled": inner.ready,
            "groups": groups,
        })
    }

    /// Entries with a search text that contains `q` (case-insensitive; empty: all) and whose
    /// model is `model` (if given), newest first, at most [`MAX_MATCHES`].
    pub fn search(&self, q: &str, model: Option<&str>) -> Value {
        let q = q.to_lowercase();
        let inner = self.read();
        let searchable = || {
            inner
                .items
                .iter()
                .filter_map(|(k, i)| Some((k, i, i.text.as_deref()?)))
        };
        let mut found: Vec<(&String, &Item)> = searchable()
            .filter(|(_, e, _)| model.map_or(true, |m| e.model == m))
            .filter(|(_, _, text)| q.is_empty() || text.contains(&q))
            .map(|(k, e, _)| (k, e))
            .collect();
        found.sort_by(|a, b| b.1.created.total_cmp(&a.1.created));
        let total = found.len();
        let data: Vec<Value> = found
            .iter()
            .take(MAX_MATCHES)
            .map(|(key, e)| {
                json!({
                    "key": key,
                    "route": e.route,
                    "model": e.model,
                    "namespace": namespace(&e.scope),
                    "created": e.created,
                    "bytes": e.bytes,
                })
            })
            .collect();
        json!({
            "object": "list",
            "data": data,
            "matches": total,
            "searched": searchable().count(),
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
        "namespace": index::namespace(&meta.scope),
        "created": meta.created,
        "request": crate::body_log::redacted(request),
        "response": answer,
        "events": events,
    }))
}
