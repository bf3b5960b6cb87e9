//! The ownership registry: which client key created each object (file, upload, batch, stored
//! response, vector store, fine-tuning job) through the relay, by object id.
//!
//! Three backends, like the rest of the store: Redis when `state.redis` is set (one hash,
//! `llm-relay:owners`, shared by every replica), else an append-only log under `state.dir`
//! (`owners.log`, one JSON line per change, each line fsynced before the change is used, the
//! whole file read back at start; a torn last line from a crash is skipped), else memory only
//! (the relay warns at start: a restart forgets every owner, and then only the admin key sees
//! the objects). The log is compacted at start when most of its lines are stale.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{Down, Redis};
use crate::log;

/// The file under `state.dir`.
pub const LOG_FILE: &str = "owners.log";

/// One line of the log: `owner` set, or `null` when the object was deleted.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    id: String,
    owner: Option<String>,
}

/// Where owners are kept.
enum Backend {
    Memory(Mutex<HashMap<String, String>>),
    /// The map and the open log it is appended to, under one lock.
    File(Mutex<(HashMap<String, String>, File)>),
    Redis(Arc<Redis>),
}

/// Object id → owner key id.
pub struct Owners {
    backend: Backend,
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::File(_) => "file",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("Owners").field("backend", &kind).finish()
    }
}

impl Owners {
    /// Redis if given, else the log under `dir`, else memory.
    pub fn open(dir: Option<&Path>, redis: Option<Arc<Redis>>) -> Result<Owners, String> {
        let backend = match (redis, dir) {
            (Some(r), _) => Backend::Redis(r),
            (None, Some(dir)) => {
                let (map, file) = open_log(dir)
                    .map_err(|e| format!("cannot open {}: {e}", dir.join(LOG_FILE).display()))?;
                Backend::File(Mutex::new((map, file)))
            }
            (None, None) => Backend::Memory(Mutex::new(HashMap::new())),
        };
        Ok(Owners { backend })
    }

    /// True when owners live in memory only (lost on restart).
    pub fn in_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// Records `owner` as the owner of `id`.
    pub fn record(&self, id: &str, owner: &str) -> Result<(), Down> {
        self.change(id, Some(owner))
    }

    /// Forgets the owner of a deleted object.
    pub fn forget(&self, id: &str) -> Result<(), Down> {
        self.change(id, None)
    }

    fn change(&self, id: &str, owner: Option<&str>) -> Result<(), Down> {
        let apply = |map: &mut HashMap<String, String>| match owner {
            Some(o) => {
                map.insert(id.to_string(), o.to_string());
            }
            None => {
                map.remove(id);
            }
        };
        match &self.backend {
            Backend::Memory(m) => {
                apply(&mut m.lock().unwrap_or_else(|p| p.into_inner()));
                Ok(())
            }
            Backend::File(m) => {
                let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
                let (map, file) = &mut *guard;
                let line = Line {
                    id: id.to_string(),
                    owner: owner.map(str::to_string),
                };
                if let Err(e) = append(file, &line) {
                    log::error(&format!("cannot write {LOG_FILE}: {e}"));
                    return Err(Down);
                }
                apply(map);
                Ok(())
            }
            Backend::Redis(r) => match owner {
                Some(o) => r.set_owner(id, o),
                None => r.forget_owner(id),
            },
        }
    }

    /// The owner of each of `ids` (`None`: no record).
    pub fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, Down> {
        let from = |map: &HashMap<String, String>| -> Vec<Option<String>> {
            ids.iter().map(|id| map.get(*id).cloned()).collect()
        };
        match &self.backend {
            Backend::Memory(m) => Ok(from(&m.lock().unwrap_or_else(|p| p.into_inner()))),
            Backend::File(m) => Ok(from(&m.lock().unwrap_or_else(|p| p.into_inner()).0)),
            Backend::Redis(r) => r.owners_of(ids),
        }
    }

    /// `Err` while the registry cannot be reached (Redis down); the others always can.
    pub fn reachable(&self) -> Result<(), Down> {
        match &self.backend {
            Backend::Redis(r) => r.ping(),
            _ => Ok(()),
        }
    }

    /// The owner of `id`.
    pub fn owner(&self, id: &str) -> Result<Option<String>, Down> {
        Ok(self.owners(&[id])?.into_iter().next().flatten())
    }
}

/// Appends one line and makes it durable.
fn append(file: &mut File, line: &Line) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    file.sync_data()
}

/// Reads the log under `dir` (creating the directory), compacting it when most lines are
/// stale, and opens it for appending.
fn open_log(dir: &Path) -> io::Result<(HashMap<String, String>, File)> {
    std::fs::create_dir_all(dir)?;
    let path: PathBuf = dir.join(LOG_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut map = HashMap::new();
    let mut lines = 0usize;
    let mut skipped = 0usize;
    for raw in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        match crate::json::from_slice::<Line>(raw) {
            Ok(Line { id, owner: Some(o) }) => {
                map.insert(id, o);
            }
            Ok(Line { id, owner: None }) => {
                map.remove(&id);
            }
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        log::warn(&format!(
            "{}: {skipped} unreadable line(s) skipped (a write cut by a crash)",
            path.display()
        ));
    }
    if skipped > 0 || lines > 2 * map.len() + 1024 {
        let mut whole = Vec::new();
        let mut ids: Vec<&String> = map.keys().collect();
        ids.sort();
        for id in ids {
            let line = Line {
                id: id.clone(),
                owner: map.get(id).cloned(),
            };
            whole.extend(serde_json::to_vec(&line).map_err(io::Error::other)?);
            whole.push(b'\n');
        }
        crate::util::write_atomic(&path, &whole, 0o600)?;
    }
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?
    };
    Ok((map, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_survives_a_reopen_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("llm-relay-owners-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let owners = Owners::open(Some(&dir), None).unwrap();
        owners.record("file-a", "key_1").unwrap();
        owners.record("file-b", "key_2").unwrap();
        owners.forget("file-b").unwrap();
        drop(owners);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_FILE))
            .unwrap();
        f.write_all(b"{\"id\":\"file-c\",\"own").unwrap();
        drop(f);
        let owners = Owners::open(Some(&dir), None).unwrap();
        assert_eq!(
            owners.owners(&["file-a", "file-b", "file-c"]).unwrap(),
            vec![Some("key_1".to_string()), None, None]
        );
        owners.record("file-d", "key_3").unwrap();
        drop(owners);
        let owners = Owners::open(Some(&dir), None).unwrap();
        assert_eq!(owners.owner("file-d").unwrap().as_deref(), Some("key_3"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
