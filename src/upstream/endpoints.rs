//! Upstream endpoints as configured: the `upstreams` list, provider presets, model globs, and
//! the failover policy keys (`retries`, `fail_threshold`, `cooldown_ms`, ...).
//!
//! [`RawEndpoint`] mirrors one entry of the file; [`settings`] checks the list (or turns the
//! core's single `upstream` into a one-endpoint list) and resolves presets and keys into
//! [`Settings`]. Nothing here talks to the network.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::glob::Glob;

/// One entry of `upstreams` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    name: Option<String>,
    provider: Option<String>,
    url: Option<String>,
    weight: Option<u32>,
    model: Option<String>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    models: Vec<String>,
    proxy: Option<String>,
    ca_file: Option<String>,
    api: Option<Api>,
    thinking: Option<String>,
    reasoning_content: Option<bool>,
}

pub use crate::api::Api;

use super::thinking::{preset_default, ThinkingStyle};

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

/// A provider preset: base URL, the environment variable its key usually lives in, its API.
struct Preset {
    name: &'static str,
    url: &'static str,
    key_env: Option<&'static str>,
    api: Api,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "anthropic",
        url: "https://api.anthropic.com/v1",
        key_env: Some("ANTHROPIC_API_KEY"),
        api: Api::Anthropic,
    },
    Preset {
        name: "openai",
        url: "https://api.openai.com/v1",
        key_env: Some("OPENAI_API_KEY"),
        api: Api::Responses,
    },
    Preset {
        name: "deepseek",
        url: "https://api.deepseek.com/v1",
        key_env: Some("DEEPSEEK_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "openrouter",
        url: "https://openrouter.ai/api/v1",
        key_env: Some("OPENROUTER_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "dashscope",
        url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        key_env: Some("DASHSCOPE_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "gemini",
        url: "https://generativelanguage.googleapis.com/v1beta/openai",
        key_env: Some("GEMINI_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "ollama",
        url: "http://127.0.0.1:11434/v1",
        key_env: None,
        api: Api::Chat,
    },
    Preset {
        name: "vllm",
        url: "http://127.0.0.1:8000/v1",
        key_env: None,
        api: Api::Chat,
    },
    Preset {
        name: "llamacpp",
        url: "http://127.0.0.1:8080/v1",
        key_env: None,
        api: Api::Chat,
    },
];

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

fn endpoint(
    raw: RawEndpoint,
    default_roots: &Option<ureq::tls::RootCerts>,
) -> Result<EndpointConfig, String> {
    let preset = match raw.provider.as_deref() {
        None => None,
        Some(p) => Some(PRESETS.iter().find(|x| x.name == p).ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|x| x.name).collect();
            format!("unknown provider \"{p}\"; use one of {}", names.join(", "))
        })?),
    };
    let url = match (&raw.url, preset) {
        (Some(url), _) => url.as_str(),
        (None, Some(p)) => p.url,
        (None, None) => {
            return Err("needs a `url` (e.g. \"http://127.0.0.1:8000/v1\") or a `provider`".into())
        }
    };
    let url = crate::check::check_url(url, "url")?;
    let key = match crate::check::secret(raw.api_key, raw.api_key_env, "api_key")? {
        Some(k) => Some(k),
        None => match preset.and_then(|p| p.key_env) {
            Some(var) => Some(env_key(var).ok_or_else(|| {
                format!(
                    "provider \"{}\" reads its key from the environment variable {var}, which \
                     is not set; export it, or set `api_key` / `api_key_env`",
                    raw.provider.as_deref().unwrap_or("")
                )
            })?),
            None => None,
        },
    };
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        let Value::String(value) = value else {
            return Err(format!("headers.{name} must be a string"));
        };
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
        if !valid_name || value.contains(['\r', '\n']) {
            return Err(format!("headers.{name} is not a valid HTTP header"));
        }
        headers.push((name, value));
    }
    let models = crate::glob::list(Some(raw.models), "models")?;
    let proxy = match raw.proxy {
        None => None,
        Some(p) => Some(ureq::Proxy::new(&p).map_err(|e| {
            format!("`proxy` \"{p}\" is not a proxy URL ({e}); e.g. \"http://127.0.0.1:3128\"")
        })?),
    };
    let roots = match raw.ca_file {
        Some(path) => Some(load_roots(&path)?),
        None => default_roots.clone(),
    };
    let (thinking, reasoning_content) = preset_default(preset.map(|p| p.name));
    let thinking = match raw.thinking.as_deref() {
        Some(t) => ThinkingStyle::parse(t)?,
        None => thinking,
    };
    let name = raw
        .name
        .or(raw.provider)
        .unwrap_or_else(|| host_of(&url).to_string());
    if name.is_empty() {
        return Err("`name` is empty".into());
    }
    Ok(EndpointConfig {
        name,
        url,
        weight: raw.weight.unwrap_or(1),
        model: raw.model,
        key,
        headers,
        models,
        proxy,
        roots,
        api: raw.api.or(preset.map(|p| p.api)).unwrap_or(Api::Chat),
        thinking,
        reasoning_content: raw.reasoning_content.unwrap_or(reasoning_content),
    })
}

fn env_key(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|k| !k.is_empty())
}

/// Reads a PEM file of CA certificates and adds them to the built-in (Mozilla) roots.
fn load_roots(path: &str) -> Result<ureq::tls::RootCerts, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `ca_file` {path}: {e}"))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("`ca_file` {path} is not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "`ca_file` {path} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        ));
    }
    let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()));
    let all: Vec<_> = builtin.chain(certs).collect();
    Ok(ureq::tls::RootCerts::new_with_certs(&all))
}

/// `host[:port]` of a checked URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_adds_to_the_builtin_roots() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        let Ok(ureq::tls::RootCerts::Specific(certs)) = load_roots(ca) else {
            panic!("a specific root list");
        };
        let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(builtin > 100, "{builtin}");
        assert_eq!(certs.len(), builtin + 1);
    }

    fn one(entry: serde_json::Value) -> Result<EndpointConfig, String> {
        let raw: RawEndpoint = serde_json::from_value(entry).map_err(|e| e.to_string())?;
        endpoint(raw, &None)
    }

    #[test]
    fn api_from_field_or_preset() {
        let cases = [
            (
                serde_json::json!({"url": "http://127.0.0.1:9/v1"}),
                Api::Chat,
            ),
            (
                serde_json::json!({"url": "http://127.0.0.1:9/v1", "api": "responses"}),
                Api::Responses,
            ),
            (
                serde_json::json!({"provider": "anthropic", "api_key": "k"}),
                Api::Anthropic,
            ),
            (
                serde_json::json!({"provider": "openai", "api_key": "k"}),
                Api::Responses,
            ),
            (
                serde_json::json!({"provider": "anthropic", "api_key": "k", "api": "chat"}),
                Api::Chat,
            ),
        ];
        for (entry, want) in cases {
            let e = one(entry.clone()).unwrap();
            assert_eq!(e.api, want, "{entry}");
        }
        let e = one(serde_json::json!({"provider": "anthropic", "api_key": "k"})).unwrap();
        assert_eq!(e.url, "https://api.anthropic.com/v1");
        let err = one(serde_json::json!({"url": "http://127.0.0.1:9/v1", "api": "gemini"}));
        assert!(err.unwrap_err().contains("unknown variant `gemini`"));
    }

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

    #[test]
    fn host_names() {
        assert_eq!(host_of("http://127.0.0.1:9/v1"), "127.0.0.1:9");
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
    }
}
