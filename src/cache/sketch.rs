//! The fingerprint of a canonical request that the index ranks entries by: the [`SKETCH`]
//! smallest hashes of its leaves (a leaf is a field path with its scalar value, e.g.
//! `messages[1].content = "hi"`), and the difference of two fingerprints.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::Value;

/// Leaf hashes kept per entry.
pub const SKETCH: usize = 128;

/// The smallest [`SKETCH`] leaf hashes of `request`, and whether some were left out.
pub fn sketch(request: &Value) -> (Box<[u64]>, bool) {
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
pub fn distance(a: &[u64], cut_a: bool, b: &[u64], cut_b: bool) -> usize {
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
