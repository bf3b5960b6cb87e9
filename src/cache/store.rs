//! The entry files: `<dir>/<first two hex>/<key>.request` and `<key>.txt`, written atomically.
//!
//! `.request` holds one line of metadata (route, writing version, created time) and then the
//! canonical request; `.txt` holds the response exactly as the upstream sent it (a JSON body,
//! or the SSE text of a stream). Each file is written to a unique temp file in the same
//! folder, fsynced, then renamed into place, `.txt` first and `.request` last: an entry exists
//! only once its `.request` does, and a rename never exposes a half-written file. A crash
//! between the two renames leaves an orphan `.txt`, which lookups ignore and the scan
//! quarantines. The two-hex fan-out keeps every folder small at a million entries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

/// The `.request` and `.txt` paths of `key` under `dir`.
pub fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let sub = dir.join(&key[..2]);
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
    let (req_path, txt_path) = paths(dir, key);
    if let Some(sub) = req_path.parent() {
        fs::create_dir_all(sub)?;
    }
    let mut head = serde_json::to_vec(meta).map_err(io::Error::other)?;
    head.push(b'\n');
    head.extend_from_slice(request);
    head.push(b'\n');
    write_atomic(&txt_path, response)?;
    write_atomic(&req_path, &head)
}

/// Reads the metadata line of a `.request` file's contents.
pub fn parse_meta(request_file: &[u8]) -> Option<Meta> {
    let line = request_file.split(|&b| b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// True for a complete `.request` file: the metadata line and the canonical request line.
pub fn request_file_ok(request_file: &[u8]) -> bool {
    let Some(body) = request_file.strip_suffix(b"\n") else {
        return false;
    };
    let mut lines = body.split(|&b| b == b'\n');
    let (Some(meta), Some(request), None) = (lines.next(), lines.next(), lines.next()) else {
        return false;
    };
    serde_json::from_slice::<Meta>(meta).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(request).is_ok()
}

/// Loads an entry: its metadata and response, or `None` if it does not exist (or is only
/// half there).
pub fn load(dir: &Path, key: &str) -> Option<(Meta, Vec<u8>)> {
    let (req_path, txt_path) = paths(dir, key);
    let request = fs::read(&req_path).ok()?;
    let meta = parse_meta(&request)?;
    let response = fs::read(&txt_path).ok()?;
    Some((meta, response))
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
