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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    interval_hours: Option<f64>,
    retention_days: Option<f64>,
    min_hit_count: Option<u64>,
    on_startup: Option<bool>,
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
        Ok(CacheConfig {
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
            "cache: dir {}, version {}{}, ttl {}, memory_items {}, memory_bytes {}, \
             max_entry_bytes {}, scope {:?}, maintenance {}\n",
            self.dir.display(),
            self.version,
            if self.override_old { " (override)" } else { "" },
            self.ttl
                .map_or("none".to_string(), |t| format!("{} s", t.as_secs())),
            self.memory_items,
            self.memory_bytes,
            self.max_entry_bytes,
            self.scope,
            self.maintenance
                .as_ref()
                .map_or("off".to_string(), |m| format!(
                    "every {:.1} h, retention {:.1} days, min_hit_count {}",
                    m.interval.as_secs_f64() / 3600.0,
                    m.retention.as_secs_f64() / 86_400.0,
                    m.min_hit_count
                )),
        )
    }
}
