//! Upkeep: hit counts that survive restarts, and maintenance that drops unused old entries;
//! the cache's background thread that runs them (with the start-up scan and answer collection).
//!
//! Hits are counted in memory and appended once a second (only if there were any) to
//! `<dir>/hits.log` as `KEY COUNT LAST_HIT_UNIX` lines: an append of a few lines per second
//! instead of a disk write per hit, and safe with several relays on one directory (each
//! appends whole lines). At start the log is summed. Maintenance removes entries older than
//! `retention_days` whose hit count is below `min_hit_count`, then rewrites the log compactly.
//!
//! Memory stays bounded whatever the number of keys: counts live in a fixed-size count-min
//! sketch ([`SKETCH_ROWS`] × [`SKETCH_WIDTH`] counters, 2 MiB), which never undercounts (so
//! maintenance never drops an entry that had `min_hit_count` hits; a rare collision may keep
//! an unhit one), and the hits waiting for the next append are capped at [`MAX_PENDING`] keys
//! (beyond that a second's hits still count in memory but miss the log).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::key::is_key;
use super::{config, lease, now_precise, scan, store, Cache};
use crate::log;

pub const HITS_FILE: &str = "hits.log";

/// Rows of the count-min sketch; each uses its own 18 bits of the key.
const SKETCH_ROWS: usize = 2;
/// Counters per row (a power of two).
const SKETCH_WIDTH: usize = 1 << 18;
/// Keys whose hits wait for the next append, at most.
pub const MAX_PENDING: usize = 65_536;

/// Hit counts per key, approximately (never less than the truth).
pub struct HitBook {
    sketch: Vec<AtomicU32>,
    /// Hits not yet appended to the log: key → (count, last hit).
    pending: Mutex<HashMap<String, (u64, u64)>>,
    /// Every hit known: the log as read at start plus this process's hits.
    total: AtomicU64,
    /// Lines in the log when it was read (to decide whether it needs compacting).
    lines_read: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sketch cells of `key`, one per row: 18 bits of its hex digits each.
fn cells(key: &str) -> [usize; SKETCH_ROWS] {
    let mut out = [0; SKETCH_ROWS];
    for (row, cell) in out.iter_mut().enumerate() {
        let bits = key
            .get(row * 8..row * 8 + 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        *cell = row * SKETCH_WIDTH + (bits as usize & (SKETCH_WIDTH - 1));
    }
    out
}

impl Default for HitBook {
    fn default() -> Self {
        HitBook {
            sketch: (0..SKETCH_ROWS * SKETCH_WIDTH)
                .map(|_| AtomicU32::new(0))
                .collect(),
            pending: Mutex::default(),
            total: AtomicU64::new(0),
            lines_read: 0,
        }
    }
}

impl HitBook {
    /// Sums `<dir>/hits.log`, line by line.
    pub fn load(dir: &Path) -> HitBook {
        let mut book = HitBook::default();
        let Ok(file) = fs::File::open(dir.join(HITS_FILE)) else {
            return book;
        };
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            book.lines_read += 1;
            let mut parts = line.split(' ');
            let (Some(key), Some(count)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let (true, Ok(count)) = (is_key(key), count.parse::<u64>()) {
                book.add(key, count);
            }
        }
        book
    }

    fn add(&self, key: &str, n: u64) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        for cell in cells(key) {
            if let Some(c) = self.sketch.get(cell) {
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(n))
                });
            }
        }
        self.total.fetch_add(u64::from(n), Ordering::Relaxed);
    }

    pub fn record(&self, key: &str, now: u64) {
        self.add(key, 1);
        let mut pending = lock(&self.pending);
        if let Some(e) = pending.get_mut(key) {
            e.0 += 1;
            e.1 = now;
        } else if pending.len() < MAX_PENDING {
            pending.insert(key.to_string(), (1, now));
        }
    }

    /// Hits of `key` (an upper bound: never less than the true count).
    pub fn count(&self, key: &str) -> u64 {
        cells(key)
            .iter()
            .filter_map(|&c| self.sketch.get(c))
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .min()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
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

    /// True when the log read at start holds many more lines than there are `entries` (it
    /// only grows between maintenance runs).
    pub fn needs_compacting(&self, entries: u64) -> bool {
        self.lines_read > 2 * entries + 1000
    }

    /// Rewrites the log with one line per entry still in `dir` that has hits (its last-hit
    /// time becomes `now`).
    pub fn compact(&self, dir: &Path, now: u64) -> std::io::Result<()> {
        let _ = self.flush(dir);
        let mut text = String::new();
        for (key, _) in store::entries(dir) {
            let count = self.count(&key);
            if count > 0 {
                text.push_str(&format!("{key} {count} {now}\n"));
            }
        }
        store::write_atomic(&dir.join(HITS_FILE), text.as_bytes()).map(drop)
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
    for (key, request) in store::entries(dir) {
        let Some(meta) = fs::read(request).ok().and_then(|b| store::parse_meta(&b)) else {
            continue;
        };
        if now - meta.created >= retention_secs && book.count(&key) < min_hits {
            removed.bytes += store::remove(dir, &key);
            removed.entries += 1;
            removed.keys.push(key);
        }
    }
    let _ = book.compact(dir, now as u64);
    removed
}

/// The cache's background thread: the start-up scan (or a count, when another replica holds
/// the scan lease), maintenance, hit-count flushing and collection of replaced answers.
impl Cache {
    /// Starts the background thread: the start-up scan, maintenance, hit-count flushing.
    pub fn start_upkeep(self: &Arc<Cache>) {
        let cache = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("cache-upkeep".to_string())
            .spawn(move || cache.upkeep());
        if let Err(e) = spawned {
            log::error(&format!("cannot start the cache upkeep thread: {e}"));
        }
    }

    fn upkeep(&self) {
        let dir = &self.config.dir;
        let started = SystemTime::now();
        // one replica scans a shared directory; the others count its files, and scan after
        // all if no scan finished by the time the holder's lease would have run out
        let mut scan_due = None;
        // the counters keep entries stored from now on apart (see `counters.rs`)
        self.counters.scan_started();
        let fresh = |key: &str| self.counters.fresh(key);
        let report = match scan::leased(&self.config.dir, &fresh) {
            Some(report) => report,
            None => {
                scan_due = Some(Instant::now() + lease::LEASE);
                scan::count(dir, &fresh)
            }
        };
        self.counters.scan_finished(&report);
        let indexed = self.index.fill(dir);
        log::info(&format!(
            "cache index: {indexed} recorded requests read for the closest entry of a replay miss"
        ));
        if self.hits.needs_compacting(report.entries) {
            if let Err(e) = self.hits.compact(dir, crate::util::now_secs()) {
                log::error(&format!("cannot compact {}: {e}", HITS_FILE));
            }
        }
        let mut next_maintenance = self.config.maintenance.as_ref().map(|m| {
            if m.on_startup {
                Instant::now()
            } else {
                Instant::now() + m.interval
            }
        });
        loop {
            if scan_due.is_some_and(|at| Instant::now() >= at) {
                scan_due = if lease::last_scan(dir).is_some_and(|t| t >= started) {
                    None
                } else {
                    self.counters.scan_started();
                    if let Some(report) = scan::leased(&self.config.dir, &fresh) {
                        self.counters.scan_finished(&report);
                        None
                    } else {
                        self.counters.scan_abandoned();
                        Some(Instant::now() + lease::LEASE)
                    }
                };
            }
            if let (Some(m), Some(at)) = (&self.config.maintenance, next_maintenance) {
                if Instant::now() >= at {
                    self.maintain(m);
                    next_maintenance = Some(Instant::now() + m.interval);
                }
            }
            self.replaced.collect(dir, scan::GRACE);
            self.flush_hits();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn maintain(&self, m: &config::Maintenance) {
        let removed = maintain(
            &self.config.dir,
            &self.hits,
            now_precise(),
            m.retention.as_secs_f64(),
            m.min_hit_count,
        );
        for key in &removed.keys {
            self.memory.remove(key);
        }
        self.index.remove(&removed.keys);
        self.counters.sub(removed.entries, removed.bytes);
        log::info(&format!(
            "cache maintenance: removed {} entries ({} bytes) older than {:.2} days with fewer \
             than {} hits",
            removed.entries,
            removed.bytes,
            m.retention.as_secs_f64() / 86_400.0,
            m.min_hit_count
        ));
    }
}
