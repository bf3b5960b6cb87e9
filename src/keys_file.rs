//! The `keys_file`: keys created through the admin API, as the relay stores them (ids, names,
//! SHA-256 hashes, limits; never a key). Written atomically, so a crash mid-write leaves the old
//! file or the new one, never half of one: a temp file beside it, fsync, rename, fsync of the
//! folder. Mode 0600 on Unix.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::glob::Glob;
use crate::limits::RateLimit;
use crate::route_policy::KeyRoute;

/// A key as the relay holds it: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "RateLimit::is_empty")]
    pub rate_limit: RateLimit,
    #[serde(default, skip_serializing_if = "Budget::is_empty")]
    pub budget: Budget,
    /// Model globs the key may call; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Glob>,
    /// Routes the key may use (`"METHOD /v1/path-glob"`); empty: the default
    /// (`route_policy::key_allows`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<KeyRoute>,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub created_at: u64,
}

/// The `keys_file` document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<StoredKey>,
}

pub fn load(path: &Path) -> Result<Vec<StoredKey>, String> {
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read keys_file {}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot open keys_file {}: {e}", path.display())),
    };
    let doc: KeysFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "keys_file {}: line {}, column {}: {e}; it is written by the relay, restore it from \
             a backup or remove it",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    check(&doc.keys).map_err(|msg| {
        let at = crate::locate::message_position(&text, &msg)
            .map_or(String::new(), |(l, c)| format!("line {l}, column {c}: "));
        format!(
            "keys_file {}: {at}{msg}; fix the entry with the admin API's rules, or remove it",
            path.display()
        )
    })?;
    Ok(doc.keys)
}

/// Checks each entry as a config key is checked, so a bad entry stops the load instead of
/// failing every request made with that key: limits positive, an id, unique ids, a SHA-256.
fn check(keys: &[StoredKey]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        k.rate_limit.check(&format!("keys[{i}].rate_limit"))?;
        if k.id.trim().is_empty() {
            return Err(format!("`keys[{i}].id` is empty"));
        }
        if keys.iter().take(i).any(|o| o.id == k.id) {
            return Err(format!("`keys[{i}].id` \"{}\" is used twice", k.id));
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if k.sha256.len() != 64 || !k.sha256.bytes().all(lower_hex) {
            return Err(format!(
                "`keys[{i}].sha256` is not a SHA-256 in lowercase hex (64 digits)"
            ));
        }
    }
    Ok(())
}

/// Writes the keys file atomically: a temp file beside it, fsync, rename, fsync the folder.
pub fn save(path: &Path, keys: &[StoredKey]) -> Result<(), String> {
    let doc = KeysFile {
        keys: keys.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&doc)
        .map_err(|e| format!("cannot serialize the keys file: {e}"))?;
    crate::util::write_atomic(path, &text, 0o600)
        .map_err(|e| format!("cannot write keys_file {}: {e}", path.display()))?;
    // the rename itself reaches the disk with the folder's metadata
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
