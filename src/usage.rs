//! Per-key usage figures: requests, cache hits, tokens, cost, errors, last use — in total and
//! per UTC day — and the [`Book`] that keeps them on one machine.
//!
//! The book lives in memory and, with `state.dir`, is written to `usage.json` there at most a
//! second after a change (`util::write_atomic`: temp file, fsync, rename: a `kill -9` loses at most the last second,
//! never the file). With `state.redis` the same figures live in Redis instead (state/redis.rs).
//! Token counts come from the `usage` object an OpenAI-compatible upstream puts in a whole
//! answer or in a stream's last chunk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sse;
use crate::utc;

/// Days of per-day figures kept (older days are dropped; totals stay).
pub const KEEP_DAYS: u64 = 400;

/// One key's figures (for a day, a month, or all time). Money in micro-dollars.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyUsage {
    pub requests: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
    /// Tokens and cost that cache hits answered without an upstream call.
    pub saved_tokens: u64,
    pub saved_micro_usd: u64,
    pub errors: u64,
    /// Unix seconds of the last request.
    pub last_used_at: Option<u64>,
}

impl KeyUsage {
    /// The counter fields by name, as Redis hashes and `add` use them.
    pub const COUNTERS: [&'static str; 8] = [
        "requests",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cost_micro_usd",
        "saved_tokens",
        "saved_micro_usd",
        "errors",
    ];

    pub fn counters(&self) -> [u64; 8] {
        [
            self.requests,
            self.cache_hits,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_micro_usd,
            self.saved_tokens,
            self.saved_micro_usd,
            self.errors,
        ]
    }

    /// Figures from counter values in [`KeyUsage::COUNTERS`] order.
    pub fn from_counters(c: [u64; 8], last_used_at: Option<u64>) -> KeyUsage {
        let [requests, cache_hits, prompt_tokens, completion_tokens, cost_micro_usd, saved_tokens, saved_micro_usd, errors] =
            c;
        KeyUsage {
            requests,
            cache_hits,
            prompt_tokens,
            completion_tokens,
            cost_micro_usd,
            saved_tokens,
            saved_micro_usd,
            errors,
            last_used_at,
        }
    }

    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &KeyUsage) {
        let mut c = self.counters();
        for (a, b) in c.iter_mut().zip(other.counters()) {
            *a += b;
        }
        let last = self.last_used_at.max(other.last_used_at);
        *self = KeyUsage::from_counters(c, last);
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
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_hit: bool,
    /// What the call cost (a hit: what it would have cost), micro-dollars.
    pub cost_micro_usd: u64,
}

impl Outcome {
    /// The figures this request adds. A hit costs nothing: its tokens and cost count as saved.
    pub fn figures(&self, now: u64) -> KeyUsage {
        let tokens = self.prompt_tokens + self.completion_tokens;
        let (spent, saved) = if self.cache_hit { (0, 1) } else { (1, 0) };
        KeyUsage {
            requests: 1,
            cache_hits: u64::from(self.cache_hit),
            prompt_tokens: self.prompt_tokens * spent,
            completion_tokens: self.completion_tokens * spent,
            cost_micro_usd: self.cost_micro_usd * spent,
            saved_tokens: tokens * saved,
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
        let path = dir.join("usage.json");
        let keys = match std::fs::read(&path) {
            Ok(bytes) => {
                let doc: UsageFile = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{}: line {}, column {}: {e}; it is written by the relay, restore it \
                         from a backup or move it away to start from zero",
                        path.display(),
                        e.line(),
                        e.column()
                    )
                })?;
                doc.keys
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
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

/// `(prompt_tokens, completion_tokens)` of a whole JSON answer; zeros without a `usage`.
pub fn tokens(body: &[u8]) -> (u64, u64) {
    serde_json::from_slice::<Value>(body)
        .map(|v| tokens_of(&v))
        .unwrap_or((0, 0))
}

/// The same for a recorded SSE stream: each figure as the last event that reports it (chat's
/// final usage chunk; Responses' `response.completed`; Messages' `message_start` for input and
/// `message_delta` for output).
pub fn stream_tokens(recorded: &[u8]) -> (u64, u64) {
    recorded
        .split(|b| *b == b'\n')
        .filter_map(sse::data_payload)
        .filter(|d| d.windows(7).any(|w| w == b"\"usage\""))
        .filter_map(|d| serde_json::from_slice::<Value>(d).ok())
        .map(|v| tokens_of(&v))
        .fold((0, 0), |(i, o), (ni, no)| {
            (if ni > 0 { ni } else { i }, if no > 0 { no } else { o })
        })
}

/// `(input, output)` of the `usage` of an answer or event: at the top (chat, a Messages
/// answer or `message_delta`) or in its `response` / `message` (Responses events,
/// `message_start`); OpenAI's `prompt_tokens`/`completion_tokens` or the
/// `input_tokens`/`output_tokens` of the Responses and Messages APIs.
fn tokens_of(v: &Value) -> (u64, u64) {
    let nested = |outer: &str| v.get(outer).and_then(|o| o.get("usage"));
    let u = [v.get("usage"), nested("response"), nested("message")]
        .into_iter()
        .flatten()
        .find(|u| u.is_object());
    let n = |a: &str, b: &str| {
        let field = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64);
        field(a).or_else(|| field(b)).unwrap_or(0)
    };
    // embeddings report only prompt_tokens
    (
        n("prompt_tokens", "input_tokens"),
        n("completion_tokens", "output_tokens"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_whole_and_streamed_answers() {
        let whole = br#"{"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(tokens(whole), (12, 5));
        assert_eq!(tokens(b"not json"), (0, 0));
        let stream = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        assert_eq!(stream_tokens(stream), (3, 4));
        assert_eq!(stream_tokens(b"data: {\"usage\":null}\n\n"), (0, 0));
        let responses = br#"{"object":"response","usage":{"input_tokens":7,"output_tokens":2}}"#;
        assert_eq!(tokens(responses), (7, 2));
        let done = b"data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":2}}}\n\n";
        assert_eq!(stream_tokens(done), (7, 2));
        let messages = b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\n";
        assert_eq!(stream_tokens(messages), (9, 6));
    }
}
