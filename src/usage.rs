//! Per-key usage figures: requests, cache hits, tokens (prompt, of which cache reads and
//! writes; completion, of which reasoning), web searches, cost, errors, last use — in total
//! and per UTC day — and the [`Book`] that keeps them on one machine.
//!
//! The book lives in memory and, with `state.dir`, is written to `usage.json` there at most a
//! second after a change (`util::write_atomic`: temp file, fsync, rename: a `kill -9` loses at most the last second,
//! never the file). With `state.redis` the same figures live in Redis instead (state/redis.rs).
//! Token counts come from the answer's [`Usage`], read by `answer.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::answer::Usage;
use crate::utc;

/// Days of per-day figures kept (older days are dropped; totals stay).
pub const KEEP_DAYS: u64 = 400;

/// One key's figures (for a day, a month, or all time). Money in micro-dollars.
///
/// `prompt_tokens` counts every prompt token the provider processed, cache reads and writes
/// included (`Usage::prompt`); `cache_read_tokens` and `cache_write_tokens` say how many of
/// them were. `completion_tokens` includes `reasoning_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyUsage {
    pub requests: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Of `completion_tokens`, reasoning (thinking).
    pub reasoning_tokens: u64,
    /// Web searches the provider ran (and billed) for the key's answers.
    pub web_searches: u64,
    pub cost_micro_usd: u64,
    /// Tokens and cost that cache hits answered without an upstream call.
    pub saved_tokens: u64,
    pub saved_micro_usd: u64,
    pub errors: u64,
    /// Unix seconds of the last request.
    pub last_used_at: Option<u64>,
}

/// How many counters [`KeyUsage`] has.
const N: usize = 12;

impl KeyUsage {
    /// The counter fields by name, as Redis hashes and `add` use them.
    pub const COUNTERS: [&'static str; N] = [
        "requests",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_micro_usd",
        "saved_tokens",
        "saved_micro_usd",
        "errors",
        "web_searches",
    ];

    pub fn counters(&self) -> [u64; N] {
        [
            self.requests,
            self.cache_hits,
            self.prompt_tokens,
            self.completion_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.cost_micro_usd,
            self.saved_tokens,
            self.saved_micro_usd,
            self.errors,
            self.web_searches,
        ]
    }

    /// Figures from counter values in [`KeyUsage::COUNTERS`] order.
    pub fn from_counters(c: [u64; N], last_used_at: Option<u64>) -> KeyUsage {
        let [requests, cache_hits, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micro_usd, saved_tokens, saved_micro_usd, errors, web_searches] =
            c;
        KeyUsage {
            requests,
            cache_hits,
            prompt_tokens,
            completion_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
            cost_micro_usd,
            saved_tokens,
            saved_micro_usd,
            errors,
            web_searches,
            last_used_at,
        }
    }

    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &KeyUsage) {
        let mut c = self.counters();
        for (a, b) in c.iter_mut().zip(other.counters()) {
            *a = a.saturating_add(b);
        }
        let last = self.last_used_at.max(other.last_used_at);
        *self = KeyUsage::from_counters(c, last);
    }

    /// Tokens a budget counts: every prompt token (cache reads and writes included) and every
    /// completion token.
    pub fn budget_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// The figures as the admin API shows them (USD as numbers beside the micro-dollars).
    pub fn describe(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("cost_usd".into(), (self.cost_micro_usd as f64 / 1e6).into());
            o.insert(
                "saved_usd".into(),
                (self.saved_micro_usd as f64 / 1e6).into(),
            );
        }
        v
    }
}

/// What one request contributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub status: u16,
    /// The answer's tokens (a hit: the stored answer's).
    pub usage: Usage,
    pub cache_hit: bool,
    /// What the call cost (a hit: what it would have cost), micro-dollars.
    pub cost_micro_usd: u64,
}

impl Outcome {
    /// The figures this request adds. A hit costs nothing: its tokens and cost count as saved.
    pub fn figures(&self, now: u64) -> KeyUsage {
        let u = &self.usage;
        let spent = u64::from(!self.cache_hit);
        let saved = u64::from(self.cache_hit);
        KeyUsage {
            requests: 1,
            cache_hits: u64::from(self.cache_hit),
            prompt_tokens: u.prompt() * spent,
            completion_tokens: u.output * spent,
            cache_read_tokens: u.cache_read * spent,
            cache_write_tokens: u.cache_write * spent,
            reasoning_tokens: u.reasoning * spent,
            web_searches: u.web_searches * spent,
            cost_micro_usd: self.cost_micro_usd * spent,
            saved_tokens: u.total() * saved,
            saved_micro_usd: self.cost_micro_usd * saved,
            errors: u64::from(self.status >= 400 || self.status == 0),
            last_used_at: Some(now),
        }
    }
}

/// One key in the book.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    total: KeyUsage,
    /// `YYYY-MM-DD` → that UTC day's figures.
    days: BTreeMap<String, KeyUsage>,
}

/// The file name of the usage figures in `state.dir`.
const USAGE_FILE: &str = "usage.json";

/// The `usage.json` document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UsageFile {
    version: u32,
    keys: HashMap<String, Record>,
}

/// Usage on one machine: in memory, written to `usage.json` under `state.dir` if set.
#[derive(Debug, Default)]
pub struct Book {
    keys: Mutex<HashMap<String, Record>>,
    /// Changed since the last write.
    dirty: AtomicBool,
    path: Option<PathBuf>,
}

/// Checks `dir/usage.json` as [`Book::open`] reads it, without creating anything: `--check`
/// fails where the start would.
pub fn check_file(dir: &Path) -> Result<(), String> {
    read_file(&dir.join(USAGE_FILE)).map(|_| ())
}

/// The figures of `usage.json` at `path` (a missing file is empty).
fn read_file(path: &Path) -> Result<HashMap<String, Record>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let doc: UsageFile = crate::json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: line {}, column {}: {e}; it is written by the relay, restore it \
                     from a backup or move it away to start from zero",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?;
            Ok(doc.keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

impl Book {
    /// Opens the book, reading `dir/usage.json` when `dir` is set (a missing file is empty).
    pub fn open(dir: Option<&Path>) -> Result<Book, String> {
        let Some(dir) = dir else {
            return Ok(Book::default());
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create state directory {}: {e}; check `state.dir`",
                dir.display()
            )
        })?;
        let path = dir.join(USAGE_FILE);
        let keys = read_file(&path)?;
        Ok(Book {
            keys: Mutex::new(keys),
            dirty: AtomicBool::new(false),
            path: Some(path),
        })
    }

    pub fn record(&self, key_id: &str, figures: &KeyUsage, now: u64) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let r = keys.entry(key_id.to_string()).or_default();
        r.total.add(figures);
        r.days.entry(utc::day(now)).or_default().add(figures);
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// All-time figures, or the sum of the days from `since` (unix seconds) on.
    pub fn totals(&self, key_id: &str, since: Option<u64>) -> KeyUsage {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = keys.get(key_id) else {
            return KeyUsage::default();
        };
        let Some(since) = since else {
            return r.total.clone();
        };
        let mut sum = KeyUsage::default();
        for (_, u) in r.days.range(utc::day(since)..) {
            sum.add(u);
        }
        sum
    }

    /// Per-day figures from `since` on, oldest first.
    pub fn days(&self, key_id: &str, since: u64) -> Vec<(String, KeyUsage)> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key_id).map_or_else(Vec::new, |r| {
            r.days
                .range(utc::day(since)..)
                .map(|(d, u)| (d.clone(), u.clone()))
                .collect()
        })
    }

    /// The figures of the UTC day and month containing `now`.
    pub fn period(&self, key_id: &str, now: u64) -> (KeyUsage, KeyUsage) {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = keys.get(key_id) else {
            return Default::default();
        };
        let (today, month) = (utc::day(now), utc::month(now));
        let mut m = KeyUsage::default();
        for (_, u) in r
            .days
            .range(month.clone()..)
            .filter(|(d, _)| d.starts_with(&month))
        {
            m.add(u);
        }
        (r.days.get(&today).cloned().unwrap_or_default(), m)
    }

    /// Writes `usage.json` if anything changed since the last write (dropping days older than
    /// [`KEEP_DAYS`]).
    pub fn flush(&self, now: u64) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let oldest = utc::day(now.saturating_sub(KEEP_DAYS * 86_400));
        let doc = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            for r in keys.values_mut() {
                r.days.retain(|d, _| *d >= oldest);
            }
            UsageFile {
                version: 1,
                keys: keys.clone(),
            }
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| format!("cannot serialize usage: {e}"))?;
        crate::util::write_atomic(path, &bytes, 0o600)
            .map(drop)
            .map_err(|e| {
                self.dirty.store(true, Ordering::SeqCst);
                format!("cannot write {}: {e}", path.display())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_adds_its_cache_tokens_to_the_prompt_and_a_hit_saves_them() {
        let usage = Usage::of_tokens(3, 7, 50_000, 1_000, 2);
        let outcome = |cache_hit| {
            Outcome {
                status: 200,
                usage,
                cache_hit,
                cost_micro_usd: 40,
            }
            .figures(9)
        };
        let served = outcome(false);
        assert_eq!(
            (
                served.prompt_tokens,
                served.completion_tokens,
                served.cache_read_tokens,
                served.cache_write_tokens,
                served.reasoning_tokens,
                served.budget_tokens(),
                served.cost_micro_usd
            ),
            (51_003, 7, 50_000, 1_000, 2, 51_010, 40)
        );
        let hit = outcome(true);
        assert_eq!(
            (hit.prompt_tokens, hit.saved_tokens, hit.saved_micro_usd),
            (0, 51_010, 40)
        );
        let mut sum = served.clone();
        sum.add(&hit);
        assert_eq!(
            KeyUsage::from_counters(sum.counters(), sum.last_used_at),
            sum
        );
    }
}
