//! Logging to stderr: one access line per request, plus start-up and error messages.
//!
//! Nothing here ever receives a key or a body: callers pass method, path, status, model,
//! upstream base URL, duration and byte count only. Client-controlled strings are cleaned of
//! control characters so a crafted model name cannot forge log lines (in the `json` format,
//! JSON string escaping does that). `log_format` (`text` or `json`, one object per line) and
//! `log_level` are process-wide settings, set at start and on reload by [`configure`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;

use crate::answer::Usage;

mod sink;
mod text;

pub use sink::flush;
pub use text::timestamp;
use text::{clean_into, decimal, one_line, tenths, write_timestamp};

/// `log_format`: plain text lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// `log_level`: messages below it are dropped. Access lines are `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static FORMAT_JSON: AtomicU8 = AtomicU8::new(0);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the log format and level for the whole process (the libraries' messages included).
pub fn configure(format: Format, level: Level) {
    FORMAT_JSON.store(u8::from(format == Format::Json), Ordering::Relaxed);
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    ::log::set_max_level(match level {
        Level::Error => ::log::LevelFilter::Error,
        Level::Warn => ::log::LevelFilter::Warn,
        Level::Info => ::log::LevelFilter::Info,
        Level::Debug => ::log::LevelFilter::Debug,
    });
}

/// Sends what tiny_http and ureq log through the `log` crate to this log, under the same level
/// filter and format, each line prefixed with the library's module (`tiny_http: …`). Their
/// `trace` level is never forwarded (ureq's `debug` request lines already redact headers).
pub fn install_library_logger() {
    static BRIDGE: Bridge = Bridge;
    if ::log::set_logger(&BRIDGE).is_ok() {
        let level = match MAX_LEVEL.load(Ordering::Relaxed) {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            _ => Level::Debug,
        };
        configure(
            if json_format() {
                Format::Json
            } else {
                Format::Text
            },
            level,
        );
    }
}

/// The `log::Log` adapter of [`install_library_logger`].
struct Bridge;

impl Bridge {
    fn level(l: ::log::Level) -> Option<Level> {
        match l {
            ::log::Level::Error => Some(Level::Error),
            ::log::Level::Warn => Some(Level::Warn),
            ::log::Level::Info => Some(Level::Info),
            ::log::Level::Debug => Some(Level::Debug),
            ::log::Level::Trace => None,
        }
    }
}

impl ::log::Log for Bridge {
    fn enabled(&self, metadata: &::log::Metadata) -> bool {
        Bridge::level(metadata.level()).is_some_and(enabled)
    }

    fn log(&self, record: &::log::Record) {
        let Some(level) = Bridge::level(record.level()) else {
            return;
        };
        if enabled(level) {
            let text = format!("{}: {}", record.target(), record.args());
            message(level, &one_line(&text));
        }
    }

    fn flush(&self) {}
}

fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

fn json_format() -> bool {
    FORMAT_JSON.load(Ordering::Relaxed) == 1
}

/// What the cache did for a request, as the access log and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheResult {
    Hit,
    Miss,
    /// Went upstream on purpose (`no-cache`, or an entry of an older version).
    Refresh,
    /// `no-store`: the cache was not used.
    Bypass,
}

impl CacheResult {
    /// `hit`, `miss`, `refresh`, `bypass`.
    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Refresh => "refresh",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// What the access log records about one request.
#[derive(Debug, Default, Clone)]
pub struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub model: String,
    /// The base URL of the endpoint that answered (shared with the endpoint's own).
    pub upstream: std::sync::Arc<str>,
    pub duration: Duration,
    pub bytes: u64,
    /// What the cache did; `None` when it was not asked.
    pub cache: Option<CacheResult>,
    /// Time spent waiting for and reading from the upstream (zero if none was called).
    pub upstream_time: Duration,
    /// From the answer's `usage`, for per-key stats and metrics (never logged).
    pub usage: Usage,
    /// The model the upstream was sent (after an endpoint's `model` override; for a hit, the
    /// model its entry was stored under), which `prices` apply to; empty: `model`.
    pub sent_model: String,
    /// The relay's own error code when it refused or failed the request (`rate_limit_exceeded`,
    /// `upstream_timeout`, …), for the dashboard's errors by kind (never logged).
    pub error_code: Option<&'static str>,
    /// Where this request's line starts in the body log, if it wrote one (for the dashboard).
    pub body_log_at: Option<Written>,
    /// The cache key the request was looked up (or stored) under, if the cache was asked.
    pub cache_key: Option<String>,
}

/// Where the body log (`body_log::record`) wrote a request's line, to read it back: its
/// offset, length and timestamp (so a line of another request, in a log truncated or rotated
/// since, is never taken for it). Here, not in `body_log`, so `Access` can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub at: u64,
    pub len: u64,
    pub ts: String,
}

impl Access {
    /// The model `prices` apply to: the one the upstream was sent (an endpoint's override),
    /// else the one asked for.
    pub fn priced_model(&self) -> &str {
        if self.sent_model.is_empty() {
            &self.model
        } else {
            &self.sent_model
        }
    }
}

pub fn access(a: &Access) {
    if !enabled(Level::Info) {
        return;
    }
    if json_format() {
        let v = json!({
            "ts": timestamp(SystemTime::now()),
            "level": "info",
            "kind": "access",
            "method": a.method,
            "path": truncated(&a.path),
            "status": a.status,
            "model": truncated(&a.model),
            "upstream": &*a.upstream,
            "duration_ms": (a.duration.as_secs_f64() * 10_000.0).round() / 10.0,
            "upstream_ms": (a.upstream_time.as_secs_f64() * 10_000.0).round() / 10.0,
            "bytes": a.bytes,
            "cache": a.cache.map(CacheResult::label),
        });
        let mut line = v.to_string();
        line.push('\n');
        sink::stderr().access(&line);
        return;
    }
    // written piece by piece into one buffer (was two `format!`s and a copy per field)
    let mut line = String::with_capacity(160 + a.path.len() + a.model.len());
    write_timestamp(&mut line, SystemTime::now());
    line.push_str(" access ");
    clean_into(&mut line, &a.method);
    line.push(' ');
    clean_into(&mut line, &a.path);
    line.push(' ');
    decimal(&mut line, u64::from(a.status));
    line.push_str(" model=");
    if a.model.is_empty() {
        line.push('-');
    } else {
        clean_into(&mut line, &a.model);
    }
    line.push_str(" upstream=");
    line.push_str(if a.upstream.is_empty() {
        "-"
    } else {
        &a.upstream
    });
    // the numbers without the formatter (~1,300 instructions a line, a tenth of a cache hit's)
    line.push_str(" duration_ms=");
    tenths(&mut line, a.duration);
    line.push_str(" bytes=");
    decimal(&mut line, a.bytes);
    line.push_str(" cache=");
    line.push_str(a.cache.map_or("-", CacheResult::label));
    line.push('\n');
    sink::stderr().access(&line);
}

pub fn info(msg: &str) {
    message(Level::Info, msg);
}

pub fn warn(msg: &str) {
    message(Level::Warn, msg);
}

pub fn error(msg: &str) {
    message(Level::Error, msg);
}

fn message(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    let ts = timestamp(SystemTime::now());
    if json_format() {
        let v = json!({"ts": ts, "level": level.name(), "msg": msg});
        emit(&v.to_string());
    } else {
        emit(&format!("{ts} {} {msg}", level.name()));
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(256).collect()
}

fn emit(line: &str) {
    sink::stderr().line(line);
}
