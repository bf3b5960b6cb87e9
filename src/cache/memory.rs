//! The memory tier: the most-hit entries, answered without touching disk, bounded by count
//! (`memory_items`) and by bytes (`memory_bytes`).
//!
//! A map with, per entry, the stamp of the `.request` it was read from (`Cache::find` compares
//! it with the file on disk before serving, so a newer entry written by another replica or a
//! refresh replaces a held one) and a small hit counter (0–3). Eviction is S3-FIFO (Yang et
//! al., SOSP 2023): a new entry joins a small FIFO; at its head an entry hit since it came
//! moves to the main FIFO, the others leave (their keys kept in a ghost FIFO, so one coming
//! back soon goes straight to main). At the head of main an entry hit since its last turn goes
//! round again with one hit less, the others leave: a counter decays by one per round, so an
//! entry that was hot long ago ages out for one hot now. Each step is O(1) amortised; there
//! is no scan of the map. An entry larger than `memory_bytes` is served from disk only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::store::Stamp;
use super::Entry;

/// The highest hit count kept: an entry survives at most this many rounds of main unhit.
const MAX_FREQ: u8 = 3;

pub struct Memory {
    cap: usize,
    cap_bytes: u64,
    held: Mutex<Held>,
}

struct Slot {
    entry: Arc<Entry>,
    stamp: Stamp,
    freq: u8,
    /// In the main FIFO (else the small one).
    main: bool,
    /// Which queue item is this slot's: older items of a key removed and added again are skipped.
    turn: u64,
}

#[derive(Default)]
struct Held {
    map: HashMap<String, Slot>,
    small: VecDeque<(String, u64)>,
    main: VecDeque<(String, u64)>,
    /// Keys evicted from the small FIFO unhit, oldest first (at most `cap` of them), each with
    /// the turn it left at: a key that left again later is only forgotten at its later turn.
    ghost: VecDeque<(String, u64)>,
    ghosts: HashMap<String, u64>,
    /// Entries in the small FIFO.
    small_len: usize,
    /// Sum of the held answers' sizes.
    bytes: u64,
    turns: u64,
}

impl Held {
    fn remove(&mut self, key: &str) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(size(&slot.entry));
        if !slot.main {
            self.small_len -= 1;
        }
        // items of removed keys stay queued until their turn; keep them a bounded share
        if self.small.len() + self.main.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            let live = |(k, t): &(String, u64)| map.get(k).is_some_and(|s| s.turn == *t);
            self.small.retain(live);
            self.main.retain(live);
        }
        Some(slot)
    }

    fn push(&mut self, key: &str, slot: Slot) {
        let item = (key.to_string(), slot.turn);
        if slot.main {
            self.main.push_back(item);
        } else {
            self.small_len += 1;
            self.small.push_back(item);
        }
        self.bytes += size(&slot.entry);
        self.map.insert(key.to_string(), slot);
    }

    /// Takes one step towards room: evicts an entry, moves one from small to main, or ages one
    /// in main. False when nothing is held.
    fn step(&mut self, cap: usize) -> bool {
        let from_small = self.small_len > 0 && (self.small_len * 10 >= cap || self.main.is_empty());
        let queue = if from_small {
            &mut self.small
        } else {
            &mut self.main
        };
        let Some((key, turn)) = queue.pop_front() else {
            return false;
        };
        let Some(slot) = self.map.get_mut(&key).filter(|s| s.turn == turn) else {
            return true; // a removed key's item
        };
        if from_small && slot.freq > 0 {
            slot.main = true;
            self.small_len -= 1;
            self.main.push_back((key, turn));
        } else if !from_small && slot.freq > 0 {
            slot.freq -= 1;
            self.main.push_back((key, turn));
        } else {
            self.remove(&key);
            if from_small {
                self.turns += 1;
                self.ghosts.insert(key.clone(), self.turns);
                self.ghost.push_back((key, self.turns));
                while self.ghost.len() > cap {
                    if let Some((old, turn)) = self.ghost.pop_front() {
                        if self.ghosts.get(&old) == Some(&turn) {
                            self.ghosts.remove(&old);
                        }
                    }
                }
            }
        }
        true
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
        let slot = held.map.get_mut(key)?;
        slot.freq = (slot.freq + 1).min(MAX_FREQ);
        Some((Arc::clone(&slot.entry), slot.stamp))
    }

    pub fn insert(&self, key: &str, entry: Arc<Entry>, stamp: Stamp) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // a replaced entry keeps its place in the order of heat
        let before = held.remove(key).map(|s| (s.freq, s.main));
        let size = size(&entry);
        if self.cap == 0 || size > self.cap_bytes {
            return;
        }
        while held.map.len() >= self.cap || held.bytes + size > self.cap_bytes {
            if !held.step(self.cap) {
                break;
            }
        }
        let (freq, main) = before.unwrap_or_else(|| (0, held.ghosts.remove(key).is_some()));
        held.turns += 1;
        let turn = held.turns;
        held.push(
            key,
            Slot {
                entry,
                stamp,
                freq,
                main,
                turn,
            },
        );
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
            request: std::path::PathBuf::new(),
        })
    }

    #[test]
    fn bounded_by_bytes_and_count_evicting_the_unhit() {
        let m = Memory::new(10, 1000);
        m.insert("a", entry(400), Stamp::default());
        m.insert("b", entry(400), Stamp::default());
        m.get("a");
        m.insert("c", entry(400), Stamp::default()); // 1200 > 1000: the unhit `b` goes
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

    /// Reads `key` as the cache does: a miss is loaded and inserted.
    fn access(m: &Memory, key: &str) -> bool {
        let hit = m.get(key).is_some();
        if !hit {
            m.insert(key, entry(1), Stamp::default());
        }
        hit
    }

    #[test]
    fn an_old_hot_entry_ages_out_for_new_hot_ones() {
        let m = Memory::new(4, u64::MAX);
        access(&m, "old");
        for _ in 0..1000 {
            access(&m, "old");
        }
        // the traffic moves on: four new entries, each hit over and over, and never `old` again
        let new = ["n1", "n2", "n3", "n4"];
        for _ in 0..50 {
            for k in new {
                access(&m, k);
            }
        }
        let mut hits = 0;
        for k in new {
            hits += usize::from(access(&m, k));
        }
        assert_eq!(hits, 4, "the four hot entries are all held");
        assert!(m.get("old").is_none(), "the entry hot long ago aged out");
    }

    #[test]
    fn one_off_entries_do_not_push_out_a_hot_one() {
        let m = Memory::new(10, u64::MAX);
        for i in 0..1000 {
            access(&m, "hot");
            access(&m, &format!("once-{i}"));
        }
        assert!(m.get("hot").is_some());
        assert_eq!(m.usage().0, 10);
        // removed keys leave no more than a bounded share of queue items behind
        for i in 0..1000 {
            m.insert(&format!("r{i}"), entry(1), Stamp::default());
            m.remove(&format!("r{i}"));
        }
        let held = m.held.lock().unwrap_or_else(|p| p.into_inner());
        assert!(held.small.len() + held.main.len() <= 2 * held.map.len() + 64);
    }
}
