//! Upstream endpoints as configured: the `upstreams` list, provider presets, model globs, and
//! the failover policy keys (`retries`, `fail_threshold`, `cooldown_ms`, ...).
//!
//! [`RawEndpoint`] mirrors one entry of the file (`entry.rs` resolves one, with its provider
//! preset and key); [`settings`] checks the list (or turns the core's single `upstream` into a
//! one-endpoint list) and the policy keys into [`Settings`]. Nothing here talks to the network.

use std::time::Duration;

use crate::glob::Glob;

pub use crate::api::Api;

pub use super::entry::RawEndpoint;
use super::entry::{endpoint, load_roots};
use super::thinking::ThinkingStyle;

/// The `anthropic-version` sent to an `anthropic` endpoint when neither the client nor the
/// endpoint's `headers` set one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The top-level keys of the upstream policy as written (all optional).
#[derive(Debug, Default)]
pub struct RawPolicy {
    pub upstreams: Option<Vec<RawEndpoint>>,
    pub retries: Option<u32>,
    pub fail_threshold: Option<u32>,
    pub cooldown_ms: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub use_proxy: Option<bool>,
    pub ca_file: Option<String>,
    pub max_response_bytes: Option<u64>,
    pub max_response_bytes_in_flight: Option<u64>,
}

/// The core's single-endpoint keys (`upstream`, `api_key`/`api_key_env`), already resolved.
pub struct Shorthand<'a> {
    pub url: &'a str,
    pub key: Option<String>,
    /// True when the file set any of them (then `upstreams` must not be set too).
    pub explicit: bool,
}

/// One checked endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub name: String,
    /// Base URL including `/v1` (or the provider's equivalent), no trailing slash.
    pub url: String,
    /// 0 = standby: used only when no weighted endpoint is available.
    pub weight: u32,
    /// Replaces the request's `model` when this endpoint serves it.
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer …`; never logged.
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Model names or globs this endpoint serves; empty = every model.
    pub models: Vec<Glob>,
    /// Explicit proxy URL for this endpoint.
    pub proxy: Option<ureq::Proxy>,
    /// Root certificates replacing the built-in ones (from `ca_file`).
    pub roots: Option<ureq::tls::RootCerts>,
    /// The API this endpoint speaks; decides which requests it may take, how its key is sent.
    pub api: Api,
    /// How a chat request's `reasoning_effort` is sent here (applied at send time).
    pub thinking: ThinkingStyle,
    /// Whether earlier assistant turns' `reasoning_content` is sent here.
    pub reasoning_content: bool,
    /// How long an idle connection to this endpoint is kept (`keepalive_ms`); `None`: the
    /// relay's `upstream_keepalive_ms`.
    pub keepalive: Option<std::time::Duration>,
}

impl EndpointConfig {
    /// Whether this endpoint serves `model` (after rules).
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| g.matches(model))
    }
}

/// The checked upstream policy.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoints: Vec<EndpointConfig>,
    /// How many other endpoints a failed request may go to.
    pub retries: u32,
    /// Consecutive failures after which an endpoint cools down.
    pub fail_threshold: u32,
    pub cooldown: Duration,
    /// In-flight upstream calls beyond which the relay answers 503 at once; `None` = no limit.
    pub max_concurrent: Option<usize>,
    /// Honour HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY from the environment.
    pub use_proxy: bool,
    /// True when the file has an `upstreams` list (not the single `upstream` shorthand).
    pub listed: bool,
    /// The largest whole (non-streamed) upstream answer the relay holds.
    pub max_response_bytes: u64,
    /// The memory all whole upstream answers being read or relayed may take together.
    pub max_response_bytes_in_flight: u64,
}

impl Settings {
    /// Whether an endpoint that serves `model` takes requests of the client API `api` unchanged.
    pub fn speaks(&self, model: &str, api: Api) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.api.speaks(api) && e.serves(model))
    }

    /// The effective models a request of the client API `api` for `model` (after rules) may be
    /// sent as: each serving endpoint's `model` override, or `model` itself, once each in
    /// config order, with whether a weighted endpoint (not only a standby) sends it. The cache
    /// keys on these.
    pub fn effective_models(&self, api: Api, model: &str) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        let serving = self
            .endpoints
            .iter()
            .filter(|e| e.api.speaks(api) && e.serves(model));
        for e in serving {
            let effective = e.model.as_deref().unwrap_or(model);
            match out.iter_mut().find(|(m, _)| m == effective) {
                Some((_, primary)) => *primary |= e.weight > 0,
                None => out.push((effective.to_string(), e.weight > 0)),
            }
        }
        out
    }

    /// The endpoints in one line, for the start-up log.
    pub fn describe(&self) -> String {
        match self.endpoints.as_slice() {
            [one] if !self.listed => one.url.clone(),
            all => {
                let names: Vec<String> = all
                    .iter()
                    .map(|e| format!("{} {}", e.name, e.url))
                    .collect();
                format!("{} endpoints ({})", all.len(), names.join(", "))
            }
        }
    }

    /// Lines for `--check`; never prints keys.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "upstreams: {} (retries {}, fail_threshold {}, cooldown {} ms, max_concurrent_requests {})\n",
            self.endpoints.len(),
            self.retries,
            self.fail_threshold,
            self.cooldown.as_millis(),
            self.max_concurrent
                .map_or("unlimited".to_string(), |n| n.to_string())
        );
        for e in &self.endpoints {
            let models = if e.models.is_empty() {
                "*".to_string()
            } else {
                e.models
                    .iter()
                    .map(Glob::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // how chat requests ask it to think (not for an `anthropic` endpoint)
            let thinking = match e.api {
                Api::Anthropic => String::new(),
                _ => format!(
                    " thinking {}{}",
                    e.thinking.name(),
                    if e.reasoning_content {
                        " +reasoning_content"
                    } else {
                        ""
                    }
                ),
            };
            out.push_str(&format!(
                "  {} {} weight {} models [{models}] api {}{thinking}{}{}\n",
                e.name,
                e.url,
                e.weight,
                e.api.name(),
                e.model
                    .as_ref()
                    .map_or(String::new(), |m| format!(" model → {m}")),
                if e.key.is_some() { " (key hidden)" } else { "" },
            ));
        }
        out
    }
}

const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_FAIL_THRESHOLD: u32 = 3;
const DEFAULT_COOLDOWN_MS: u64 = 30_000;
/// `max_response_bytes`: the largest whole answer held (256 MiB).
const DEFAULT_MAX_RESPONSE: u64 = 256 * 1024 * 1024;
/// `max_response_bytes_in_flight`: all whole answers held at once (512 MiB).
const DEFAULT_RESPONSES_IN_FLIGHT: u64 = 512 * 1024 * 1024;
/// The least `max_response_bytes` (an error body must fit).
const MIN_RESPONSE_BYTES: u64 = 64 * 1024;

/// Checks the policy keys and the endpoint list (or the shorthand) into [`Settings`].
pub fn settings(raw: RawPolicy, shorthand: Shorthand) -> Result<Settings, String> {
    let fail_threshold = raw.fail_threshold.unwrap_or(DEFAULT_FAIL_THRESHOLD);
    if fail_threshold == 0 {
        return Err("`fail_threshold` must be at least 1".to_string());
    }
    let cooldown_ms = raw.cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS);
    if raw.max_concurrent_requests == Some(0) {
        return Err("`max_concurrent_requests` must be at least 1 (or absent for no limit)".into());
    }
    let max_response_bytes = raw.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE);
    if max_response_bytes < MIN_RESPONSE_BYTES {
        return Err(format!(
            "`max_response_bytes` must be at least {MIN_RESPONSE_BYTES} (64 KiB), got \
             {max_response_bytes}"
        ));
    }
    let max_response_bytes_in_flight = raw
        .max_response_bytes_in_flight
        .unwrap_or(DEFAULT_RESPONSES_IN_FLIGHT);
    if max_response_bytes_in_flight < max_response_bytes {
        return Err(format!(
            "`max_response_bytes_in_flight` ({max_response_bytes_in_flight}) must be at least \
             `max_response_bytes` ({max_response_bytes}), or no answer that large could be read"
        ));
    }
    let default_roots = raw.ca_file.as_deref().map(load_roots).transpose()?;
    let listed = raw.upstreams.is_some();
    let endpoints = match raw.upstreams {
        None => vec![EndpointConfig {
            name: "default".to_string(),
            url: shorthand.url.to_string(),
            weight: 1,
            model: None,
            key: shorthand.key,
            headers: Vec::new(),
            models: Vec::new(),
            proxy: None,
            roots: default_roots,
            api: Api::Chat,
            thinking: ThinkingStyle::ReasoningEffort,
            reasoning_content: false,
            keepalive: None,
        }],
        Some(_) if shorthand.explicit => {
            return Err(
                "set either `upstream` (with `api_key`/`api_key_env`) for one endpoint \
                        or the `upstreams` list, not both"
                    .to_string(),
            )
        }
        Some(list) if list.is_empty() => {
            return Err("`upstreams` is empty; list at least one endpoint, e.g. \
                        [{\"provider\": \"ollama\"}]"
                .to_string())
        }
        Some(list) => {
            let mut out: Vec<EndpointConfig> = Vec::with_capacity(list.len());
            for (i, raw) in list.into_iter().enumerate() {
                let e = endpoint(raw, &default_roots)
                    .map_err(|msg| format!("upstreams[{i}]: {msg}"))?;
                if out.iter().any(|o| o.name == e.name) {
                    return Err(format!(
                        "upstreams[{i}]: the name \"{}\" is used twice; give each endpoint its own `name`",
                        e.name
                    ));
                }
                out.push(e);
            }
            out
        }
    };
    Ok(Settings {
        endpoints,
        retries: raw.retries.unwrap_or(DEFAULT_RETRIES),
        fail_threshold,
        cooldown: Duration::from_millis(cooldown_ms),
        max_concurrent: raw.max_concurrent_requests,
        use_proxy: raw.use_proxy.unwrap_or(true),
        listed,
        max_response_bytes,
        max_response_bytes_in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_api_takes_which_requests() {
        use Api::*;
        let cases = [
            (Chat, Chat, true),
            (Chat, Responses, false),
            (Chat, Anthropic, false),
            (Responses, Chat, true),
            (Responses, Responses, true),
            (Anthropic, Anthropic, true),
            (Anthropic, Chat, false),
        ];
        for (endpoint, client, want) in cases {
            assert_eq!(endpoint.speaks(client), want, "{endpoint:?} {client:?}");
        }
    }
}
