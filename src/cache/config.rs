//! The `cache` config section: the raw form the file holds, and the checked [`CacheConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `cache` as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    enabled: Option<bool>,
    dir: Option<String>,
    version: Option<u32>,
    #[serde(rename = "override")]
    override_old: Option<bool>,
    ttl_seconds: Option<u64>,
    memory_items: Option<usize>,
    memory_bytes: Option<u64>,
    max_entry_bytes: Option<u64>,
    scope: Option<String>,
    maintenance: Option<RawMaintenance>,
    mode: Option<String>,
    mode_header: Option<Vec<String>>,
    ignore_fields: Option<Vec<String>>,
    client_controls: Option<Vec<String>>,
    repeat: Option<String>,
    repeat_window_seconds: Option<u64>,
    namespace_fallback: Option<bool>,
    miss_log: Option<String>,
    durability: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    interval_hours: Option<f64>,
    retention_days: Option<f64>,
    min_hit_count: Option<u64>,
    on_startup: Option<bool>,
}

/// What the cache does with a request (`cache.mode`, or `X-Relay-Cache-Mode` where allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hits are served; misses go upstream and are stored (the default).
    ReadWrite,
    /// Hits are served; misses go upstream and are not stored.
    ReadOnly,
    /// Every request goes upstream; its complete answer replaces the entry.
    Record,
    /// Offline: only hits are served; a miss is a `cache_miss` error and never goes upstream.
    Replay,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::ReadWrite, Mode::ReadOnly, Mode::Record, Mode::Replay];

    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadWrite => "read_write",
            Mode::ReadOnly => "read_only",
            Mode::Record => "record",
            Mode::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether a complete answer from upstream is stored.
    pub fn stores(self) -> bool {
        matches!(self, Mode::ReadWrite | Mode::Record)
    }
}

fn mode_names() -> String {
    Mode::ALL.map(|m| format!("\"{}\"", m.name())).join(", ")
}

/// A request header of the cache that `cache.client_controls` may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientControl {
    /// `X-Relay-Cache-Sample: K`.
    Sample,
    /// `X-Relay-Cache-Namespace: NAME`.
    Namespace,
    /// `X-Relay-Cache-Timing: recorded | FACTOR`.
    Timing,
}

impl ClientControl {
    pub const ALL: [ClientControl; 3] = [
        ClientControl::Sample,
        ClientControl::Namespace,
        ClientControl::Timing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientControl::Sample => "sample",
            ClientControl::Namespace => "namespace",
            ClientControl::Timing => "timing",
        }
    }

    /// The request header it names.
    pub fn header(self) -> &'static str {
        match self {
            ClientControl::Sample => "X-Relay-Cache-Sample",
            ClientControl::Namespace => "X-Relay-Cache-Namespace",
            ClientControl::Timing => "X-Relay-Cache-Timing",
        }
    }
}

/// How identical requests without `X-Relay-Cache-Sample` are keyed (`cache.repeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// All get the one entry (the default).
    Same,
    /// The i-th identical request (per namespace and mode, within `repeat_window_seconds` of
    /// the previous one) gets sample i.
    Sequence,
}

/// Whose entries a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One cache for every client.
    Shared,
    /// Each client credential (`Authorization` bearer or `X-API-Key`, hashed) has its own.
    Key,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub interval: Duration,
    pub retention: Duration,
    pub min_hit_count: u64,
    pub on_startup: bool,
}

/// The checked cache configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub dir: PathBuf,
    pub version: u32,
    /// Refresh entries written by an older `version` on their next request.
    pub override_old: bool,
    /// Entries older than this are not served (and get replaced); `None`: no limit.
    pub ttl: Option<Duration>,
    pub memory_items: usize,
    /// The memory tier holds at most this many bytes of answers.
    pub memory_bytes: u64,
    /// A larger answer is relayed but not stored (`X-Relay-Cache: skip-too-large`).
    pub max_entry_bytes: u64,
    pub scope: Scope,
    /// `None`: no maintenance (entries are kept until removed by hand).
    pub maintenance: Option<Maintenance>,
    pub mode: Mode,
    /// Modes a request may choose with `X-Relay-Cache-Mode` (`cache.mode_header`); empty: the
    /// header is refused.
    pub header_modes: Vec<Mode>,
    /// Top-level request fields left out of the key (`cache.ignore_fields`).
    pub ignore_fields: Vec<String>,
    /// The cache request headers a client may send (`cache.client_controls`).
    pub client_controls: Vec<ClientControl>,
    /// `cache.repeat`.
    pub repeat: Repeat,
    /// `cache.repeat_window_seconds`: a sequence count restarts after this long without an
    /// identical request.
    pub repeat_window: Duration,
    /// A namespaced request that finds nothing in its namespace reads the shared entries
    /// (`cache.namespace_fallback`).
    pub namespace_fallback: bool,
    /// Where `replay` appends one JSON line per miss (`cache.miss_log`).
    pub miss_log: Option<PathBuf>,
    /// `cache.durability: "fsync"` (true, the default): each entry's files are fsynced before
    /// their rename publishes them; `"none"`: not (a power loss may lose entries; a `kill -9`
    /// never does, the kernel has the bytes).
    pub fsync: bool,
}

pub const DEFAULT_DIR: &str = "llm_cache";
const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_ENTRY_BYTES: u64 = 32 * 1024 * 1024;

impl CacheConfig {
    /// Checks the section; without one the cache is off.
    pub fn from_raw(raw: Option<RawCache>) -> Result<CacheConfig, String> {
        let Some(raw) = raw else {
            return CacheConfig::from_raw(Some(RawCache {
                enabled: Some(false),
                dir: None,
                version: None,
                override_old: None,
                ttl_seconds: None,
                memory_items: None,
                memory_bytes: None,
                max_entry_bytes: None,
                scope: None,
                maintenance: None,
                mode: None,
                mode_header: None,
                ignore_fields: None,
                client_controls: None,
                repeat: None,
                durability: None,
                repeat_window_seconds: None,
                namespace_fallback: None,
                miss_log: None,
            }));
        };
        let scope = match raw.scope.as_deref() {
            None | Some("shared") => Scope::Shared,
            Some("key") => Scope::Key,
            Some(other) => {
                return Err(format!(
                    "`cache.scope` must be \"shared\" or \"key\", got \"{other}\""
                ))
            }
        };
        let max_entry_bytes = raw.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES);
        if max_entry_bytes == 0 {
            return Err("`cache.max_entry_bytes` must be positive".to_string());
        }
        let dir = raw.dir.unwrap_or_else(|| DEFAULT_DIR.to_string());
        if dir.is_empty() {
            return Err("`cache.dir` is empty; name a directory, e.g. \"llm_cache\"".to_string());
        }
        let maintenance = match raw.maintenance {
            None => None,
            Some(m) => {
                let hours = m.interval_hours.unwrap_or(24.0);
                let days = m.retention_days.unwrap_or(30.0);
                if !(hours > 0.0 && hours < 1e6) {
                    return Err(format!(
                        "`cache.maintenance.interval_hours` must be a positive number of hours, got {hours}"
                    ));
                }
                if !(0.0..1e6).contains(&days) {
                    return Err(format!(
                        "`cache.maintenance.retention_days` must be 0 or more days, got {days}"
                    ));
                }
                Some(Maintenance {
                    interval: Duration::from_secs_f64(hours * 3600.0),
                    retention: Duration::from_secs_f64(days * 86_400.0),
                    min_hit_count: m.min_hit_count.unwrap_or(1),
                    on_startup: m.on_startup.unwrap_or(true),
                })
            }
        };
        let mode = match raw.mode.as_deref() {
            None => Mode::ReadWrite,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                format!("`cache.mode` must be one of {}, got \"{m}\"", mode_names())
            })?,
        };
        let mut header_modes = Vec::new();
        for m in raw.mode_header.unwrap_or_default() {
            let parsed = Mode::parse(&m).ok_or_else(|| {
                format!(
                    "`cache.mode_header` lists the modes a request may choose with \
                     X-Relay-Cache-Mode, each one of {}; got \"{m}\"",
                    mode_names()
                )
            })?;
            header_modes.push(parsed);
        }
        let ignore_fields = raw.ignore_fields.unwrap_or_default();
        for f in &ignore_fields {
            if matches!(f.as_str(), "model" | "messages" | "prompt" | "input" | "") {
                return Err(format!(
                    "`cache.ignore_fields` cannot leave out \"{f}\": the answer depends on it; \
                     list volatile fields such as \"user\" or \"metadata\""
                ));
            }
        }
        let mut client_controls = Vec::new();
        for c in raw.client_controls.unwrap_or_default() {
            let parsed = ClientControl::ALL
                .into_iter()
                .find(|k| k.name() == c)
                .ok_or_else(|| {
                    format!(
                        "`cache.client_controls` lists the cache headers a request may send, each \
                         one of \"sample\", \"namespace\", \"timing\"; got \"{c}\""
                    )
                })?;
            if !client_controls.contains(&parsed) {
                client_controls.push(parsed);
            }
        }
        let repeat = match raw.repeat.as_deref() {
            None | Some("same") => Repeat::Same,
            Some("sequence") => Repeat::Sequence,
            Some(other) => {
                return Err(format!(
                    "`cache.repeat` must be \"same\" or \"sequence\", got \"{other}\""
                ))
            }
        };
        let window = raw.repeat_window_seconds.unwrap_or(3600);
        if window == 0 {
            return Err("`cache.repeat_window_seconds` must be positive".to_string());
        }
        let fsync = match raw.durability.as_deref() {
            None | Some("fsync") => true,
            Some("none") => false,
            Some(d) => {
                return Err(format!(
                    "`cache.durability` must be \"fsync\" or \"none\", got \"{d}\""
                ))
            }
        };
        let miss_log = match raw.miss_log {
            Some(p) if p.is_empty() => {
                return Err(
                    "`cache.miss_log` is empty; name a file, e.g. \"cache-misses.jsonl\""
                        .to_string(),
                )
            }
            p => p.map(PathBuf::from),
        };
        Ok(CacheConfig {
            mode,
            header_modes,
            ignore_fields,
            client_controls,
            repeat,
            repeat_window: Duration::from_secs(window),
            namespace_fallback: raw.namespace_fallback.unwrap_or(true),
            miss_log,
            fsync,
            enabled: raw.enabled.unwrap_or(true),
            dir: PathBuf::from(dir),
            version: raw.version.unwrap_or(1),
            override_old: raw.override_old.unwrap_or(false),
            ttl: raw.ttl_seconds.filter(|&s| s > 0).map(Duration::from_secs),
            memory_items: raw.memory_items.unwrap_or(1000),
            memory_bytes: raw.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES),
            max_entry_bytes,
            scope,
            maintenance,
        })
    }

    pub fn summary(&self) -> String {
        if !self.enabled {
            return "cache: off\n".to_string();
        }
        format!(
            "cache: mode {}{}, dir {}, version {}{}, ttl {}, memory_items {}, memory_bytes {}, \
             max_entry_bytes {}, scope {:?}, ignore_fields [{}], maintenance {}, \
             client_controls [{}], repeat {:?}, namespace_fallback {}, miss_log {}{}\n",
            self.mode.name(),
            if self.header_modes.is_empty() {
                String::new()
            } else {
                format!(
                    " (X-Relay-Cache-Mode may choose {})",
                    self.header_modes
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            self.dir.display(),
            self.version,
            if self.override_old { " (override)" } else { "" },
            self.ttl
                .map_or("none".to_string(), |t| format!("{} s", t.as_secs())),
            self.memory_items,
            self.memory_bytes,
            self.max_entry_bytes,
            self.scope,
            self.ignore_fields.join(", "),
            self.maintenance
                .as_ref()
                .map_or("off".to_string(), |m| format!(
                    "every {:.1} h, retention {:.1} days, min_hit_count {}",
                    m.interval.as_secs_f64() / 3600.0,
                    m.retention.as_secs_f64() / 86_400.0,
                    m.min_hit_count
                )),
            self.client_controls
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
            self.repeat,
            self.namespace_fallback,
            self.miss_log
                .as_ref()
                .map_or("off".to_string(), |p| p.display().to_string()),
            if self.fsync { "" } else { ", durability none" },
        )
    }
}
