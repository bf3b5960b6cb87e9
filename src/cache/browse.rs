//! The dashboard's view of the cache: request texts kept for search once it is on, entries by
//! model and namespace and search by text, both
//! over the one index of recorded requests (`index.rs`; a search reads only the index, so its
//! answer says how many entries it covers), and one entry opened with credentials redacted.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use super::index::{self, namespace, search_text, Index, Item, ENTRY_OVERHEAD};
use super::store;

/// Matches one search returns, at most.
const MAX_MATCHES: usize = 200;

impl Index {
    /// Keeps request texts for the dashboard's search from now on, within `max_bytes` (the
    /// first call's bound holds). Returns true if it was off and entries are indexed without
    /// their text (then [`Index::add_texts`] reads them).
    pub fn enable_search(&self, max_bytes: u64) -> bool {
        let mut inner = self.write();
        if inner.search_max.is_some() {
            return false;
        }
        inner.search_max = Some(usize::try_from(max_bytes).unwrap_or(usize::MAX));
        !inner.items.is_empty()
    }

    /// Reads the search text of every indexed entry that has none (search turned on by a
    /// reload after the fill), newest first, until the bound is reached.
    pub fn add_texts(&self, dir: &Path) {
        let missing: Vec<String> = {
            let inner = self.read();
            let mut keys: Vec<(u64, &String)> = inner
                .items
                .iter()
                .filter(|(_, i)| i.text.is_none())
                .map(|(k, i)| (i.seq, k))
                .collect();
            keys.sort_unstable_by_key(|k| std::cmp::Reverse(k.0));
            keys.into_iter().map(|(_, k)| k.clone()).collect()
        };
        for key in missing {
            let Ok(file) = fs::read(store::request_path(dir, &key)) else {
                continue;
            };
            let Some((_, canonical)) = store::split_request(&file) else {
                continue;
            };
            let text = search_text(canonical);
            let mut inner = self.write();
            let room = inner
                .search_max
                .unwrap_or(usize::MAX)
                .saturating_sub(inner.text_bytes);
            let Some(item) = inner.items.get_mut(&key).filter(|i| i.text.is_none()) else {
                continue;
            };
            let cost =
                ENTRY_OVERHEAD + key.len() + item.route.len() + item.model.len() + text.len();
            if cost > room {
                return;
            }
            item.text = Some(text);
            let seq = item.seq;
            inner.text_bytes += cost;
            // older than every text kept so far: it leaves the search first
            inner.texts.push_front((seq, key));
        }
    }

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
