//! Stored translated responses: the Response object the relay answered a translated
//! `/v1/responses` request with, and that request's input, by response id, for
//! `state.responses_store_days` (`stored.rs` uses them).
//!
//! Three backends, as the ownership registry: Redis when `state.redis` is set (one key per
//! response, `llm-relay:response:<id>`, expiring by itself), else one file per response under
//! `state.dir/responses/` (written atomically; expired ones are removed when read and at start),
//! bounded to [`MAX_FILE_BYTES`] of files (the oldest are removed first), else memory, bounded to
//! [`MAX_MEMORY_BYTES`] of JSON (the oldest are dropped first).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Down, Redis};
use crate::log;

/// The directory under `state.dir`.
pub const DIR: &str = "responses";

/// The most JSON the memory backend keeps (the oldest responses are dropped first).
pub const MAX_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// The most the files backend keeps under `state.dir/responses/` (the oldest files are removed
/// first); counted by this relay process: the files there at start and what it writes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024 * 1024;

/// One stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The Response object as the client got it.
    pub response: Value,
    /// The request's own input items (what `input_items` lists).
    pub input: Vec<Value>,
    /// The whole conversation before the answer: the previous responses' inputs and outputs
    /// (from `previous_response_id`) followed by `input`.
    pub context: Vec<Value>,
    /// Unix time in seconds after which it is gone.
    pub expires: u64,
}

struct Memory {
    map: HashMap<String, (Stored, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

/// The files of the files backend, oldest first, with their sizes.
struct FileIndex {
    order: VecDeque<(String, usize)>,
    bytes: usize,
    cap: usize,
}

impl FileIndex {
    /// Counts `id` as `size` bytes, newest; the ids of the oldest files past the cap, to remove.
    fn add(&mut self, id: &str, size: usize) -> Vec<String> {
        self.forget(id);
        self.order.push_back((id.to_string(), size));
        self.bytes += size;
        let mut over = Vec::new();
        while self.bytes > self.cap {
            let Some((oldest, size)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= size;
            over.push(oldest);
        }
        over
    }

    fn forget(&mut self, id: &str) {
        if let Some(at) = self.order.iter().position(|(k, _)| k == id) {
            if let Some((_, size)) = self.order.remove(at) {
                self.bytes -= size;
            }
        }
    }
}

enum Backend {
    Memory(Mutex<Memory>),
    Files(PathBuf, Mutex<FileIndex>),
    Redis(Arc<Redis>),
}

/// Response id → stored response.
pub struct Responses {
    backend: Backend,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Files(..) => "files",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("Responses").field("backend", &kind).finish()
    }
}

/// Ids the relay makes are `resp_` and letters, digits, `-`, `_`; anything else is no file.
fn safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Responses {
    /// Redis if given, else files under `dir`, else memory.
    pub fn open(dir: Option<&Path>, redis: Option<Arc<Redis>>) -> Result<Responses, String> {
        Responses::open_capped(dir, redis, MAX_FILE_BYTES)
    }

    /// [`open`](Responses::open) with the files backend bounded to `cap` bytes.
    fn open_capped(
        dir: Option<&Path>,
        redis: Option<Arc<Redis>>,
        cap: usize,
    ) -> Result<Responses, String> {
        let backend = match (redis, dir) {
            (Some(r), _) => Backend::Redis(r),
            (None, Some(dir)) => {
                let dir = dir.join(DIR);
                let live =
                    sweep(&dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
                let mut index = FileIndex {
                    order: VecDeque::new(),
                    bytes: 0,
                    cap,
                };
                for (id, size) in live {
                    for over in index.add(&id, size) {
                        let _ = std::fs::remove_file(dir.join(format!("{over}.json")));
                    }
                }
                Backend::Files(dir, Mutex::new(index))
            }
            (None, None) => Backend::Memory(Mutex::new(Memory {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            })),
        };
        Ok(Responses { backend })
    }

    /// Keeps `stored` under `id` until `stored.expires`.
    pub fn put(&self, id: &str, stored: &Stored) -> Result<(), Down> {
        let bytes = serde_json::to_vec(stored).map_err(|_| Down)?;
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                if bytes.len() > MAX_MEMORY_BYTES {
                    return Ok(());
                }
                if let Some((_, size)) = m.map.remove(id) {
                    m.bytes -= size;
                    m.order.retain(|k| k != id);
                }
                while m.bytes + bytes.len() > MAX_MEMORY_BYTES {
                    let Some(oldest) = m.order.pop_front() else {
                        break;
                    };
                    if let Some((_, size)) = m.map.remove(&oldest) {
                        m.bytes -= size;
                    }
                }
                m.bytes += bytes.len();
                m.order.push_back(id.to_string());
                m.map.insert(id.to_string(), (stored.clone(), bytes.len()));
                Ok(())
            }
            Backend::Files(dir, index) => {
                let cap = index.lock().unwrap_or_else(|p| p.into_inner()).cap;
                if !safe(id) || bytes.len() > cap {
                    return Ok(());
                }
                let path = dir.join(format!("{id}.json"));
                crate::util::write_atomic(&path, &bytes, 0o600).map_err(|e| {
                    log::error(&format!("cannot write {}: {e}", path.display()));
                    Down
                })?;
                let over = index
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(id, bytes.len());
                for oldest in over {
                    let _ = std::fs::remove_file(dir.join(format!("{oldest}.json")));
                }
                Ok(())
            }
            Backend::Redis(r) => {
                let ttl = stored
                    .expires
                    .saturating_sub(crate::util::now_secs())
                    .max(1);
                r.put_response(id, &bytes, ttl)
            }
        }
    }

    /// The stored response `id`, if kept and not expired.
    pub fn get(&self, id: &str) -> Result<Option<Stored>, Down> {
        let now = crate::util::now_secs();
        let found = match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.map.get(id).map(|(s, _)| s.clone())
            }
            Backend::Files(dir, _) => {
                if !safe(id) {
                    return Ok(None);
                }
                match std::fs::read(dir.join(format!("{id}.json"))) {
                    Ok(bytes) => crate::json::from_slice::<Stored>(&bytes).ok(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => {
                        log::error(&format!("cannot read stored response {id}: {e}"));
                        return Err(Down);
                    }
                }
            }
            Backend::Redis(r) => r
                .response(id)?
                .and_then(|bytes| crate::json::from_slice::<Stored>(&bytes).ok()),
        };
        match found {
            Some(s) if s.expires <= now => {
                self.delete(id)?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Removes the stored response `id`; true if it was kept.
    pub fn delete(&self, id: &str) -> Result<bool, Down> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let Some((_, size)) = m.map.remove(id) else {
                    return Ok(false);
                };
                m.bytes -= size;
                m.order.retain(|k| k != id);
                Ok(true)
            }
            Backend::Files(dir, index) => {
                if !safe(id) {
                    return Ok(false);
                }
                index.lock().unwrap_or_else(|p| p.into_inner()).forget(id);
                match std::fs::remove_file(dir.join(format!("{id}.json"))) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                    Err(e) => {
                        log::error(&format!("cannot remove stored response {id}: {e}"));
                        Err(Down)
                    }
                }
            }
            Backend::Redis(r) => r.delete_response(id),
        }
    }
}

/// Creates `dir`, removes the expired (or unreadable) responses in it, and returns the others
/// (id, size in bytes), oldest first.
fn sweep(dir: &Path) -> io::Result<Vec<(String, usize)>> {
    std::fs::create_dir_all(dir)?;
    let now = crate::util::now_secs();
    let mut live = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        let kept = crate::json::from_slice::<Stored>(&bytes)
            .ok()
            .is_some_and(|s| s.expires > now);
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string);
        match id.filter(|id| kept && safe(id)) {
            Some(id) => {
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                live.push((modified, id, bytes.len()));
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    live.sort();
    Ok(live.into_iter().map(|(_, id, size)| (id, size)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(expires: u64) -> Stored {
        Stored {
            response: json!({"id": "resp_a"}),
            input: vec![json!({"role": "user", "content": "hi"})],
            context: vec![],
            expires,
        }
    }

    #[test]
    fn files_survive_a_reopen_and_expire() {
        let dir = std::env::temp_dir().join(format!("llm-relay-responses-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let later = crate::util::now_secs() + 100;
        let r = Responses::open(Some(&dir), None).unwrap();
        r.put("resp_a", &stored(later)).unwrap();
        r.put("resp_old", &stored(1)).unwrap();
        r.put("../x", &stored(later)).unwrap();
        drop(r);
        let r = Responses::open(Some(&dir), None).unwrap();
        assert!(r.get("resp_a").unwrap().is_some());
        assert!(r.get("resp_old").unwrap().is_none());
        assert!(!dir.join(DIR).join("resp_old.json").exists());
        assert!(r.get("../x").unwrap().is_none());
        assert!(r.delete("resp_a").unwrap());
        assert!(r.get("resp_a").unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_remove_the_oldest_past_their_bound_also_after_a_reopen() {
        let dir =
            std::env::temp_dir().join(format!("llm-relay-responses-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let later = crate::util::now_secs() + 100;
        let mut big = stored(later);
        big.response = json!({"text": "x".repeat(1000)});
        let size = serde_json::to_vec(&big).unwrap().len();
        let file = |id: &str| dir.join(DIR).join(format!("{id}.json"));
        let r = Responses::open_capped(Some(&dir), None, 3 * size).unwrap();
        for id in ["resp_1", "resp_2", "resp_3", "resp_4"] {
            r.put(id, &big).unwrap();
        }
        assert!(r.get("resp_1").unwrap().is_none());
        assert!(!file("resp_1").exists());
        assert!(r.get("resp_4").unwrap().is_some());
        // a rewrite counts once; a delete gives its room back
        r.put("resp_4", &big).unwrap();
        assert!(r.delete("resp_3").unwrap());
        r.put("resp_5", &big).unwrap();
        assert!(r.get("resp_2").unwrap().is_some());
        drop(r);
        // reopened with less room: the oldest files go first
        let r = Responses::open_capped(Some(&dir), None, 2 * size).unwrap();
        assert!(!file("resp_2").exists());
        assert!(r.get("resp_4").unwrap().is_some() && r.get("resp_5").unwrap().is_some());
        // an answer larger than the whole bound is not kept
        let mut huge = stored(later);
        huge.response = json!({"text": "x".repeat(3 * size)});
        r.put("resp_6", &huge).unwrap();
        assert!(r.get("resp_6").unwrap().is_none());
        assert!(r.get("resp_5").unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_drops_the_oldest_past_its_bound() {
        let r = Responses::open(None, None).unwrap();
        let later = crate::util::now_secs() + 100;
        let mut big = stored(later);
        big.response = json!({"text": "x".repeat(MAX_MEMORY_BYTES / 3)});
        for id in ["resp_1", "resp_2", "resp_3", "resp_4"] {
            r.put(id, &big).unwrap();
        }
        assert!(r.get("resp_1").unwrap().is_none());
        assert!(r.get("resp_4").unwrap().is_some());
    }
}
