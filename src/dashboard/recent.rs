//! The last requests, newest last, in a ring bounded by bytes (`ui.recent_bytes`): what the
//! dashboard's requests page lists. An item holds what the access log knows plus the key's
//! name and where the request's bodies can be read back (the body log's offset, the cache
//! key); never a body, never a key.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::answer::Usage;

/// The fixed part of an item's cost (the struct, the ring's slot, the body log's timestamp),
/// on top of its strings.
const ITEM_OVERHEAD: usize = 280;

/// One finished request.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub id: u64,
    /// Unix seconds (millisecond precision) when it finished.
    pub at: f64,
    pub method: String,
    pub path: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub model: String,
    pub upstream: String,
    pub status: u16,
    pub cache: Option<&'static str>,
    pub duration_ms: f64,
    pub usage: Usage,
    pub error: Option<String>,
    pub body_log_at: Option<crate::body_log::Written>,
    pub cache_key: Option<String>,
}

impl Item {
    fn cost(&self) -> usize {
        ITEM_OVERHEAD
            + self.method.len()
            + self.path.len()
            + self.key_id.as_ref().map_or(0, String::len)
            + self.key_name.as_ref().map_or(0, String::len)
            + self.model.len()
            + self.upstream.len()
            + self.error.as_ref().map_or(0, String::len)
            + self.cache_key.as_ref().map_or(0, String::len)
    }

    pub fn describe(&self) -> Value {
        json!({
            "id": self.id,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "model": self.model,
            "upstream": self.upstream,
            "status": self.status,
            "cache": self.cache,
            "duration_ms": (self.duration_ms * 10.0).round() / 10.0,
            "prompt_tokens": self.usage.prompt(),
            "completion_tokens": self.usage.output,
            "cache_read_tokens": self.usage.cache_read,
            "cache_write_tokens": self.usage.cache_write,
            "reasoning_tokens": self.usage.reasoning,
            "error": self.error,
        })
    }
}

/// The ring.
#[derive(Debug)]
pub struct Recent {
    max_bytes: usize,
    bytes: usize,
    next_id: u64,
    items: VecDeque<Item>,
}

impl Recent {
    pub fn new(max_bytes: u64) -> Recent {
        Recent {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            bytes: 0,
            next_id: 1,
            items: VecDeque::new(),
        }
    }

    /// Adds `item` (its id is assigned here), dropping the oldest beyond the byte bound.
    pub fn push(&mut self, mut item: Item) {
        item.id = self.next_id;
        self.next_id += 1;
        self.bytes += item.cost();
        self.items.push_back(item);
        while self.bytes > self.max_bytes {
            let Some(old) = self.items.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.cost());
        }
    }

    /// Up to `limit` items older than `before` (all when `None`), newest first.
    pub fn list(&self, limit: usize, before: Option<u64>) -> Vec<&Item> {
        self.items
            .iter()
            .rev()
            .filter(|i| before.map_or(true, |b| i.id < b))
            .take(limit)
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<&Item> {
        // ids are increasing: a binary search by id
        let i = self.items.binary_search_by_key(&id, |i| i.id).ok()?;
        self.items.get(i)
    }

    /// Items held and the bytes they take, and the bound.
    pub fn usage(&self) -> (usize, usize, usize) {
        (self.items.len(), self.bytes, self.max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_newest_first() {
        // room for exactly four items of a 3-character model
        let mut r = Recent::new((4 * (ITEM_OVERHEAD + 3)) as u64);
        for i in 0..20 {
            r.push(Item {
                model: format!("m{i}"),
                ..Item::default()
            });
        }
        let (n, bytes, max) = r.usage();
        assert!(bytes <= max && n == 4, "{n} items, {bytes} bytes");
        let ids: Vec<u64> = r.list(10, None).iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![20, 19, 18, 17]);
        assert_eq!(r.list(10, Some(19)).len(), 2);
        assert_eq!(r.get(18).map(|i| i.model.as_str()), Some("m17"));
        assert!(r.get(3).is_none());
    }
}
