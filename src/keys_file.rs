//! The `keys_file`: keys created through the admin API, as the relay stores them (ids, names,
//! SHA-256 hashes, limits; never a key). Written atomically, so a crash mid-write leaves the old
//! file or the new one, never half of one: a temp file beside it, fsync, rename, fsync of the
//! folder. Mode 0600 on Unix.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits::RateLimit;

/// A key as the relay holds it: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "RateLimit::is_empty")]
    pub rate_limit: RateLimit,
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
    Ok(doc.keys)
}

/// Writes the keys file atomically: a temp file beside it, fsync, rename, fsync the folder.
pub fn save(path: &Path, keys: &[StoredKey]) -> Result<(), String> {
    let doc = KeysFile {
        keys: keys.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&doc)
        .map_err(|e| format!("cannot serialize the keys file: {e}"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keys".to_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail =
        |what: &str, e: std::io::Error| format!("cannot {what} keys_file {}: {e}", path.display());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .map_err(|e| fail("create a temp file for", e))?;
    f.write_all(&text).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
