//! Configuration: the JSONC file as written, and the checked [`Config`] the server runs with.
//!
//! Two stages, as in ripgrep's flags: `RawConfig` mirrors the file exactly and refuses unknown
//! keys and wrong types (serde with `deny_unknown_fields`), then [`Config::from_raw`] resolves
//! defaults, environment variables and URLs into the values the rest of the relay uses.
//! Only this module knows json5; every load error names the file, line and column.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::check::{check_url, secret, DEFAULT_UPSTREAM};
use crate::rules::Rule;
use crate::shape::{self, RawTrim, Shaping};
use crate::upstream::endpoints::{self, RawEndpoint, RawPolicy, Settings, Shorthand};
use crate::upstream::Timeouts;
use json5_errors::{check_numbers, located};

mod json5_errors;
mod summary;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_WORKERS: usize = 32;
const DEFAULT_MAX_BODY: u64 = 20 * 1024 * 1024;
const DEFAULT_BODIES_IN_FLIGHT: u64 = 256 * 1024 * 1024;
/// Real provider events are a few KB; a long tool call's arguments come in many small ones.
/// As large as the largest cacheable answer (`cache.max_entry_bytes`): a Responses
/// `response.completed` event repeats the whole answer, and image events carry base64 images.
const DEFAULT_MAX_EVENT: u64 = 32 * 1024 * 1024;
const MIN_MAX_EVENT: u64 = 4096;

/// The config file as written. Field names are the file's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    upstream: Option<String>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    forward_auth: bool,
    workers: Option<usize>,
    max_body_bytes: Option<u64>,
    max_body_bytes_in_flight: Option<u64>,
    max_response_bytes: Option<u64>,
    max_response_bytes_in_flight: Option<u64>,
    max_event_bytes: Option<u64>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    upstream_keepalive_ms: Option<u64>,
    #[serde(default)]
    model_rules: Vec<RawRule>,
    // Upstreams (issue #4): see upstream/endpoints.rs and shape.rs.
    upstreams: Option<Vec<RawEndpoint>>,
    retries: Option<u32>,
    fail_threshold: Option<u32>,
    cooldown_ms: Option<u64>,
    max_concurrent_requests: Option<usize>,
    use_proxy: Option<bool>,
    ca_file: Option<String>,
    enable_thinking: Option<bool>,
    context_trim: Option<RawTrim>,
    // operations (lifecycle.rs)
    shutdown_timeout_s: Option<u64>,
    log_format: Option<crate::log::Format>,
    log_level: Option<crate::log::Level>,
    body_log: Option<String>,
    client_timeout_ms: Option<u64>,
    stream_keepalive_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    auth: Option<crate::auth::RawAuth>,
    rate_limit: Option<crate::limits::RawRateLimit>,
    budget: Option<crate::budget::RawBudget>,
    prices: Option<Vec<crate::budget::RawPrice>>,
    state: Option<crate::store::RawState>,
    cache: Option<crate::cache::RawCache>,
    telemetry: Option<crate::telemetry::RawTelemetry>,
    ui: Option<crate::dashboard::RawUi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    match_model: String,
    #[serde(default)]
    unset: Vec<String>,
    #[serde(default)]
    set: Map<String, Value>,
    #[serde(default)]
    extra: Map<String, Value>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// Upstream base URL including `/v1`, without a trailing slash.
    pub upstream: String,
    /// Key sent upstream as `Authorization: Bearer …` (never logged).
    pub upstream_key: Option<String>,
    pub forward_auth: bool,
    pub workers: usize,
    pub max_body_bytes: u64,
    /// The memory all request bodies in flight may take together (see `body_cost`).
    pub max_body_bytes_in_flight: u64,
    /// The most one upstream stream event may take (`sse::relay`); a longer one cuts the stream.
    pub max_event_bytes: usize,
    pub timeouts: Timeouts,
    pub rules: Vec<Rule>,
    /// Every upstream endpoint (the single `upstream` becomes a one-entry list) and the
    /// failover policy.
    pub upstreams: Settings,
    /// `enable_thinking` and `context_trim`.
    pub shaping: Shaping,
    pub ops: crate::ops::OpsConfig,
    /// Longest a client may take to send its request head or body (per read, and in total).
    pub client_timeout: Duration,
    /// `stream_keepalive_ms`: how often a streaming client gets an SSE comment line while the
    /// upstream has not answered yet; `None` = off (the default).
    pub stream_keepalive: Option<Duration>,
    /// Client connections served at once; one more is answered 503 and closed (`fd_limit`).
    pub max_connections: usize,
    /// Connections one client address may hold at once (`peers`).
    pub max_connections_per_ip: usize,
    /// Addresses exempt from `max_connections_per_ip`.
    pub trusted_proxies: crate::peers::TrustedProxies,
    pub auth: crate::auth::AuthConfig,
    /// Default per-key rate limit.
    pub rate_limit: crate::limits::RateLimit,
    /// Default per-key budget.
    pub budget: crate::budget::Budget,
    /// Prices per model glob, first match wins.
    pub prices: Vec<crate::budget::Price>,
    /// Where windows and usage live (this machine or Redis).
    pub state: crate::store::StateConfig,
    pub cache: crate::cache::CacheConfig,
    /// `telemetry`: OTLP trace export; `None` = off (no `otlp_endpoint`).
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
    /// The `ui` section: the built-in dashboard at `/ui`.
    pub ui: crate::dashboard::UiConfig,
    /// Things that load but are likely mistakes ("FILE: line L, column C: …"), shown by
    /// `--check` and logged at start and on reload.
    pub warnings: Vec<String>,
}

/// A config that could not be loaded; the message names the file and, where it can, the line and column.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read config file {}: {e}; pass an existing file with --config",
                path.display()
            ))
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let text = &crate::expand::expand(text, &|var| std::env::var(var).ok())
            .map_err(|msg| ConfigError(format!("{origin}: {msg}")))?;
        let raw: RawConfig = json5::from_str(text).map_err(|e| located(e, text, origin))?;
        check_numbers(text, origin)?;
        let at_key = |msg: String| match crate::locate::message_position(text, &msg) {
            Some((line, column)) => format!("{origin}: line {line}, column {column}: {msg}"),
            None => format!("{origin}: {msg}"),
        };
        let mut config = Config::from_raw(raw).map_err(|msg| ConfigError(at_key(msg)))?;
        config.warnings = config.url_warnings().into_iter().map(at_key).collect();
        Ok(config)
    }

    /// Reads the files the start reads besides the config (`auth.keys_file`, and
    /// `state.dir/usage.json` without Redis) and checks them as the start does, creating
    /// nothing: `--check` fails where the start would, with the same file, line and column.
    pub fn check_files(&self) -> Result<(), String> {
        if self.state.redis.is_some() {
            return Ok(()); // keys and usage then live in Redis
        }
        if let Some(path) = &self.auth.keys_file {
            crate::keys_file::load(path)?;
        }
        if let Some(dir) = &self.state.dir {
            crate::usage::check_file(dir)?;
        }
        Ok(())
    }

    fn from_raw(raw: RawConfig) -> Result<Config, String> {
        let explicit = raw.upstream.is_some() || raw.api_key.is_some() || raw.api_key_env.is_some();
        let upstream = raw.upstream.unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());
        let upstream = check_url(&upstream, "upstream")?;
        let upstream_key = secret(raw.api_key, raw.api_key_env, "api_key")?;
        let workers = raw.workers.unwrap_or(DEFAULT_WORKERS);
        if workers == 0 || workers > 4096 {
            return Err(format!(
                "`workers` must be between 1 and 4096, got {workers}"
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes == 0 {
            return Err("`max_body_bytes` must be positive".to_string());
        }
        let max_body_bytes_in_flight = raw
            .max_body_bytes_in_flight
            .unwrap_or(DEFAULT_BODIES_IN_FLIGHT);
        if max_body_bytes_in_flight < 1024 * 1024 {
            return Err(format!(
                "`max_body_bytes_in_flight` must be at least 1048576 (1 MiB), got \
                 {max_body_bytes_in_flight}"
            ));
        }
        let max_event_bytes = raw.max_event_bytes.unwrap_or(DEFAULT_MAX_EVENT);
        if max_event_bytes < MIN_MAX_EVENT {
            return Err(format!(
                "`max_event_bytes` must be at least {MIN_MAX_EVENT} (real stream events are a \
                 few KB), got {max_event_bytes}"
            ));
        }
        let max_event_bytes = usize::try_from(max_event_bytes).unwrap_or(usize::MAX);
        let timeouts = Timeouts {
            connect: millis(raw.connect_timeout_ms, 5_000, "connect_timeout_ms")?,
            first_byte: millis(raw.first_byte_timeout_ms, 300_000, "first_byte_timeout_ms")?,
            idle: millis(raw.idle_timeout_ms, 120_000, "idle_timeout_ms")?,
            keepalive: millis(raw.upstream_keepalive_ms, 90_000, "upstream_keepalive_ms")?,
        };
        let mut rules = Vec::with_capacity(raw.model_rules.len());
        for (i, r) in raw.model_rules.into_iter().enumerate() {
            if r.match_model.is_empty() {
                return Err(format!("model_rules[{i}].match_model is empty"));
            }
            rules.push(Rule {
                match_model: crate::glob::Glob::new(r.match_model)
                    .map_err(|e| format!("model_rules[{i}].match_model is {e}"))?,
                unset: r.unset,
                set: r.set,
                extra: r.extra,
            });
        }
        let shaping = shape::settings(raw.enable_thinking, raw.context_trim)?;
        let policy = RawPolicy {
            upstreams: raw.upstreams,
            retries: raw.retries,
            fail_threshold: raw.fail_threshold,
            cooldown_ms: raw.cooldown_ms,
            max_concurrent_requests: raw.max_concurrent_requests,
            use_proxy: raw.use_proxy,
            ca_file: raw.ca_file,
            max_response_bytes: raw.max_response_bytes,
            max_response_bytes_in_flight: raw.max_response_bytes_in_flight,
        };
        let shorthand = Shorthand {
            url: &upstream,
            key: upstream_key.clone(),
            explicit,
        };
        let upstreams = endpoints::settings(policy, shorthand)?;
        let ops = crate::ops::OpsConfig::from_raw(crate::ops::RawOps {
            shutdown_timeout_s: raw.shutdown_timeout_s,
            log_format: raw.log_format,
            log_level: raw.log_level,
            body_log: raw.body_log,
        })?;
        let client_timeout = millis(raw.client_timeout_ms, 30_000, "client_timeout_ms")?;
        let auth = crate::auth::AuthConfig::from_raw(raw.auth, raw.forward_auth)?;
        let ui = crate::dashboard::UiConfig::from_raw(raw.ui, auth.admin_hash.is_some())?;
        let rate_limit = crate::limits::RateLimit::from_raw(raw.rate_limit, "rate_limit")?;
        let stream_keepalive = raw
            .stream_keepalive_ms
            .map(|ms| millis(Some(ms), 0, "stream_keepalive_ms"))
            .transpose()?;
        let max_connections = crate::fd_limit::max_connections(raw.max_connections)?;
        Ok(Config {
            max_connections_per_ip: crate::peers::max_per_ip(
                raw.max_connections_per_ip,
                max_connections,
            )?,
            trusted_proxies: crate::peers::TrustedProxies::from_raw(raw.trusted_proxies)?,
            client_timeout,
            stream_keepalive,
            max_connections,
            auth,
            rate_limit,
            budget: crate::budget::Budget::from_raw(raw.budget, "budget")?,
            prices: crate::budget::prices_from_raw(raw.prices)?,
            state: crate::store::StateConfig::from_raw(raw.state)?,
            listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            upstream,
            upstream_key,
            forward_auth: raw.forward_auth,
            workers,
            max_body_bytes,
            max_body_bytes_in_flight,
            max_event_bytes,
            timeouts,
            rules,
            upstreams,
            shaping,
            ops,
            cache: crate::cache::CacheConfig::from_raw(raw.cache)?,
            telemetry: crate::telemetry::TelemetryConfig::from_raw(raw.telemetry)?,
            ui,
            warnings: Vec::new(),
        })
    }
}

fn millis(v: Option<u64>, default: u64, name: &str) -> Result<Duration, String> {
    match v.unwrap_or(default) {
        0 => Err(format!("`{name}` must be positive")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests;
