//! The scan lease: one replica at a time walks a shared cache directory.
//!
//! `<dir>/scan.lock` is created exclusively by the process that scans, holding its owner
//! tag (host, random nonce, PID: unique across containers that all run as PID 1). The holder
//! renews it (touches its time) after every fan-out folder; a lock not renewed for [`LEASE`]
//! belongs to a process that died, and so does one whose holder was a process of this host
//! that is not running any more (`holder_gone`): the next one steals it: it renames the lock aside to a
//! unique name, checks that what it took is still the stale lock (else it puts it back), and
//! creates its own. A scan that finishes touches `<dir>/scan.done`, so a replica that left
//! the start-up scan to another knows when one ran (and takes it over if none did within the
//! lease). The lease saves work only: the scan is safe even when two run at once
//! (grace periods and re-checks, see `scan.rs`), so a stolen lease never breaks anything.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::store::age;

/// How long a lock may go without renewal before another process may steal it.
pub const LEASE: Duration = Duration::from_secs(60);

const LOCK_FILE: &str = "scan.lock";
/// Touched when a scan holding the lease finishes: replicas that left the start-up scan to
/// another see from it that one ran.
const DONE_FILE: &str = "scan.done";

/// The scan lease, held until dropped (the lock file is removed if it is still ours).
pub struct Lease {
    path: PathBuf,
    owner: String,
}

/// Who holds the lease and how long ago they renewed it (for the log and the command).
pub struct Held {
    pub owner: String,
    pub renewed: Duration,
}

impl Lease {
    /// Takes the lease of `dir`, or says who holds it.
    pub fn take(dir: &Path) -> Result<Lease, Held> {
        let path = dir.join(LOCK_FILE);
        let owner = format!("{} {}", crate::util::process_tag(), std::process::id());
        for _ in 0..3 {
            let created = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            match created {
                Ok(mut f) => {
                    let _ = f.write_all(owner.as_bytes());
                    return Ok(Lease { path, owner });
                }
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Held {
                        owner: format!("nobody: cannot create {}: {e}", path.display()),
                        renewed: Duration::ZERO,
                    });
                }
                Err(_) => {}
            }
            let Some(renewed) = age(&path) else {
                continue; // gone meanwhile: try to create it again
            };
            let judged = fs::read_to_string(&path).unwrap_or_default();
            if renewed < LEASE && !holder_gone(&judged) {
                return Err(Held {
                    owner: judged,
                    renewed,
                });
            }
            // stale: take it aside under a unique name, then check it was the stale one
            let aside = path.with_file_name(crate::util::temp_name(LOCK_FILE));
            if fs::rename(&path, &aside).is_err() {
                continue;
            }
            let taken = fs::read_to_string(&aside).unwrap_or_default();
            let live = age(&aside).is_some_and(|a| a < LEASE) && !holder_gone(&taken);
            if taken != judged || live {
                // a live lock replaced the stale one between the check and the rename: back
                // (unless yet another appeared), and leave it to its holder
                let _ = fs::hard_link(&aside, &path);
                let _ = fs::remove_file(&aside);
                let owner = fs::read_to_string(&path).unwrap_or_default();
                return Err(Held {
                    owner,
                    renewed: Duration::ZERO,
                });
            }
            let _ = fs::remove_file(&aside);
        }
        Err(Held {
            owner: fs::read_to_string(&path).unwrap_or_default(),
            renewed: Duration::ZERO,
        })
    }

    fn ours(&self) -> bool {
        fs::read_to_string(&self.path).is_ok_and(|o| o == self.owner)
    }

    /// Renews the lease (if it is still ours).
    pub fn renew(&self) {
        if self.ours() {
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&self.path) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }
}

/// Whether the holder `owner` (a lock's text) is a process of this host that is no longer
/// running: its PID is ours (an earlier run of a container whose relay is always PID 1) or
/// has no `/proc` entry. A relay killed during its scan (a crash, a restart, a deploy) then
/// leaves no lease for its successor on the same host to wait out; a holder on another host
/// can only be judged by its lock's age. (Containers that share a host name but not a PID
/// namespace may judge each other gone: two scans at once, which costs work, not safety.)
fn holder_gone(owner: &str) -> bool {
    let Some((tag, pid)) = owner.trim().rsplit_once(' ') else {
        return false;
    };
    let ours = crate::util::process_tag();
    let host_of = |tag: &str| tag.rsplit_once('.').map(|(host, _)| host.to_string());
    if tag == ours || host_of(tag).is_none() || host_of(tag) != host_of(ours) {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let proc = Path::new("/proc");
    pid == std::process::id()
        || (proc.join("self").exists() && !proc.join(pid.to_string()).exists())
}

/// When a scan holding the lease last finished on `dir`.
pub fn last_scan(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir.join(DONE_FILE))
        .and_then(|m| m.modified())
        .ok()
}

impl Lease {
    /// Records that the scan under this lease finished (see [`last_scan`]).
    pub fn finished(&self, dir: &Path) {
        let _ = crate::util::write_atomic(&dir.join(DONE_FILE), self.owner.as_bytes(), 0o666);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.ours() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_stale_lease_is_stolen() {
        let dir = std::env::temp_dir().join(format!("llm-relay-lease-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let first = Lease::take(&dir).ok().unwrap();
        let held = Lease::take(&dir).err().unwrap();
        assert!(held.owner.contains(crate::util::process_tag()));
        first.renew();
        drop(first);
        let second = Lease::take(&dir).ok().unwrap();
        // a holder that died: its lock is not renewed past LEASE
        let lock = dir.join(LOCK_FILE);
        fs::write(&lock, "dead-host.0 1").unwrap();
        let f = fs::OpenOptions::new().write(true).open(&lock).unwrap();
        f.set_modified(SystemTime::now() - LEASE - Duration::from_secs(1))
            .unwrap();
        drop(second); // not ours any more: left in place
        assert!(lock.exists());
        let third = Lease::take(&dir).ok().unwrap();
        assert!(third.ours());
        drop(third);
        assert!(!lock.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fresh_lease_of_a_dead_process_on_this_host_is_taken_at_once() {
        let dir = std::env::temp_dir().join(format!("llm-relay-lease-gone-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let lock = dir.join(LOCK_FILE);
        let host = crate::util::process_tag().rsplit_once('.').unwrap().0;
        // a PID above the kernel's maximum (4,194,304) is never running
        let gone = format!("{host}.00000000deadbeef 99999999");
        let elsewhere = "other-host.00000000deadbeef 99999999".to_string();
        let alive = format!("{host}.00000000deadbeef 1");
        for (owner, taken) in [(gone, true), (elsewhere, false), (alive, false)] {
            fs::write(&lock, &owner).unwrap(); // renewed just now
            match Lease::take(&dir) {
                Ok(lease) => {
                    assert!(taken, "{owner}: taken");
                    assert!(lease.ours());
                }
                Err(held) => {
                    assert!(!taken, "{owner}: left to its holder");
                    assert_eq!(held.owner, owner);
                    assert!(lock.exists());
                }
            }
            let _ = fs::remove_file(&lock);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
