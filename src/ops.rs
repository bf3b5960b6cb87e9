//! The operational keys of the config file's top level (`shutdown_timeout_s`, `log_format`,
//! `log_level`, `body_log`): checked into [`OpsConfig`] and applied process-wide.

use std::path::PathBuf;
use std::time::Duration;

use crate::{body_log, log};

const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 30;

/// Operational settings from the config file's top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// How long a drain waits for in-flight requests before exiting anyway.
    pub shutdown_timeout: Duration,
    pub log_format: log::Format,
    pub log_level: log::Level,
    /// `body_log`: a file receiving request and response bodies (keys redacted).
    pub body_log: Option<PathBuf>,
}

/// The config keys this module reads, as written in the file (top-level keys of `RawConfig`).
#[derive(Debug, Default)]
pub struct RawOps {
    pub shutdown_timeout_s: Option<u64>,
    pub log_format: Option<log::Format>,
    pub log_level: Option<log::Level>,
    pub body_log: Option<String>,
}

impl OpsConfig {
    pub fn from_raw(raw: RawOps) -> Result<OpsConfig, String> {
        let secs = raw.shutdown_timeout_s.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_S);
        if secs > 24 * 3600 {
            return Err(format!(
                "`shutdown_timeout_s` must be at most 86400 (a day), got {secs}"
            ));
        }
        let body_log = match raw.body_log {
            Some(p) if p.trim().is_empty() => {
                return Err("`body_log` is empty; give a file path or remove the key".to_string())
            }
            p => p.map(PathBuf::from),
        };
        Ok(OpsConfig {
            shutdown_timeout: Duration::from_secs(secs),
            log_format: raw.log_format.unwrap_or_default(),
            log_level: raw.log_level.unwrap_or_default(),
            body_log,
        })
    }

    /// Applies the process-wide parts: log format and level, and the body log file.
    pub fn apply(&self) -> Result<(), String> {
        body_log::open(self.body_log.as_deref())?;
        log::configure(self.log_format, self.log_level);
        Ok(())
    }
}
