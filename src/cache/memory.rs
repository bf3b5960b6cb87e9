//! The memory tier: the `memory_items` most-hit entries, answered without touching disk.
//!
//! A plain map with a hit count per entry; when full, the least-hit entry makes room (a scan
//! of at most `memory_items` counts, only when an entry is added).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Entry;

pub struct Memory {
    cap: usize,
    map: Mutex<HashMap<String, (Arc<Entry>, u64)>>,
}

impl Memory {
    pub fn new(cap: usize) -> Memory {
        Memory {
            cap,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (entry, hits) = map.get_mut(key)?;
        *hits += 1;
        Some(Arc::clone(entry))
    }

    pub fn insert(&self, key: &str, entry: Arc<Entry>) {
        if self.cap == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get_mut(key) {
            slot.0 = entry;
            return;
        }
        if map.len() >= self.cap {
            let coldest = map
                .iter()
                .min_by_key(|(_, (_, hits))| *hits)
                .map(|(k, _)| k.clone());
            if let Some(k) = coldest {
                map.remove(&k);
            }
        }
        map.insert(key.to_string(), (entry, 1));
    }

    pub fn remove(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}
