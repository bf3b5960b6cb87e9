//! The memory tier: the most-hit entries, answered without touching disk, bounded by count
//! (`memory_items`) and by bytes (`memory_bytes`).
//!
//! A plain map with a hit count per entry and the stamp of the `.request` each was read from
//! (`Cache::find` compares it with the file on disk before serving, so a newer entry written by
//! another replica or a refresh replaces a held one); when full, the least-hit entries make room (a scan
//! of at most `memory_items` counts per eviction, only when an entry is added). An entry
//! larger than `memory_bytes` is served from disk only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::store::Stamp;
use super::Entry;

pub struct Memory {
    cap: usize,
    cap_bytes: u64,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Each entry with the stamp of the `.request` it was read from or written as, and its hits.
    map: HashMap<String, (Arc<Entry>, Stamp, u64)>,
    /// Sum of the held answers' sizes.
    bytes: u64,
}

impl Held {
    fn remove(&mut self, key: &str) {
        if let Some((entry, _, _)) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(size(&entry));
        }
    }
}

fn size(entry: &Entry) -> u64 {
    entry.response.len() as u64
}

impl Memory {
    pub fn new(cap: usize, cap_bytes: u64) -> Memory {
        Memory {
            cap,
            cap_bytes,
            held: Mutex::new(Held::default()),
        }
    }

    /// The entry of `key` and the stamp of the `.request` it came from.
    pub fn get(&self, key: &str) -> Option<(Arc<Entry>, Stamp)> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (entry, stamp, hits) = held.map.get_mut(key)?;
        *hits += 1;
        Some((Arc::clone(entry), *stamp))
    }

    pub fn insert(&self, key: &str, entry: Arc<Entry>, stamp: Stamp) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let hits = held.map.get(key).map_or(1, |(_, _, hits)| *hits);
        held.remove(key);
        let size = size(&entry);
        if self.cap == 0 || size > self.cap_bytes {
            return;
        }
        while held.map.len() >= self.cap || held.bytes + size > self.cap_bytes {
            let coldest = held
                .map
                .iter()
                .min_by_key(|(_, (_, _, hits))| *hits)
                .map(|(k, _)| k.clone());
            let Some(k) = coldest else { break };
            held.remove(&k);
        }
        held.bytes += size;
        held.map.insert(key.to_string(), (entry, stamp, hits));
    }

    pub fn remove(&self, key: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        (held.map.len(), held.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            key: String::new(),
            route: String::new(),
            usage: None,
            response: vec![b'x'; len],
            created: 0.0,
            version: 1,
            gaps_ms: Vec::new(),
        })
    }

    #[test]
    fn bounded_by_bytes_and_count_evicting_the_least_hit() {
        let m = Memory::new(10, 1000);
        m.insert("a", entry(400), Stamp::default());
        m.insert("b", entry(400), Stamp::default());
        m.get("a");
        m.insert("c", entry(400), Stamp::default()); // 1200 > 1000: the colder `b` goes
        assert!(m.get("a").is_some() && m.get("c").is_some() && m.get("b").is_none());
        assert_eq!(m.usage(), (2, 800));
        m.insert("big", entry(1001), Stamp::default()); // larger than the whole tier: not held
        assert!(m.get("big").is_none());
        assert_eq!(m.usage(), (2, 800));
        m.insert("a", entry(100), Stamp::default()); // replacing an entry counts its new size
        assert_eq!(m.usage(), (2, 500));
        m.remove("a");
        assert_eq!(m.usage(), (1, 400));

        let few = Memory::new(2, u64::MAX);
        for k in ["x", "y", "z"] {
            few.insert(k, entry(1), Stamp::default());
        }
        assert_eq!(few.usage().0, 2);
    }
}
