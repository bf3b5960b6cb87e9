//! A request as the cache sees it: its [`Plan`] (the keys of every model the config may send
//! it to, for its namespace and sample, with the shared entries' keys to fall back on), its
//! mode (`cache.mode`, or `X-Relay-Cache-Mode` where `cache.mode_header` allows it), its
//! `Cache-Control`, and the other cache headers (`controls.rs`).

use serde_json::{Map, Value};

use super::config::{CacheConfig, Mode, Scope};
use super::key::{self, Variant};
use super::replay::Delivery;
use super::{apis, controls};
use crate::error::ApiError;

/// The request header that chooses a cache mode, where `cache.mode_header` allows it.
pub const MODE_HEADER: &str = "x-relay-cache-mode";

/// A request's `Cache-Control` (standard request directives).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Go upstream and replace the entry.
    pub no_cache: bool,
    /// Neither read nor write the cache.
    pub no_store: bool,
    /// Only entries younger than this many seconds count.
    pub max_age: Option<u64>,
}

impl Control {
    pub fn parse(header: Option<&str>) -> Control {
        let mut c = Control::default();
        for d in header.unwrap_or("").split(',') {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('=') {
                Some(("max-age", n)) => c.max_age = n.trim().trim_matches('"').parse().ok(),
                _ if d == "no-cache" => c.no_cache = true,
                _ if d == "no-store" => c.no_store = true,
                _ => {}
            }
        }
        c
    }
}

/// The cache's view of one request.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The key for the first effective model: `X-Cache-Key` of a miss, the single flight.
    pub key: String,
    pub(super) route: String,
    pub(super) scope: String,
    /// One per effective model an endpoint serving the request would send.
    pub(super) candidates: Vec<Candidate>,
    pub control: Control,
    pub mode: Mode,
    pub delivery: Delivery,
    /// The namespace and sample it reads and records.
    pub variant: Variant,
    /// Whether the request named its sample (else `cache.repeat` may choose it).
    pub(super) named_sample: bool,
    /// `X-Relay-Cache-Timing`: a streamed hit waits its recorded gaps times this.
    pub pace: Option<f64>,
    /// Look up the shared entries when the namespace has none (`cache.namespace_fallback`).
    pub(super) fallback: bool,
    /// The client key id the request came with (`None` with auth off): written as the
    /// entry's `recorded_by`, and the only key a `cache_miss` shows recorded values to.
    pub(super) recorder: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) model: String,
    /// The key of the plan's variant (what is recorded).
    pub(super) key: String,
    /// The shared entry of the same sample, read after every candidate's `key` missed
    /// (a namespaced request, with `cache.namespace_fallback`).
    pub(super) fallback: Option<String>,
    pub(super) canonical: Vec<u8>,
    /// Sent by a weighted endpoint (the config's first choice): only these are looked up, so
    /// a standby's answer under another model never serves a request the primaries would take.
    pub(super) primary: bool,
}

impl Plan {
    /// The plan of a request of the client key `key_id` (`None`: auth is off).
    pub fn by_client(self, key_id: Option<&str>) -> Plan {
        Plan {
            recorder: key_id.map(str::to_string),
            ..self
        }
    }

    /// The effective model whose candidate key (or shared fallback key) is `key` (the model a
    /// hit on it was sent as).
    pub fn model_of(&self, key: &str) -> Option<&str> {
        self.candidates
            .iter()
            .find(|c| c.key == key || c.fallback.as_deref() == Some(key))
            .map(|c| c.model.as_str())
    }

    /// Whether an answer from upstream is stored.
    pub fn stores(&self) -> bool {
        self.mode.stores() && !self.control.no_store
    }

    /// Whether this request must ask a streaming upstream for usage
    /// (`stream_options.include_usage`), which the relay then drops for a client that did not.
    pub fn asks_usage(&self) -> bool {
        self.stores() && self.delivery.stream && apis::asks_usage(&self.route)
    }

    /// Sets the sample (1: the ordinary entry) and the keys that follow from it.
    pub(super) fn set_sample(&mut self, sample: u32) {
        self.variant.sample = sample;
        let shared = Variant {
            namespace: String::new(),
            sample,
        };
        for c in &mut self.candidates {
            c.key = key::variant_key(&self.route, &self.scope, &self.variant, &c.canonical);
            c.fallback = (self.fallback && !self.variant.namespace.is_empty())
                .then(|| key::variant_key(&self.route, &self.scope, &shared, &c.canonical));
        }
        if let Some(c) = self.candidates.iter().find(|c| c.primary) {
            self.key = c.key.clone();
        }
    }

    /// The canonical request as the first weighted endpoint would get it, as JSON (what
    /// `why` compares with the recorded requests).
    pub(super) fn canonical_json(&self) -> Value {
        self.candidates
            .iter()
            .find(|c| c.primary)
            .and_then(|c| crate::json::from_slice::<Value>(&c.canonical).ok())
            .unwrap_or(Value::Null)
    }

    /// The keys, mode and cache control of a request. `headers` are the client's (for the
    /// cache's own headers); `principal` is whose answers it may share with `scope: "key"`, as
    /// the gate decided it (`auth::principal`: the authenticated key's id, else the
    /// credentials it carries, `""` for none); `models` are the effective models of the
    /// endpoints that serve the request's model, each with whether a weighted (non-standby)
    /// endpoint sends it (empty: the body's own model).
    pub fn new(
        config: &CacheConfig,
        route: &str,
        body: &Map<String, Value>,
        (headers, principal): (crate::client_headers::ClientHeaders<'_>, &str),
        models: &[(String, bool)],
    ) -> Result<Plan, ApiError> {
        let header = |name: &str| headers.get(name);
        let mode = match header(MODE_HEADER) {
            None => config.mode,
            Some(v) => header_mode(config, v.trim())?,
        };
        let controls = controls::parse(config, header)?;
        let scope = match config.scope {
            Scope::Shared => String::new(),
            Scope::Key => key::credential_scope(principal),
        };
        let own = body.get("model").and_then(Value::as_str).unwrap_or("");
        let fallback = [(own.to_string(), true)];
        let models = if models.is_empty() {
            &fallback[..]
        } else {
            models
        };
        let any_primary = models.iter().any(|(_, p)| *p);
        let mut candidates: Vec<Candidate> = Vec::with_capacity(models.len());
        for (model, primary) in models {
            if candidates.iter().any(|c| &c.model == model) {
                continue;
            }
            let canonical = key::canonical_request(body, model, &config.ignore_fields);
            candidates.push(Candidate {
                key: String::new(),
                fallback: None,
                model: model.clone(),
                canonical,
                primary: *primary || !any_primary,
            });
        }
        let mut plan = Plan {
            key: String::new(),
            route: route.to_string(),
            scope,
            candidates,
            control: Control::parse(header("cache-control")),
            mode,
            delivery: Delivery::of(body),
            variant: Variant {
                namespace: controls.namespace,
                sample: 1,
            },
            named_sample: controls.sample.is_some(),
            pace: controls.pace,
            fallback: config.namespace_fallback,
            recorder: None,
        };
        plan.set_sample(controls.sample.unwrap_or(1));
        Ok(plan)
    }
}

/// The mode a request chooses with `X-Relay-Cache-Mode`, if the config allows it.
fn header_mode(config: &CacheConfig, value: &str) -> Result<Mode, ApiError> {
    let allowed: Vec<&str> = config.header_modes.iter().map(|m| m.name()).collect();
    match Mode::parse(value) {
        Some(m) if config.header_modes.contains(&m) => Ok(m),
        _ if allowed.is_empty() => Err(ApiError::invalid(
            "cache_mode_not_allowed",
            format!(
                "this relay does not let a request choose its cache mode (X-Relay-Cache-Mode: \
                 {value}); drop the header, or list the mode in `cache.mode_header`"
            ),
        )),
        _ => Err(ApiError::invalid(
            "cache_mode_not_allowed",
            format!(
                "X-Relay-Cache-Mode: {value} is not allowed here; this relay allows {} \
                 (`cache.mode_header`)",
                allowed.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        let cases: &[(Option<&str>, Control)] = &[
            (None, Control::default()),
            (
                Some("No-Cache"),
                Control {
                    no_cache: true,
                    ..Control::default()
                },
            ),
            (
                Some("max-age=60, no-store"),
                Control {
                    no_store: true,
                    max_age: Some(60),
                    ..Control::default()
                },
            ),
            (
                Some("max-age=\"5\""),
                Control {
                    max_age: Some(5),
                    ..Control::default()
                },
            ),
            (Some("max-age=soon, private"), Control::default()),
        ];
        for (header, expected) in cases {
            assert_eq!(Control::parse(*header), *expected, "{header:?}");
        }
    }
}
