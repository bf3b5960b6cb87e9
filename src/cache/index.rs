//! The index of recorded requests that a `replay` miss searches for its closest entry, so a
//! miss never walks the cache directory on the request's thread.
//!
//! Per route and scope, each entry's model, recorder (`recorded_by`) and a fingerprint of its
//! canonical request: the [`SKETCH`] smallest hashes of its leaves (a leaf is a field path with
//! its scalar value, e.g. `messages[1].content = "hi"`). The fingerprints of two requests that
//! differ in a few fields differ in about as many hashes, so ranking by the fingerprint
//! difference finds the nearest entries without reading them; only the best [`READ`] are then
//! read and diffed exactly. The index is filled at start (one read of every `.request`, after
//! the start-up scan, on the upkeep thread, whichever replica holds the scan lease) and by
//! every store, and
//! bounded: at most [`MAX_INDEXED`] entries (the oldest dropped first, about 1 KiB each at
//! most), and a search compares at most [`MAX_COMPARED`] fingerprints, same model first.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::RwLock;

use serde_json::Value;

use super::store;

/// Leaf hashes kept per entry.
pub const SKETCH: usize = 128;
/// Entries indexed at most (the oldest go first).
pub const MAX_INDEXED: usize = 30_000;
/// Fingerprints one search compares at most.
pub const MAX_COMPARED: usize = 10_000;
/// Entries one search reads from disk at most (the nearest by fingerprint).
pub const READ: usize = 3;

/// One indexed entry.
#[derive(Debug)]
struct Item {
    key: String,
    model: String,
    /// The smallest leaf hashes, ascending.
    sketch: Box<[u64]>,
    /// Whether leaves beyond the sketch were left out.
    cut: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, scope) → entries, oldest first.
    groups: HashMap<(String, String), Vec<Item>>,
    /// Insertion order for the global bound: (route, scope, key).
    order: VecDeque<(String, String, String)>,
    /// Whether the start-up scan has filled the index.
    ready: bool,
}

/// The index (see the module documentation).
#[derive(Debug, Default)]
pub struct Index {
    inner: RwLock<Inner>,
}

impl Index {
    /// Adds (or replaces) the entry `key` with its canonical request.
    pub fn insert(&self, route: &str, scope: &str, key: &str, canonical: &[u8]) {
        let Ok(request) = serde_json::from_slice::<Value>(canonical) else {
            return;
        };
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (sketch, cut) = sketch(&request);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let group = inner
            .groups
            .entry((route.to_string(), scope.to_string()))
            .or_default();
        let before = group.len();
        group.retain(|i| i.key != key);
        let replaced = group.len() < before;
        group.push(Item {
            key: key.to_string(),
            model,
            sketch,
            cut,
        });
        if !replaced {
            inner
                .order
                .push_back((route.to_string(), scope.to_string(), key.to_string()));
        }
        while inner.order.len() > MAX_INDEXED {
            let Some((route, scope, old)) = inner.order.pop_front() else {
                break;
            };
            if let Some(g) = inner.groups.get_mut(&(route, scope)) {
                g.retain(|i| i.key != old);
            }
        }
    }

    /// Forgets entries (removed by maintenance or quarantined).
    pub fn remove(&self, keys: &[String]) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for group in inner.groups.values_mut() {
            group.retain(|i| !keys.contains(&i.key));
        }
    }

    /// Indexes every entry under `dir` (its `.request` files, read once; at start, on the
    /// upkeep thread, after the scan) and marks the index ready. Returns how many were read.
    pub fn fill(&self, dir: &Path) -> u64 {
        let mut read = 0;
        for (key, path) in store::entries(dir) {
            let Ok(file) = fs::read(&path) else {
                continue;
            };
            if let Some((meta, canonical)) = store::split_request(&file) {
                self.insert(&meta.route, &meta.scope, &key, canonical);
                read += 1;
            }
        }
        self.inner.write().unwrap_or_else(|p| p.into_inner()).ready = true;
        read
    }

    pub fn ready(&self) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).ready
    }

    /// The keys of at most [`READ`] entries of `route` and `scope` nearest to `asked`, nearest
    /// first (same model first among equals), and how many were compared.
    pub fn nearest(&self, route: &str, scope: &str, asked: &Value) -> (Vec<String>, u64) {
        let model = asked.get("model").and_then(Value::as_str).unwrap_or("");
        let (sketch_a, cut_a) = sketch(asked);
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(group) = inner.groups.get(&(route.to_string(), scope.to_string())) else {
            return (Vec::new(), 0);
        };
        // same model first, newest first, at most MAX_COMPARED
        let candidates = group
            .iter()
            .rev()
            .filter(|i| i.model == model)
            .chain(group.iter().rev().filter(|i| i.model != model))
            .take(MAX_COMPARED);
        let mut best: Vec<(usize, bool, &str)> = Vec::with_capacity(READ + 1);
        let mut compared = 0u64;
        for item in candidates {
            compared += 1;
            let d = distance(&sketch_a, cut_a, &item.sketch, item.cut);
            let rank = (d, item.model != model, item.key.as_str());
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

/// The smallest [`SKETCH`] leaf hashes of `request`, and whether some were left out.
fn sketch(request: &Value) -> (Box<[u64]>, bool) {
    let mut hashes = Vec::new();
    leaves(String::new(), request, &mut hashes);
    hashes.sort_unstable();
    hashes.dedup();
    let cut = hashes.len() > SKETCH;
    hashes.truncate(SKETCH);
    (hashes.into_boxed_slice(), cut)
}

fn leaves(path: String, v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(format!("{path}[{i}]"), v, out);
            }
        }
        _ => {
            let mut h = DefaultHasher::new();
            path.hash(&mut h);
            v.to_string().hash(&mut h);
            out.push(h.finish());
        }
    }
}

/// Hashes in one sketch and not the other, counted below the point both sketches cover.
fn distance(a: &[u64], cut_a: bool, b: &[u64], cut_b: bool) -> usize {
    let limit = |s: &[u64], cut: bool| if cut { s.last().copied() } else { None };
    let cover = match (limit(a, cut_a), limit(b, cut_b)) {
        (Some(x), Some(y)) => x.min(y),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => u64::MAX,
    };
    let (mut i, mut j, mut d) = (0, 0, 0);
    loop {
        match (
            a.get(i).filter(|x| **x <= cover),
            b.get(j).filter(|y| **y <= cover),
        ) {
            (Some(x), Some(y)) if x == y => (i, j) = (i + 1, j + 1),
            (Some(x), Some(y)) if x < y => (i, d) = (i + 1, d + 1),
            (Some(_), Some(_)) => (j, d) = (j + 1, d + 1),
            (Some(_), None) => (i, d) = (i + 1, d + 1),
            (None, Some(_)) => (j, d) = (j + 1, d + 1),
            (None, None) => return d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_nearest_entry_is_found_without_reading_any() {
        let index = Index::default();
        let ask = |content: &str, t: f64| {
            json!({"model": "m", "temperature": t, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
        };
        for (i, content) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
            let canonical = ask(content, 0.5).to_string();
            index.insert(
                "/chat/completions",
                "",
                &format!("k{i}"),
                canonical.as_bytes(),
            );
        }
        index.insert(
            "/embeddings",
            "",
            "other",
            ask("beta", 0.2).to_string().as_bytes(),
        );
        let (near, compared) = index.nearest("/chat/completions", "", &ask("beta", 0.2));
        assert_eq!(near.first().map(String::as_str), Some("k1"));
        assert_eq!(compared, 4);
        index.remove(&["k1".to_string()]);
        let (near, _) = index.nearest("/chat/completions", "", &ask("beta", 0.2));
        assert!(!near.contains(&"k1".to_string()));
        assert_eq!(
            index
                .nearest("/chat/completions", "s", &ask("beta", 0.2))
                .0
                .len(),
            0
        );
    }
}
