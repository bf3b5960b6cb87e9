//! The optional body log (`body_log` in the config): request and response bodies of API calls,
//! one JSON object per line, for debugging. Off unless configured.
//!
//! Anything that looks like a credential is replaced by `"[redacted]"` before it is written:
//! object members whose name contains `key`, `token`, `secret`, `password` or
//! `authorization`, and string values that start like an API key (`sk-`, `Bearer `). Headers
//! are never written. This is the only module that writes bodies anywhere but the client and
//! the upstream; traces (with `telemetry.capture_content`) take theirs through
//! [`redacted_value`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

/// The open file and its path (to read a line back for the dashboard).
static SINK: Mutex<Option<(File, PathBuf)>> = Mutex::new(None);

/// The longest line [`read_back`] reads.
const MAX_READ_BACK: u64 = 8 * 1024 * 1024;

pub use crate::log::Written;

const REDACTED: &str = "[redacted]";
const SECRET_NAMES: &[&str] = &["key", "token", "secret", "password", "authorization"];

/// Opens (appending, creating) the body log at `path`, or turns it off for `None`.
pub fn open(path: Option<&Path>) -> Result<(), String> {
    let file = match path {
        None => None,
        Some(p) => Some((
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| {
                    format!(
                        "cannot open body_log file {}: {e}; point `body_log` at a writable path",
                        p.display()
                    )
                })?,
            p.to_path_buf(),
        )),
    };
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = file;
    Ok(())
}

/// Whether a body log is open (a streamed answer is recorded for it only then).
pub fn enabled() -> bool {
    SINK.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Appends one exchange: the request body sent upstream and the response (a JSON body, or a
/// stream's raw text). Returns where its line starts in the file, if it was written.
pub fn record(
    path: &str,
    request: &Map<String, Value>,
    status: u16,
    response: &[u8],
) -> Option<Written> {
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    let (file, _) = guard.as_mut()?;
    let ts = crate::log::timestamp(SystemTime::now());
    let line = json!({
        "ts": ts,
        "path": path,
        "request": redacted_value(Value::Object(request.clone())),
        "status": status,
        "response": redacted_body(response),
    });
    let mut text = line.to_string();
    text.push('\n');
    // appending, under the lock: the line starts at the file's current end
    let at = file.metadata().map(|m| m.len()).ok()?;
    file.write_all(text.as_bytes()).ok()?;
    Some(Written {
        at,
        len: text.len() as u64,
        ts,
    })
}

/// The line [`record`] wrote (already redacted), if it is still there, whole and the same.
pub fn read_back(w: &Written) -> Option<Value> {
    if w.len > MAX_READ_BACK {
        return None;
    }
    let path = SINK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .1
        .clone();
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(w.at)).ok()?;
    let mut line = Vec::new();
    file.take(w.len).read_to_end(&mut line).ok()?;
    let v: Value = crate::json::from_slice(line.strip_suffix(b"\n")?).ok()?;
    (v.get("ts").and_then(Value::as_str) == Some(w.ts.as_str())).then_some(v)
}

/// `body` (JSON, or a stream's text) with credentials redacted as the body log writes them,
/// for showing a body held elsewhere (a cache entry on the dashboard).
pub fn redacted(body: &[u8]) -> Value {
    redacted_body(body)
}

/// A JSON value with secrets redacted (also what traces record with `capture_content`).
pub fn redacted_value(mut v: Value) -> Value {
    redact(&mut v);
    v
}

/// A body as JSON with secrets redacted; a non-JSON body (an SSE stream) as a string with
/// key-like tokens redacted.
fn redacted_body(bytes: &[u8]) -> Value {
    match crate::json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            redact(&mut v);
            v
        }
        Err(_) => Value::String(redact_text(&String::from_utf8_lossy(bytes))),
    }
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (name, value) in map.iter_mut() {
                let lower = name.to_ascii_lowercase();
                if SECRET_NAMES.iter().any(|s| lower.contains(s)) && value.is_string() {
                    *value = Value::String(REDACTED.to_string());
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if looks_like_key(s) => *s = REDACTED.to_string(),
        Value::String(s) if s.contains("sk-") => *s = redact_text(s),
        _ => {}
    }
}

fn looks_like_key(s: &str) -> bool {
    s.starts_with("sk-") || s.starts_with("Bearer ")
}

/// Redacts `sk-…` tokens inside free text.
fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        out.push_str(REDACTED);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_like_members_and_values_are_redacted() {
        let mut v = json!({
            "model": "m", "api_key": "abc", "nested": {"Authorization": "Bearer x"},
            "messages": [{"content": "sk-live-123"}], "max_tokens": 5
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "model": "m", "api_key": REDACTED, "nested": {"Authorization": REDACTED},
                "messages": [{"content": REDACTED}], "max_tokens": 5
            })
        );
    }

    #[test]
    fn key_tokens_in_text_are_redacted() {
        assert_eq!(
            redact_text("data: {\"k\":\"sk-abc_1\"}\n"),
            "data: {\"k\":\"[redacted]\"}\n"
        );
    }
}
