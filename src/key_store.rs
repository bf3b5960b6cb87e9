//! The live key store: config keys plus those created through the admin API, kept in
//! `auth.keys_file` on one machine or in Redis when replicas share `state.redis`.
//!
//! With Redis each replica holds a copy of the created keys, read again when it is more than
//! [`REFRESH`] old, and at once when a presented key is unknown (at most every
//! [`RETRY_UNKNOWN`]): a key created on one replica works on every other at its first use, a
//! revocation or change reaches them within [`REFRESH`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::auth::{ct_eq, hash_hex, random_bytes, AuthConfig, Client, Refused};
use crate::error::ApiError;
use crate::keys_file::{self, StoredKey};
use crate::store::Redis;
use crate::util::{hex, now_secs};

/// Longest a replica uses its copy of the Redis keys before reading them again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Shortest gap between two reads caused by unknown keys (bounds what wrong keys cost Redis).
const RETRY_UNKNOWN: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct KeyStore {
    config: AuthConfig,
    /// Created keys: from `keys_file`, or a copy of Redis's.
    created: RwLock<Vec<StoredKey>>,
    redis: Option<Arc<Redis>>,
    /// When the copy was last read from Redis.
    read_at: Mutex<Option<Instant>>,
}

impl KeyStore {
    /// Loads `keys_file` if configured (a missing file is an empty one); with `redis`, keys
    /// come from there instead (read on first use, so Redis may be down at start-up).
    pub fn open(config: &AuthConfig, redis: Option<Arc<Redis>>) -> Result<KeyStore, String> {
        let created = match (&redis, &config.keys_file) {
            (None, Some(path)) => keys_file::load(path)?,
            _ => Vec::new(),
        };
        Ok(KeyStore {
            config: config.clone(),
            created: RwLock::new(created),
            redis,
            read_at: Mutex::new(None),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    pub fn protect_metrics(&self) -> bool {
        self.config.protect_metrics
    }

    /// Reads Redis's keys again if the copy is older than `max_age`. With `wait` false a
    /// thread that finds another one reading goes on with the copy; with `wait` it waits for
    /// that read (an unknown key may be in it).
    fn refresh(&self, max_age: Duration, wait: bool) {
        let Some(redis) = &self.redis else { return };
        let mut read_at = match self.read_at.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => {
                self.read_at.lock().unwrap_or_else(|p| p.into_inner())
            }
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if read_at.is_some_and(|t| t.elapsed() < max_age) {
            return;
        }
        if let Ok(keys) = redis.keys() {
            *self.created.write().unwrap_or_else(|p| p.into_inner()) = keys;
        }
        *read_at = Some(Instant::now());
    }

    /// The client a presented key belongs to.
    pub fn client(&self, presented: Option<&str>) -> Result<Client, Refused> {
        let presented = presented.ok_or(Refused::Missing)?;
        self.refresh(REFRESH, false);
        let hash = hash_hex(presented);
        match self.find(&hash) {
            Err(Refused::Wrong) if self.redis.is_some() => {
                self.refresh(RETRY_UNKNOWN, true);
                self.find(&hash)
            }
            found => found,
        }
    }

    fn find(&self, hash: &str) -> Result<Client, Refused> {
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        // Compare against every key, without stopping at the first match.
        let mut found: Option<&StoredKey> = None;
        for k in self.config.keys.iter().chain(created.iter()) {
            if ct_eq(hash, &k.sha256) && found.is_none() {
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
            budget: k.budget,
            models: k.models.clone(),
            routes: k.routes.clone(),
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
        self.refresh(Duration::ZERO, true);
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        let cfg = self.config.keys.iter().map(|k| (k.clone(), true));
        cfg.chain(created.iter().map(|k| (k.clone(), false)))
            .collect()
    }

    /// One key by id; `true` marks a config key.
    pub fn get(&self, id: &str) -> Result<(StoredKey, bool), ApiError> {
        self.list()
            .into_iter()
            .find(|(k, _)| k.id == id)
            .ok_or_else(|| not_found(id))
    }

    /// Creates a key from `template` (its name, limits, budget, models and expiry), persists
    /// it, and returns it with the secret (shown once).
    pub fn create(&self, template: StoredKey) -> Result<(StoredKey, String), ApiError> {
        if self.redis.is_none() && self.config.keys_file.is_none() {
            return Err(ApiError::new(
                409,
                "invalid_request_error",
                "keys_file_not_configured",
                "keys created through the admin API need `auth.keys_file` (or `state.redis`) in \
                 the config, so they survive a restart; set it and restart the relay"
                    .to_string(),
            ));
        }
        let secret = format!("sk-relay-{}", hex(&random_bytes::<24>()?));
        let key = StoredKey {
            id: format!("key_{}", hex(&random_bytes::<8>()?)),
            sha256: hash_hex(&secret),
            created_at: now_secs(),
            ..template
        };
        self.save(Change::Put(key.clone()))?;
        Ok((key, secret))
    }

    /// Replaces a created key's record (same id and hash). Config keys change in the config.
    pub fn update(&self, key: StoredKey) -> Result<(), ApiError> {
        self.refuse_config_key(&key.id)?;
        self.save(Change::Put(key))
    }

    /// Revokes a created key. `Err` says why not: unknown, or defined in the config file.
    pub fn revoke(&self, id: &str) -> Result<(), ApiError> {
        self.refuse_config_key(id)?;
        self.save(Change::Delete(id.to_string()))
    }

    fn refuse_config_key(&self, id: &str) -> Result<(), ApiError> {
        if self.config.keys.iter().any(|k| k.id == id) {
            return Err(ApiError::new(
                409,
                "invalid_request_error",
                "config_key",
                format!("key `{id}` is defined in the config file; change it there and reload"),
            ));
        }
        Ok(())
    }

    /// Applies a change to Redis or `keys_file`, then to the copy in memory.
    fn save(&self, change: Change) -> Result<(), ApiError> {
        let mut created = self.created.write().unwrap_or_else(|p| p.into_inner());
        let mut next = created.clone();
        match &change {
            Change::Put(key) => match next.iter_mut().find(|k| k.id == key.id) {
                Some(old) => *old = key.clone(),
                None => next.push(key.clone()),
            },
            Change::Delete(id) => {
                let before = next.len();
                next.retain(|k| k.id != *id);
                if next.len() == before && self.redis.is_none() {
                    return Err(not_found(id));
                }
            }
        }
        match (&self.redis, &self.config.keys_file) {
            (Some(redis), _) => {
                let done = match &change {
                    Change::Put(key) => redis.put_key(key).map(|()| true),
                    Change::Delete(id) => redis.delete_key(id),
                };
                match done {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(not_found(match &change {
                            Change::Delete(id) => id,
                            Change::Put(k) => &k.id,
                        }))
                    }
                    Err(_) => return Err(unavailable()),
                }
            }
            (None, Some(path)) => keys_file::save(path, &next).map_err(ApiError::internal)?,
            (None, None) => {}
        }
        *created = next;
        Ok(())
    }
}

enum Change {
    Put(StoredKey),
    Delete(String),
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "key_not_found",
        format!("no key with id `{id}`; GET /admin/keys lists them"),
    )
}

/// The 503 when the shared state (Redis) cannot be reached.
pub fn unavailable() -> ApiError {
    ApiError::new(
        503,
        "server_error",
        "state_unavailable",
        "the relay's shared state (Redis, `state.redis`) cannot be reached, and \
         `state.on_unavailable` is `refuse`; retry shortly"
            .to_string(),
    )
}
