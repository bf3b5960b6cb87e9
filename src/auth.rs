//! Client keys: the `auth` config section, what a request presents, and how keys are hashed
//! and compared (the live store is key_store.rs).
//!
//! A key is only ever held as its SHA-256 hash: config keys are hashed at load, keys created
//! through the admin API are stored hashed in `keys_file` or Redis. A presented key is hashed
//! and compared against every known hash in constant time. Keys never reach logs, metrics or error messages; the pipeline only sees the [`Client`]
//! (id and name) the check returns.

use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tiny_http::Request;

use crate::budget::{self, Budget, RawBudget};
use crate::error::ApiError;
use crate::keys_file::StoredKey;
use crate::limits::{RateLimit, RawRateLimit};
use crate::route_policy;
use crate::util::hex;

/// The `auth` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    keys: Vec<RawKey>,
    keys_file: Option<String>,
    admin_key: Option<String>,
    admin_key_env: Option<String>,
    #[serde(default)]
    protect_metrics: bool,
}

/// One entry of `auth.keys`: a bare key, or a key with a name and its own rate limit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawKey {
    Bare(String),
    Full(RawFullKey),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFullKey {
    key: String,
    name: Option<String>,
    rate_limit: Option<RawRateLimit>,
    budget: Option<RawBudget>,
    /// Model names or globs the key may call (empty or absent: any).
    models: Option<Vec<String>>,
    /// `"METHOD /v1/path-glob"` entries the key may use (absent: the default).
    routes: Option<Vec<String>>,
}

/// The checked `auth` section.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Keys from the config file, hashed.
    pub keys: Vec<StoredKey>,
    pub keys_file: Option<PathBuf>,
    /// Hex SHA-256 of the admin key.
    pub admin_hash: Option<String>,
    pub protect_metrics: bool,
}

impl AuthConfig {
    /// Checks the raw section. `forward_auth` is refused with auth on: the client's
    /// Authorization then carries its relay key, which must never reach the upstream.
    pub fn from_raw(raw: Option<RawAuth>, forward_auth: bool) -> Result<AuthConfig, String> {
        let raw = raw.unwrap_or_default();
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (i, k) in raw.keys.into_iter().enumerate() {
            let (key, name, rate_limit, budget, models, routes) = match k {
                RawKey::Bare(key) => (key, None, None, None, None, None),
                RawKey::Full(f) => (f.key, f.name, f.rate_limit, f.budget, f.models, f.routes),
            };
            if key.trim().len() < 8 {
                return Err(format!(
                    "auth.keys[{i}] is shorter than 8 characters; use a long random key"
                ));
            }
            let sha256 = hash_hex(&key);
            let id = format!(
                "cfg_{}",
                hash_hex(&format!("llm-relay key id:{key}"))
                    .get(..12)
                    .unwrap_or_default()
            );
            let rate_limit =
                RateLimit::from_raw(rate_limit, &format!("auth.keys[{i}].rate_limit"))?;
            keys.push(StoredKey {
                name: name.unwrap_or_else(|| format!("config key {i}")),
                id,
                sha256,
                rate_limit,
                budget: Budget::from_raw(budget, &format!("auth.keys[{i}].budget"))?,
                models: budget::models_from_raw(models, &format!("auth.keys[{i}].models"))?,
                routes: route_policy::key_routes(routes, &format!("auth.keys[{i}].routes"))?,
                expires_at: None,
                created_at: 0,
            });
        }
        let admin = crate::check::secret(raw.admin_key, raw.admin_key_env, "auth.admin_key")?;
        if admin.as_ref().is_some_and(|k| k.trim().len() < 8) {
            return Err("the admin key is shorter than 8 characters; use a long random key".into());
        }
        let cfg = AuthConfig {
            keys,
            keys_file: raw.keys_file.map(PathBuf::from),
            admin_hash: admin.map(|k| hash_hex(&k)),
            protect_metrics: raw.protect_metrics,
        };
        if cfg.enabled() && forward_auth {
            return Err(
                "`forward_auth` cannot be combined with `auth`: the client's \
                        Authorization carries its relay key, which is never sent upstream; set \
                        `api_key` for the upstream instead"
                    .into(),
            );
        }
        Ok(cfg)
    }

    /// One line for `--check`; never a key.
    pub fn summary(&self, default_limit: &RateLimit) -> String {
        if !self.enabled() {
            return "auth: off (no keys configured; anyone who can connect may use the relay)\n"
                .to_string();
        }
        let file = match &self.keys_file {
            Some(p) => format!("keys_file {}", p.display()),
            None => "no keys_file".to_string(),
        };
        let admin = if self.admin_hash.is_some() {
            "on"
        } else {
            "off"
        };
        let limit = |v: Option<u32>| v.map_or("-".to_string(), |n| n.to_string());
        format!(
            "auth: {} config keys, {file}, admin API {admin}, rate_limit per_minute {} per_hour {}\n",
            self.keys.len(),
            limit(default_limit.per_minute),
            limit(default_limit.per_hour)
        )
    }

    /// True when clients need a key: any of `keys`, `keys_file` or an admin key is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || self.keys_file.is_some() || self.admin_hash.is_some()
    }
}

/// Who made a request: the authenticated key, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub key_id: String,
    pub name: String,
    pub rate_limit: RateLimit,
    pub budget: Budget,
    /// Model globs the key may call; empty: any.
    pub models: Vec<crate::glob::Glob>,
    /// Routes the key may use; empty: the default (`route_policy::key_allows`).
    pub routes: Vec<route_policy::KeyRoute>,
}

impl Client {
    /// `Err` (403 `route_not_allowed`) if this key may not send `method` to `route` (the path
    /// below the optional `/v1`).
    pub fn may_use(&self, method: &str, route: &str) -> Result<(), ApiError> {
        if route_policy::key_allows(&self.routes, !self.models.is_empty(), method, route) {
            Ok(())
        } else {
            Err(route_policy::route_not_allowed(method, route))
        }
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Open to everyone: `/health`, `/ready`, `/openapi.json`, the dashboard's page (`/ui`).
    Nothing,
    /// `/metrics`: a client or admin key when `auth.protect_metrics`, else nothing.
    Metrics,
    /// `/admin/*`: the admin key.
    Admin,
    /// Everything else: a client key when auth is on.
    Client,
}

/// The rule for `route` (the path without a `/v1` prefix).
pub fn route_needs_key(route: &str) -> Need {
    match route {
        "/health" | "/ready" | "/openapi.json" => Need::Nothing,
        // the dashboard's page holds no data; its data routes are under `/admin/ui/`
        r if is_ui_page(r) => Need::Nothing,
        "/metrics" => Need::Metrics,
        r if r == "/admin" || r.starts_with("/admin/") => Need::Admin,
        _ => Need::Client,
    }
}

/// True for the dashboard page's own paths (`/ui`, `/ui/`, `/ui/app.js`, `/ui/app.css`).
pub fn is_ui_page(route: &str) -> bool {
    matches!(route, "/ui" | "/ui/" | "/ui/app.js" | "/ui/app.css")
}

/// Headers that carry a client's credential to an upstream (with `forward_auth`, or as any
/// other header): `Authorization` (Bearer, Basic, Token, ...), Anthropic's `x-api-key`, Azure's
/// `api-key`, Gemini's `x-goog-api-key`.
const CREDENTIAL_HEADERS: &[&str] = &["api-key", "x-goog-api-key"];

/// Whose cached answers a request may share with `cache.scope: "key"` (the cache hashes it):
/// with auth on, the authenticated key's id, however it was presented; with auth off, the
/// credentials the request carries — the `Authorization` or `x-api-key` header `forward_auth`
/// sends upstream (`util::forwarded_credential`), plus `api-key` and `x-goog-api-key`, names
/// and values as sent — so a request gets only answers recorded under the very credentials
/// it sends, and one with none only answers recorded with none. Credentials come back
/// hashed; `""`: no credential.
pub fn principal(client: Option<&Client>, req: &Request) -> String {
    if let Some(c) = client {
        return format!("key id\n{}", c.key_id);
    }
    let headers = crate::client_headers::ClientHeaders::parsed(req.headers());
    let mut out = String::new();
    let forwarded = crate::util::forwarded_credential(headers.iter());
    let others = headers
        .iter()
        .filter(|(n, _)| CREDENTIAL_HEADERS.iter().any(|c| n.eq_ignore_ascii_case(c)));
    for (name, value) in forwarded.into_iter().chain(others) {
        out.push_str(&format!(
            "{}: {}\n",
            name.to_ascii_lowercase(),
            value.trim()
        ));
    }
    if out.is_empty() {
        return out;
    }
    // held hashed from here on, like every credential
    hash_hex(&format!("llm-relay credentials\n{out}"))
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Wrong,
    Expired,
}

/// The key a request presents: `Authorization: Bearer …`, else `X-API-Key: …`.
pub fn presented_key(req: &Request) -> Option<String> {
    let mut api_key = None;
    for h in req.headers() {
        let name = h.field.as_str().as_str();
        if name.eq_ignore_ascii_case("authorization") {
            if let Some(token) = crate::util::bearer_token(h.value.as_str()) {
                return Some(token.to_string());
            }
        } else if name.eq_ignore_ascii_case("x-api-key") {
            api_key = Some(h.value.as_str().trim().to_string());
        }
    }
    api_key
}

/// The 401 for a refused key. Never repeats the key.
pub fn unauthorized(why: Refused, admin: bool) -> ApiError {
    let message = match (why, admin) {
        (_, true) => "this route needs the admin key (`auth.admin_key`), sent as \
                      `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            .to_string(),
        (Refused::Missing, false) => "this relay needs an API key: send `Authorization: Bearer \
                                      <key>` or `X-API-Key: <key>`; ask the relay's admin for one"
            .to_string(),
        (Refused::Wrong, false) => "the API key is not valid (unknown or revoked); check it or \
                                    ask the relay's admin for a new one"
            .to_string(),
        (Refused::Expired, false) => {
            "the API key has expired; ask the relay's admin for a new one".to_string()
        }
    };
    ApiError::new(401, "invalid_request_error", "invalid_api_key", message)
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ApiError::internal(format!("cannot read the system's random source: {e}")))?;
    Ok(buf)
}

fn hash_bytes(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

pub fn hash_hex(s: &str) -> String {
    hex(&hash_bytes(s))
}

/// Constant-time comparison of two hex hashes (the time depends on the length only).
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(
            hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(ct_eq(&hash_hex("abc"), &hash_hex("abc")));
        assert!(!ct_eq(&hash_hex("abd"), &hash_hex("abc")));
        assert!(!ct_eq(&hash_hex("abc"), "short"));
    }

    #[test]
    fn route_rules() {
        assert_eq!(route_needs_key("/health"), Need::Nothing);
        assert_eq!(route_needs_key("/ready"), Need::Nothing);
        assert_eq!(route_needs_key("/metrics"), Need::Metrics);
        assert_eq!(route_needs_key("/admin/keys"), Need::Admin);
        assert_eq!(route_needs_key("/chat/completions"), Need::Client);
        assert_eq!(route_needs_key("/administrator"), Need::Client);
        assert_eq!(route_needs_key("/ui"), Need::Nothing);
        assert_eq!(route_needs_key("/ui/app.js"), Need::Nothing);
        assert_eq!(route_needs_key("/admin/ui/overview"), Need::Admin);
        assert_eq!(route_needs_key("/ui/other"), Need::Client);
    }
}
