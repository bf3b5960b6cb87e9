//! Upkeep: hit counts that survive restarts, and maintenance that drops unused old entries.
//!
//! Hits are counted in memory and appended once a second (only if there were any) to
//! `<dir>/hits.log` as `KEY COUNT LAST_HIT_UNIX` lines: an append of a few lines per second
//! instead of a disk write per hit, and safe with several relays on one directory (each
//! appends whole lines). At start the log is summed. Maintenance removes entries older than
//! `retention_days` whose hit count is below `min_hit_count`, then rewrites the log compactly.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use super::key::is_key;
use super::store;

pub const HITS_FILE: &str = "hits.log";

/// Hit counts and last-hit times per key.
#[derive(Default)]
pub struct HitBook {
    /// Everything known: the log as read at start plus this process's hits.
    totals: Mutex<HashMap<String, (u64, u64)>>,
    /// Hits not yet appended to the log.
    pending: Mutex<HashMap<String, (u64, u64)>>,
    /// Lines in the log when it was read (to decide whether it needs compacting).
    lines_read: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HitBook {
    /// Sums `<dir>/hits.log`.
    pub fn load(dir: &Path) -> HitBook {
        let mut book = HitBook::default();
        if let Ok(text) = fs::read_to_string(dir.join(HITS_FILE)) {
            let mut totals = lock(&book.totals);
            for line in text.lines() {
                book.lines_read += 1;
                let mut parts = line.split(' ');
                let (Some(key), Some(count), Some(last)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (Ok(count), Ok(last)) = (count.parse::<u64>(), last.parse::<u64>()) else {
                    continue;
                };
                if is_key(key) {
                    let e = totals.entry(key.to_string()).or_default();
                    e.0 += count;
                    e.1 = e.1.max(last);
                }
            }
        }
        book
    }

    pub fn record(&self, key: &str, now: u64) {
        for map in [&self.pending, &self.totals] {
            let mut m = lock(map);
            let e = m.entry(key.to_string()).or_default();
            e.0 += 1;
            e.1 = now;
        }
    }

    pub fn count(&self, key: &str) -> u64 {
        lock(&self.totals).get(key).map_or(0, |e| e.0)
    }

    pub fn total(&self) -> u64 {
        lock(&self.totals).values().map(|e| e.0).sum()
    }

    /// Appends pending hits to the log.
    pub fn flush(&self, dir: &Path) -> std::io::Result<()> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(pending.len() * 90);
        for (key, (count, last)) in pending {
            text.push_str(&format!("{key} {count} {last}\n"));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(HITS_FILE))?;
        f.write_all(text.as_bytes())
    }

    /// True when the log read at start holds many lines per key (it only grows between
    /// maintenance runs).
    pub fn needs_compacting(&self) -> bool {
        self.lines_read > 2 * lock(&self.totals).len() as u64 + 1000
    }

    /// Rewrites the log with one line per key still in `keep`.
    pub fn compact(&self, dir: &Path, keep: impl Fn(&str) -> bool) -> std::io::Result<()> {
        let _ = self.flush(dir);
        let mut totals = lock(&self.totals);
        totals.retain(|k, _| keep(k));
        let mut text = String::new();
        for (key, (count, last)) in totals.iter() {
            text.push_str(&format!("{key} {count} {last}\n"));
        }
        store::write_atomic(&dir.join(HITS_FILE), text.as_bytes())
    }
}

/// What maintenance did.
pub struct Removed {
    pub entries: u64,
    pub bytes: u64,
    pub keys: Vec<String>,
}

/// Removes entries created more than `retention_secs` before `now` with fewer than
/// `min_hits` hits, then compacts the hit log.
pub fn maintain(
    dir: &Path,
    book: &HitBook,
    now: f64,
    retention_secs: f64,
    min_hits: u64,
) -> Removed {
    let mut removed = Removed {
        entries: 0,
        bytes: 0,
        keys: Vec::new(),
    };
    for sub in store::fan_out_dirs(dir) {
        let Ok(rd) = fs::read_dir(&sub) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".request").filter(|k| is_key(k)) else {
                continue;
            };
            let Some(meta) = fs::read(e.path()).ok().and_then(|b| store::parse_meta(&b)) else {
                continue;
            };
            if now - meta.created >= retention_secs && book.count(key) < min_hits {
                removed.bytes += store::remove(dir, key);
                removed.entries += 1;
                removed.keys.push(key.to_string());
            }
        }
    }
    let _ = book.compact(dir, |k| store::paths(dir, k).0.exists());
    removed
}
