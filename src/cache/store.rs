//! The entry files: `<dir>/<first two hex>/<key>.request` and the answer it refers to,
//! `<key>.<sha256 of the answer>.txt`, published in one atomic step.
//!
//! `.request` holds one line of metadata (route, scope, writing version, created time, the
//! SHA-256 of the response, and the recording key's id) and then the canonical request; the answer file holds the response
//! exactly as the upstream sent it (a JSON body, or the SSE text of a stream), under a name its
//! checksum gives. [`verify`] binds the three together: the key must be the hash of the route,
//! scope and canonical request, and the response must have the recorded checksum, so a
//! swapped, truncated or foreign file is never served.
//!
//! Publication invariant: an entry is published by exactly one rename, that of its `.request`.
//! Each file is written to a temp file unique across hosts and containers
//! (`util::temp_name`), fsynced (not with `cache.durability: "none"`), then renamed into place; the answer first, under its checksum
//! name, and the `.request` last. So whatever writers race on one key (refreshes, replicas on
//! one directory) and wherever a `kill -9` lands, the `.request` in place always names an
//! answer that was whole before it was published. Answers no `.request` refers to any more
//! (replaced, or left by a crash before the last rename) are collected by the scan once they
//! and the `.request` of their key are past its grace period. Entries of the older layout
//! (`<key>.txt`) are still read, and `cache scan` renames their answer to the new name. The
//! two-hex fan-out keeps every folder small at a million entries.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::key::{checksum, is_key, variant_key, Variant};
use super::layout::folder;
pub use super::layout::{
    answer_path, entries, fan_out_dirs, old_answer_path, parse_answer_name, request_path,
};

/// Suffix of in-progress writes; the scan removes old ones left by a crash.
pub use crate::util::TEMP_SUFFIX;

/// The first line of a `.request` file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// `X-Relay-Cache-Namespace` it was recorded under (part of the key); empty: shared.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its sample index (`X-Relay-Cache-Sample`, part of the key) when 2 or more.
    #[serde(default, skip_serializing_if = "is_first_sample")]
    pub sample: u32,
    /// For a stream: milliseconds before each event (the first counted from the start of the
    /// upstream call), for `X-Relay-Cache-Timing`. Not part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps_ms: Vec<u32>,
}

fn is_first_sample(n: &u32) -> bool {
    *n <= 1
}

impl Meta {
    /// Whether `namespace` (`None`: every namespace) selects this entry (`--namespace`).
    pub fn selected_by(&self, namespace: Option<&str>) -> bool {
        namespace.map_or(true, |ns| ns == self.namespace)
    }

    /// The namespace and sample this entry is.
    pub fn variant(&self) -> Variant {
        Variant {
            namespace: self.namespace.clone(),
            sample: self.sample,
        }
    }
}

/// The identity of a published `.request` file: device, inode, modification time and length.
/// A rename keeps a file's inode and time, so the stamp taken from a temp file as written is
/// the stamp of the `.request` it became, until another write replaces it. The memory tier
/// compares stamps to notice an entry another replica (or a refresh) published since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    modified_ns: i128,
    len: u64,
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        let modified_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Stamp {
            dev,
            ino,
            modified_ns,
            len: m.len(),
        }
    }

    /// How long ago the file was written (zero for a time in the future).
    pub fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Duration::from_nanos(u64::try_from(now - self.modified_ns).unwrap_or(0))
    }
}

/// How long ago the file at `path` was last modified (zero for a time in the future).
pub fn age(path: &Path) -> Option<Duration> {
    let t = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(
        SystemTime::now()
            .duration_since(t)
            .unwrap_or(Duration::ZERO),
    )
}

/// Writes `bytes` to `path` atomically (unique temp file, fsync, rename); returns the file's
/// metadata as written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<fs::Metadata> {
    crate::util::write_atomic(path, bytes, 0o666)
}

/// Stores one entry (see [`save_files`]; `sync`: fsync each file, `cache.durability`); returns
/// the stamp of its `.request`.
pub fn save(
    dir: &Path,
    key: &str,
    meta: &Meta,
    request: &[u8],
    response: &[u8],
    sync: bool,
) -> io::Result<Stamp> {
    let mut head = serde_json::to_vec(meta).map_err(io::Error::other)?;
    head.push(b'\n');
    head.extend_from_slice(request);
    head.push(b'\n');
    if !is_key(&meta.sha256) {
        return Err(io::Error::other("the entry's metadata has no checksum"));
    }
    publish(dir, key, &meta.sha256, &head, response, sync)
}

/// Publishes an entry's two files in one atomic step: the answer first, under the name its
/// checksum gives (`<key>.<sha256>.txt`, written whole, fsynced, renamed), then the `.request`,
/// whose metadata carries that checksum, so its rename publishes the pair. Two writers of one
/// key each publish a whole pair; the last rename wins and the other's answer, no longer
/// referred to, is collected by the scan. Returns the stamp of the `.request` written.
pub fn save_files(
    dir: &Path,
    key: &str,
    request_file: &[u8],
    response: &[u8],
) -> io::Result<Stamp> {
    let sha = parse_meta(request_file)
        .map(|m| m.sha256)
        .filter(|s| is_key(s))
        .ok_or_else(|| io::Error::other("the entry's metadata has no checksum"))?;
    publish(dir, key, &sha, request_file, response, true)
}

/// [`save_files`] with the checksum known (`sync`: fsync each file before its rename).
fn publish(
    dir: &Path,
    key: &str,
    sha: &str,
    request_file: &[u8],
    response: &[u8],
    sync: bool,
) -> io::Result<Stamp> {
    fs::create_dir_all(folder(dir, key))?;
    let write =
        |path: &Path, bytes: &[u8]| crate::util::write_atomic_synced(path, bytes, 0o666, sync);
    write(&answer_path(dir, key, sha), response)?;
    write(&request_path(dir, key), request_file).map(|m| Stamp::of(&m))
}

/// The answer file the `.request` of `key` refers to now, if both are there (without reading
/// the answer).
pub fn referenced_answer(dir: &Path, key: &str) -> Option<PathBuf> {
    let meta = parse_meta(&fs::read(request_path(dir, key)).ok()?)?;
    let named = is_key(&meta.sha256).then(|| answer_path(dir, key, &meta.sha256));
    named
        .into_iter()
        .chain([old_answer_path(dir, key)])
        .find(|p| p.exists())
}

/// The stamp of the `.request` of `key` now, if there is one.
pub fn stamp(dir: &Path, key: &str) -> Option<Stamp> {
    stamp_of(&request_path(dir, key))
}

/// The stamp of the `.request` file at `path` now, if there is one.
pub fn stamp_of(path: &Path) -> Option<Stamp> {
    fs::metadata(path).ok().map(|m| Stamp::of(&m))
}

/// An entry's files as read: the `.request` (and its stamp), the answer file it refers to.
pub struct Pair {
    pub request: Vec<u8>,
    pub stamp: Stamp,
    pub answer: PathBuf,
    pub response: Vec<u8>,
}

/// What reading an entry's files found.
pub enum Read {
    /// No `.request`: no entry.
    NoRequest,
    /// A `.request` whose answer is not there (an old-layout write between its renames, or
    /// debris), with the stamp of the `.request` read.
    NoAnswer(Stamp),
    Both(Pair),
}

/// Reads the `.request` of `key`, then the answer its checksum names (else the old-layout
/// `<key>.txt`). The stamp is taken from the open file, so it is that of the bytes read.
pub fn read(dir: &Path, key: &str) -> Read {
    let Ok(mut f) = fs::File::open(request_path(dir, key)) else {
        return Read::NoRequest;
    };
    let mut request = Vec::new();
    let (Ok(m), Ok(_)) = (f.metadata(), f.read_to_end(&mut request)) else {
        return Read::NoRequest;
    };
    let stamp = Stamp::of(&m);
    let named = parse_meta(&request)
        .map(|m| m.sha256)
        .filter(|s| is_key(s))
        .map(|sha| answer_path(dir, key, &sha));
    for answer in named.into_iter().chain([old_answer_path(dir, key)]) {
        if let Ok(response) = fs::read(&answer) {
            return Read::Both(Pair {
                request,
                stamp,
                answer,
                response,
            });
        }
    }
    Read::NoAnswer(stamp)
}

/// Reads the metadata line of a `.request` file's contents.
pub fn parse_meta(request_file: &[u8]) -> Option<Meta> {
    let line = request_file.split(|&b| b == b'\n').next()?;
    crate::json::from_slice(line).ok()
}

/// A complete `.request` file split into its metadata and canonical request line.
pub fn split_request(request_file: &[u8]) -> Option<(Meta, &[u8])> {
    let body = request_file.strip_suffix(b"\n")?;
    let mut lines = body.split(|&b| b == b'\n');
    let (Some(meta), Some(request), None) = (lines.next(), lines.next(), lines.next()) else {
        return None;
    };
    crate::json::from_slice::<serde::de::IgnoredAny>(request).ok()?;
    Some((crate::json::from_slice::<Meta>(meta).ok()?, request))
}

/// Checks that a `.request` file and a response form the entry `key`: complete, bound to the
/// key by the hash of route, scope and canonical request, and to the response by its checksum.
/// Returns the metadata, or why the pair must not be served.
pub fn verify(key: &str, request_file: &[u8], response: &[u8]) -> Result<Meta, &'static str> {
    let (meta, request) = split_request(request_file).ok_or("incomplete request file")?;
    if meta.sha256.is_empty() {
        return Err("entry without checksum (older format)");
    }
    if variant_key(&meta.route, &meta.scope, &meta.variant(), request) != key {
        return Err("request does not match its key");
    }
    if checksum(response) != meta.sha256 {
        return Err("response does not match its checksum");
    }
    Ok(meta)
}

/// The files a failed check was about: the `.request` as read (its stamp) and its answer.
#[derive(Debug, Clone)]
pub struct Judged {
    pub stamp: Stamp,
    pub answer: PathBuf,
}

impl Judged {
    /// True when both files are older than `grace`: no writer can still be at work on them.
    pub fn settled(&self, grace: Duration) -> bool {
        let answer_age = age(&self.answer).unwrap_or(Duration::MAX);
        self.stamp.age() >= grace && answer_age >= grace
    }
}

/// What reading an entry found.
pub enum Loaded {
    /// No entry (or only half of one: debris for the scan).
    Absent,
    /// The pair is there but must not be served, and why.
    Bad(&'static str, Judged),
    Found(Meta, Pair),
}

/// Reads and verifies the entry `key`. A `.request` replaced while it was being read (its
/// answer gone, or the pair failing its checks, and the stamp changed since) is read again,
/// so a write on another replica is never mistaken for a bad entry.
pub fn load(dir: &Path, key: &str) -> Loaded {
    for _ in 0..3 {
        match read(dir, key) {
            Read::NoRequest => return Loaded::Absent,
            Read::NoAnswer(seen) => {
                if stamp(dir, key) == Some(seen) {
                    return Loaded::Absent;
                }
            }
            Read::Both(pair) => match verify(key, &pair.request, &pair.response) {
                Ok(meta) => return Loaded::Found(meta, pair),
                Err(why) => {
                    if stamp(dir, key) == Some(pair.stamp) {
                        let judged = Judged {
                            stamp: pair.stamp,
                            answer: pair.answer,
                        };
                        return Loaded::Bad(why, judged);
                    }
                }
            },
        }
    }
    Loaded::Absent
}

/// Moves the judged files of `key` to `<dir>/quarantine/` if its `.request` is still the one
/// judged (a newer one published since is left alone). Nothing is deleted, so a bad entry can
/// be inspected. Returns whether it moved them.
pub fn quarantine_judged(dir: &Path, key: &str, judged: &Judged) -> bool {
    if stamp(dir, key) != Some(judged.stamp) {
        return false;
    }
    quarantine(dir, &request_path(dir, key));
    quarantine(dir, &judged.answer);
    true
}

/// Moves one file to `<dir>/quarantine/`.
pub fn quarantine(dir: &Path, file: &Path) {
    let qdir = dir.join("quarantine");
    let _ = fs::create_dir_all(&qdir);
    if let Some(name) = file.file_name() {
        let _ = fs::rename(file, qdir.join(name));
    }
}

/// Removes an entry (request file first, so it stops existing before its answer goes).
/// Returns the bytes freed.
pub fn remove(dir: &Path, key: &str) -> u64 {
    let req_path = request_path(dir, key);
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let named = fs::read(&req_path)
        .ok()
        .and_then(|b| parse_meta(&b))
        .map(|m| m.sha256)
        .filter(|s| is_key(s))
        .map(|sha| answer_path(dir, key, &sha));
    let mut freed = size(&req_path);
    let _ = fs::remove_file(&req_path);
    for answer in named.into_iter().chain([old_answer_path(dir, key)]) {
        let n = size(&answer);
        if fs::remove_file(&answer).is_ok() {
            freed += n;
        }
    }
    freed
}
