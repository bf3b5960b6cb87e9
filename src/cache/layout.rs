//! Where an entry's files are: `<dir>/<first two hex>/<key>.request` and its answer
//! `<key>.<sha256>.txt` (or the old layout's `<key>.txt`), the two-hex fan-out folders and the
//! walk over every entry. `store.rs` reads and writes the files; it re-exports these.

use std::fs;
use std::path::{Path, PathBuf};

use super::key::is_key;

/// The fan-out folder of `key`.
pub(super) fn folder(dir: &Path, key: &str) -> PathBuf {
    dir.join(key.get(..2).unwrap_or("__"))
}

/// `<dir>/<first two hex>/<key>.request`: the file whose rename publishes an entry.
pub fn request_path(dir: &Path, key: &str) -> PathBuf {
    // built in one buffer (a memory entry keeps its own: `Entry::request`)
    let mut name = String::with_capacity(key.len() + 8);
    name.push_str(key);
    name.push_str(".request");
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + name.len() + 4);
    path.push(dir);
    path.push(key.get(..2).unwrap_or("__"));
    path.push(name);
    path
}

/// `<dir>/<first two hex>/<key>.<sha256>.txt`: an answer of `key`, named by its checksum.
pub fn answer_path(dir: &Path, key: &str, sha256: &str) -> PathBuf {
    folder(dir, key).join(format!("{key}.{sha256}.txt"))
}

/// `<dir>/<first two hex>/<key>.txt`: where relays before the content-named layout kept the
/// answer. Still read when the named answer is not there (and renamed by `cache scan`).
pub fn old_answer_path(dir: &Path, key: &str) -> PathBuf {
    folder(dir, key).join(format!("{key}.txt"))
}

/// The key of an answer file's name, and its checksum (`None` for the old `<key>.txt`).
pub fn parse_answer_name(name: &str) -> Option<(&str, Option<&str>)> {
    let stem = name.strip_suffix(".txt")?;
    if is_key(stem) {
        return Some((stem, None));
    }
    let (key, sha) = stem.split_once('.')?;
    (is_key(key) && is_key(sha)).then_some((key, Some(sha)))
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
