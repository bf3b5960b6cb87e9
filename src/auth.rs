//! Client keys: the `auth` config section, the key store, and the check every request passes.
//!
//! A key is only ever held as its SHA-256 hash: config keys are hashed at load, keys created
//! through the admin API are stored hashed in `keys_file` (rewritten atomically: temp file,
//! fsync, rename). A presented key is hashed and compared against every known hash in constant
//! time. Keys never reach logs, metrics or error messages; the pipeline only sees the [`Client`]
//! (id and name) the check returns.

use std::io::Read;
use std::path::PathBuf;
use std::sync::RwLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tiny_http::Request;

use crate::error::ApiError;
use crate::keys_file::{self, StoredKey};
use crate::limits::{RateLimit, RawRateLimit};
use crate::util::{hex, now_secs};

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
            let (key, name, rate_limit) = match k {
                RawKey::Bare(key) => (key, None, None),
                RawKey::Full(f) => (f.key, f.name, f.rate_limit),
            };
            if key.trim().len() < 8 {
                return Err(format!(
                    "auth.keys[{i}] is shorter than 8 characters; use a long random key"
                ));
            }
            let sha256 = hash_hex(&key);
            let id = format!(
                "cfg_{}",
                &hash_hex(&format!("llm-relay key id:{key}"))[..12]
            );
            let rate_limit =
                RateLimit::from_raw(rate_limit, &format!("auth.keys[{i}].rate_limit"))?;
            keys.push(StoredKey {
                name: name.unwrap_or_else(|| format!("config key {i}")),
                id,
                sha256,
                rate_limit,
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
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Open to everyone: `/health`, `/ready`, `/openapi.json`.
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
        "/metrics" => Need::Metrics,
        r if r == "/admin" || r.starts_with("/admin/") => Need::Admin,
        _ => Need::Client,
    }
}

/// The live key store: config keys plus those created through the admin API.
#[derive(Debug)]
pub struct KeyStore {
    config: AuthConfig,
    /// Keys from `keys_file`.
    created: RwLock<Vec<StoredKey>>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Wrong,
    Expired,
}

impl KeyStore {
    /// Loads `keys_file` if configured (a missing file is an empty one).
    pub fn open(config: &AuthConfig) -> Result<KeyStore, String> {
        let created = match &config.keys_file {
            Some(path) => keys_file::load(path)?,
            None => Vec::new(),
        };
        Ok(KeyStore {
            config: config.clone(),
            created: RwLock::new(created),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    pub fn protect_metrics(&self) -> bool {
        self.config.protect_metrics
    }

    /// The client a presented key belongs to.
    pub fn client(&self, presented: Option<&str>) -> Result<Client, Refused> {
        let presented = presented.ok_or(Refused::Missing)?;
        let hash = hash_hex(presented);
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        // Compare against every key, without stopping at the first match.
        let mut found: Option<&StoredKey> = None;
        for k in self.config.keys.iter().chain(created.iter()) {
            if ct_eq(&hash, &k.sha256) && found.is_none() {
                found = Some(k);
            }
        }
        let k = found.ok_or(Refused::Wrong)?;
        if k.expires_at.is_some_and(|t| now_secs() >= t) {
            return Err(Refused::Expired);
        }
        Ok(Client {
            key_id: k.id.clone(),
            name: k.name.clone(),
            rate_limit: k.rate_limit,
        })
    }

    /// True if `presented` is the admin key (false when none is configured).
    pub fn is_admin(&self, presented: Option<&str>) -> bool {
        match (&self.config.admin_hash, presented) {
            (Some(admin), Some(p)) => ct_eq(&hash_hex(p), admin),
            _ => false,
        }
    }

    /// Every key, config keys first; `true` marks config keys.
    pub fn list(&self) -> Vec<(StoredKey, bool)> {
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        let cfg = self.config.keys.iter().map(|k| (k.clone(), true));
        cfg.chain(created.iter().map(|k| (k.clone(), false)))
            .collect()
    }

    /// Creates a key, persists it, and returns it with the secret (shown once).
    pub fn create(
        &self,
        name: String,
        rate_limit: RateLimit,
        expires_at: Option<u64>,
    ) -> Result<(StoredKey, String), ApiError> {
        let Some(path) = &self.config.keys_file else {
            return Err(ApiError::new(
                409,
                "invalid_request_error",
                "keys_file_not_configured",
                "keys created through the admin API need `auth.keys_file` in the config, so \
                 they survive a restart; set it and reload the config (SIGHUP)"
                    .to_string(),
            ));
        };
        let secret = format!("sk-relay-{}", hex(&random_bytes::<24>()?));
        let key = StoredKey {
            id: format!("key_{}", hex(&random_bytes::<8>()?)),
            name,
            sha256: hash_hex(&secret),
            rate_limit,
            expires_at,
            created_at: now_secs(),
        };
        let mut created = self.created.write().unwrap_or_else(|p| p.into_inner());
        let mut next = created.clone();
        next.push(key.clone());
        keys_file::save(path, &next).map_err(ApiError::internal)?;
        *created = next;
        Ok((key, secret))
    }

    /// Revokes a created key. `Err` says why not: unknown, or defined in the config file.
    pub fn revoke(&self, id: &str) -> Result<(), ApiError> {
        if self.config.keys.iter().any(|k| k.id == id) {
            return Err(ApiError::new(
                409,
                "invalid_request_error",
                "config_key",
                format!(
                    "key `{id}` is defined in the config file; remove it there and reload the \
                     config (SIGHUP)"
                ),
            ));
        }
        let mut created = self.created.write().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = created.iter().position(|k| k.id == id) else {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                "key_not_found",
                format!("no key with id `{id}`; GET /admin/keys lists them"),
            ));
        };
        let mut next = created.clone();
        next.remove(pos);
        if let Some(path) = &self.config.keys_file {
            keys_file::save(path, &next).map_err(ApiError::internal)?;
        }
        *created = next;
        Ok(())
    }
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

fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ApiError::internal(format!("cannot read the system's random source: {e}")))?;
    Ok(buf)
}

fn hash_bytes(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn hash_hex(s: &str) -> String {
    hex(&hash_bytes(s))
}

/// Constant-time comparison of two hex hashes (the time depends on the length only).
fn ct_eq(a: &str, b: &str) -> bool {
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
    }
}
