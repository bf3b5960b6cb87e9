//! The entry files: `<dir>/<first two hex>/<key>.request` and `<key>.txt`, written atomically.
//!
//! `.request` holds one line of metadata (route, scope, writing version, created time, the
//! SHA-256 of the response, and the recording key's id) and then the canonical request; `.txt` holds the response exactly
//! as the upstream sent it (a JSON body, or the SSE text of a stream). [`verify`] binds the
//! three together: the key must be the hash of the route, scope and canonical request, and the
//! response must have the recorded checksum, so a swapped, truncated or foreign file is never
//! served. Each file is written to a unique temp file in the same
//! folder, fsynced, then renamed into place, `.txt` first and `.request` last: an entry exists
//! only once its `.request` does, and a rename never exposes a half-written file. A crash
//! between the two renames leaves an orphan `.txt`, which lookups ignore and the scan
//! quarantines. The two-hex fan-out keeps every folder small at a million entries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::key::{checksum, entry_key, is_key};

/// Suffix of in-progress writes; the scan removes old ones left by a crash.
pub use crate::util::TEMP_SUFFIX;

/// The first line of a `.request` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// API route, e.g. `/chat/completions`.
    pub route: String,
    /// `cache.version` of the relay that wrote the entry.
    pub version: u32,
    /// Unix time in seconds (millisecond precision) when the entry was written.
    pub created: f64,
    /// `""` for the shared scope, else the hashed client credential (`cache.scope: "key"`).
    #[serde(default)]
    pub scope: String,
    /// SHA-256 (hex) of the `.txt` file: binds the response to this request.
    #[serde(default)]
    pub sha256: String,
    /// The id of the client key whose request was recorded (absent with auth off, and in
    /// entries written before it existed): only that key sees the recorded values in a
    /// `cache_miss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
}

/// The `.request` and `.txt` paths of `key` under `dir`.
pub fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let sub = dir.join(key.get(..2).unwrap_or("__"));
    (
        sub.join(format!("{key}.request")),
        sub.join(format!("{key}.txt")),
    )
}

/// Writes `bytes` to `path` atomically (unique temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::util::write_atomic(path, bytes, 0o666)
}

/// Stores one entry: the response first, then the request file that commits it.
pub fn save(dir: &Path, key: &str, meta: &Meta, request: &[u8], response: &[u8]) -> io::Result<()> {
    let mut head = serde_json::to_vec(meta).map_err(io::Error::other)?;
    head.push(b'\n');
    head.extend_from_slice(request);
    head.push(b'\n');
    save_files(dir, key, &head, response)
}

/// Writes an entry's two files as they are (`.txt` first, `.request` last, each atomically).
pub fn save_files(dir: &Path, key: &str, request_file: &[u8], response: &[u8]) -> io::Result<()> {
    let (req_path, txt_path) = paths(dir, key);
    if let Some(sub) = req_path.parent() {
        fs::create_dir_all(sub)?;
    }
    write_atomic(&txt_path, response)?;
    write_atomic(&req_path, request_file)
}

/// True when both files of `key` are older than `grace` (no writer is between its renames).
pub fn settled(dir: &Path, key: &str, grace: std::time::Duration) -> bool {
    let (req_path, txt_path) = paths(dir, key);
    let now = std::time::SystemTime::now();
    [req_path, txt_path].iter().all(|p| {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or(true, |age| age >= grace)
    })
}

/// Reads the metadata line of a `.request` file's contents.
pub fn parse_meta(request_file: &[u8]) -> Option<Meta> {
    let line = request_file.split(|&b| b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// A complete `.request` file split into its metadata and canonical request line.
pub fn split_request(request_file: &[u8]) -> Option<(Meta, &[u8])> {
    let body = request_file.strip_suffix(b"\n")?;
    let mut lines = body.split(|&b| b == b'\n');
    let (Some(meta), Some(request), None) = (lines.next(), lines.next(), lines.next()) else {
        return None;
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(request).ok()?;
    Some((serde_json::from_slice::<Meta>(meta).ok()?, request))
}

/// Checks that a `.request` file and a response form the entry `key`: complete, bound to the
/// key by the hash of route, scope and canonical request, and to the response by its checksum.
/// Returns the metadata, or why the pair must not be served.
pub fn verify(key: &str, request_file: &[u8], response: &[u8]) -> Result<Meta, &'static str> {
    let (meta, request) = split_request(request_file).ok_or("incomplete request file")?;
    if meta.sha256.is_empty() {
        return Err("entry without checksum (older format)");
    }
    if entry_key(&meta.route, &meta.scope, request) != key {
        return Err("request does not match its key");
    }
    if checksum(response) != meta.sha256 {
        return Err("response does not match its checksum");
    }
    Ok(meta)
}

/// What reading an entry found.
pub enum Loaded {
    /// No entry (or only half of one: a write in progress or debris for the scan).
    Absent,
    /// The pair is there but must not be served, and why.
    Bad(&'static str),
    Found(Meta, Vec<u8>),
}

/// Reads and verifies the entry `key`.
pub fn load(dir: &Path, key: &str) -> Loaded {
    let (req_path, txt_path) = paths(dir, key);
    let (Ok(request), Ok(response)) = (fs::read(&req_path), fs::read(&txt_path)) else {
        return Loaded::Absent;
    };
    match verify(key, &request, &response) {
        Ok(meta) => Loaded::Found(meta, response),
        Err(why) => Loaded::Bad(why),
    }
}

/// Moves the files of `key` (those that exist) to `<dir>/quarantine/`; nothing is deleted, so
/// a bad entry can be inspected.
pub fn quarantine_entry(dir: &Path, key: &str) {
    let (req_path, txt_path) = paths(dir, key);
    for f in [&req_path, &txt_path] {
        if f.exists() {
            quarantine(dir, f);
        }
    }
}

/// Moves one file to `<dir>/quarantine/`.
pub fn quarantine(dir: &Path, file: &Path) {
    let qdir = dir.join("quarantine");
    let _ = fs::create_dir_all(&qdir);
    if let Some(name) = file.file_name() {
        let _ = fs::rename(file, qdir.join(name));
    }
}

/// Removes an entry (request file first, so it stops existing before its response goes).
/// Returns the bytes freed.
pub fn remove(dir: &Path, key: &str) -> u64 {
    let (req_path, txt_path) = paths(dir, key);
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let freed = size(&req_path) + size(&txt_path);
    let _ = fs::remove_file(&req_path);
    let _ = fs::remove_file(&txt_path);
    freed
}

/// Every entry under `dir`: its key and the path of its `.request` file (which may have gone
/// by the time it is read), folder by folder.
pub fn entries(dir: &Path) -> impl Iterator<Item = (String, PathBuf)> {
    fan_out_dirs(dir)
        .into_iter()
        .flat_map(|sub| fs::read_dir(sub).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name.strip_suffix(".request").filter(|k| is_key(k))?;
            Some((key.to_string(), e.path()))
        })
}

/// Every fan-out folder under `dir` (two hex digits).
pub fn fan_out_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().is_dir()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}
