//! The scan: find entries that must never be served and move them aside, collect answers no
//! entry refers to any more, and count what is left.
//!
//! Walks every fan-out folder and checks each entry: a pair not bound to its key (swapped,
//! truncated or foreign files, see `store::verify`), a response that is an error, unparsable,
//! empty or a truncated stream, an incomplete `.request`, a `.request` whose answer is missing
//! and stale temp files all move to `<dir>/quarantine/` (nothing is deleted, so a bad entry
//! can be inspected). It tells "being written" from "corrupt": a temp file, a `.request`
//! without its answer, and an old-layout answer (`<key>.txt`) that does not match the checksum
//! of the `.request` beside it (an older relay between its two renames) are judged only once
//! their files are older than [`GRACE`]; a pair is read again when it fails, and quarantined
//! only if its `.request` is still the one judged (another replica may have published a new
//! one meanwhile). Everything else that fails is quarantined at once: every file is renamed
//! into place whole, so nothing else can be a write in progress. Answers that no `.request` refers to (replaced, or left by a crash before the
//! last rename) are deleted once they and the `.request` of their key (if any) are past the
//! grace period. Old-layout answers (`<key>.txt`) of good entries are renamed to their
//! checksum name. The same walk counts entries and bytes for `cache stats`.
//!
//! One replica scans a shared directory at a time (`lease.rs`); the others only count
//! ([`count`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::apis;
use super::key::is_key;
use super::lease::Lease;
use super::store::{self, TEMP_SUFFIX};
use crate::log;

/// How old a temp file, a `.request` without its answer, a mismatched pair or an answer no
/// entry refers to must be before the scan treats it as debris. A write (on any replica) must
/// finish within it: it is a minute, writes take milliseconds.
pub const GRACE: Duration = Duration::from_secs(60);

/// What a scan found.
#[derive(Debug, Default)]
pub struct Report {
    /// Good entries and their bytes (both files).
    pub entries: u64,
    pub bytes: u64,
    /// Quarantined files by reason, e.g. "truncated stream" → 2.
    pub quarantined: BTreeMap<&'static str, u64>,
    /// Answers no entry refers to, deleted.
    pub collected: u64,
    /// Old-layout answers renamed to their checksum name.
    pub migrated: u64,
}

impl Report {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// The report as printed by `llm-relay cache scan` and logged at start-up.
    pub fn summary(&self, dir: &Path) -> String {
        let mut s = format!(
            "cache scan of {}: {} entries ({} bytes) ok, {} files quarantined",
            dir.display(),
            self.entries,
            self.bytes,
            self.quarantined_total()
        );
        for (reason, n) in &self.quarantined {
            s.push_str(&format!("; {reason}: {n}"));
        }
        if self.collected > 0 {
            s.push_str(&format!(
                "; {} answer files no entry refers to deleted",
                self.collected
            ));
        }
        if self.migrated > 0 {
            s.push_str(&format!(
                "; {} entries moved to the checksum-named layout",
                self.migrated
            ));
        }
        s
    }
}

fn old(p: &Path) -> bool {
    store::age(p).is_some_and(|a| a >= GRACE)
}

/// Keys whose entries a scan leaves out of its count: created by a store of this process
/// since the scan started, and counted there (`counters.rs`).
pub type Fresh<'a> = &'a dyn Fn(&str) -> bool;

/// The start-up scan under the directory's lease, if this process can take it (one log line
/// either way); `None` while another holds it.
pub fn leased(dir: &Path, fresh: Fresh) -> Option<Report> {
    match Lease::take(dir) {
        Ok(lease) => {
            let report = scan_holding(dir, &lease, fresh);
            log::info(&report.summary(dir));
            Some(report)
        }
        Err(held) => {
            log::info(&format!(
                "cache scan of {} left to {} (it holds the scan lease, renewed {} s ago)",
                dir.display(),
                held.owner.trim(),
                held.renewed.as_secs(),
            ));
            None
        }
    }
}

/// `llm-relay cache scan`: the scan, also while a relay holds the lease (two scans at once are
/// safe, only wasteful), which the report line then says.
pub fn command(dir: &Path) -> String {
    match Lease::take(dir) {
        Ok(lease) => scan_holding(dir, &lease, &|_| false).summary(dir),
        Err(held) => format!(
            "{} (while {} holds the scan lease, renewed {} s ago)",
            scan(dir, true, None, &|_| false).summary(dir),
            held.owner.trim(),
            held.renewed.as_secs()
        ),
    }
}

/// The scan that fixes, holding `lease`, recorded as finished.
fn scan_holding(dir: &Path, lease: &Lease, fresh: Fresh) -> Report {
    let report = scan(dir, true, Some(lease), fresh);
    lease.finished(dir);
    report
}

/// Scans `dir`; with `fix`, moves bad files to `<dir>/quarantine/`, deletes answers no entry
/// refers to and renames old-layout answers. `lease` (the scan lease, when fixing a shared
/// directory) is renewed after every folder. Entries `fresh` names are checked but not counted.
pub fn scan(dir: &Path, fix: bool, lease: Option<&Lease>, fresh: Fresh) -> Report {
    let mut report = Report::default();
    for sub in store::fan_out_dirs(dir) {
        scan_folder(dir, &sub, fix, fresh, &mut report);
        if let Some(lease) = lease {
            lease.renew();
        }
    }
    report
}

fn scan_folder(dir: &Path, sub: &Path, fix: bool, fresh: Fresh, report: &mut Report) {
    let Ok(rd) = fs::read_dir(sub) else { return };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let bad = |report: &mut Report, reason: &'static str, files: &[&Path]| {
        *report.quarantined.entry(reason).or_default() += files.len() as u64;
        if fix {
            for f in files {
                store::quarantine(dir, f);
            }
        }
    };
    let mut answers: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut referenced: BTreeSet<PathBuf> = BTreeSet::new();
    for name in &names {
        let path = sub.join(name);
        if name.ends_with(TEMP_SUFFIX) {
            if old(&path) {
                bad(report, "stale temp file", &[&path]);
            }
            continue;
        }
        if let Some((key, _)) = store::parse_answer_name(name) {
            answers.entry(key.to_string()).or_default().push(path);
            continue;
        }
        let Some(key) = name.strip_suffix(".request").filter(|k| is_key(k)) else {
            continue;
        };
        let (meta, pair) = match store::load(dir, key) {
            store::Loaded::Found(meta, pair) => (meta, pair),
            store::Loaded::Absent => {
                if let store::Read::NoAnswer(stamp) = store::read(dir, key) {
                    let whole = fs::read(&path)
                        .ok()
                        .and_then(|r| store::split_request(&r).map(|(m, _)| is_key(&m.sha256)))
                        .unwrap_or(false);
                    if !whole {
                        bad(report, "incomplete request file", &[&path]);
                    } else if stamp.age() >= GRACE {
                        bad(report, "orphan request half", &[&path]);
                    }
                }
                continue;
            }
            store::Loaded::Bad(reason, judged) => {
                referenced.insert(judged.answer.clone());
                // every file is renamed into place whole, so only one failure can be a write
                // in progress: an old-layout answer beside the request of another writer (an
                // older relay between its two renames); it waits out the grace period
                let in_progress = reason == "response does not match its checksum"
                    && judged.answer == store::old_answer_path(dir, key);
                if !in_progress || judged.settled(GRACE) {
                    *report.quarantined.entry(reason).or_default() += 2;
                    if fix {
                        store::quarantine_judged(dir, key, &judged);
                    }
                }
                continue;
            }
        };
        referenced.insert(pair.answer.clone());
        match apis::check(&meta.route, &pair.response) {
            Ok(_) => {
                if !fresh(key) {
                    report.entries += 1;
                    report.bytes += (pair.request.len() + pair.response.len()) as u64;
                }
                let named = store::answer_path(dir, key, &meta.sha256);
                if fix && pair.answer != named && fs::rename(&pair.answer, &named).is_ok() {
                    referenced.insert(named);
                    report.migrated += 1;
                }
            }
            Err(reason) => {
                let judged = store::Judged {
                    stamp: pair.stamp,
                    answer: pair.answer,
                };
                *report.quarantined.entry(reason).or_default() += 2;
                if fix {
                    store::quarantine_judged(dir, key, &judged);
                }
            }
        }
    }
    for (key, files) in answers {
        // the entry's own publication must be past the grace period too: a reader may have
        // read the `.request` before it and be about to open the answer it named
        let settled = store::stamp(dir, &key).map_or(true, |s| s.age() >= GRACE);
        for f in files {
            if referenced.contains(&f) || !settled || !old(&f) {
                continue;
            }
            if !fix || fs::remove_file(&f).is_ok() {
                report.collected += 1;
            }
        }
    }
}

/// Counts entries and bytes without reading them: what a replica that does not hold the
/// scan lease reports (`.request` files, and the bytes of every entry file), leaving out the
/// entries `fresh` names.
pub fn count(dir: &Path, fresh: Fresh) -> Report {
    let mut report = Report::default();
    for sub in store::fan_out_dirs(dir) {
        for e in fs::read_dir(&sub).into_iter().flatten().flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let len = || e.metadata().map_or(0, |m| m.len());
            if let Some(key) = name.strip_suffix(".request").filter(|k| is_key(k)) {
                if !fresh(key) {
                    report.entries += 1;
                    report.bytes += len();
                }
            } else if let Some((key, _)) = store::parse_answer_name(&name) {
                if !fresh(key) {
                    report.bytes += len();
                }
            }
        }
    }
    report
}
