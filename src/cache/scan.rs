//! The start-up scan: find entries that must never be served and move them aside.
//!
//! Walks every fan-out folder and checks each pair: a pair not bound to its key (swapped,
//! truncated or foreign files, see `store::verify`), a response that is an error, unparsable,
//! empty or a truncated stream, an incomplete `.request`, orphan halves and stale temp
//! files all move to `<dir>/quarantine/` (nothing is deleted, so a bad entry can be
//! inspected). Orphans and temp files younger than [`GRACE`] are left alone: another relay
//! sharing the directory may be between its two renames. The same walk counts entries and
//! bytes for `cache stats`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::apis;
use super::key::is_key;
use super::store::{self, TEMP_SUFFIX};

/// How old an orphan half or temp file must be before the scan treats it as debris.
pub const GRACE: Duration = Duration::from_secs(60);

/// What a scan found.
#[derive(Debug, Default)]
pub struct Report {
    /// Good entries and their bytes (both files).
    pub entries: u64,
    pub bytes: u64,
    /// Quarantined files by reason, e.g. "truncated stream" → 2.
    pub quarantined: BTreeMap<&'static str, u64>,
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
        s
    }
}

/// Scans `dir`; with `fix`, moves bad files to `<dir>/quarantine/`.
pub fn scan(dir: &Path, fix: bool) -> Report {
    scan_with(dir, fix, &mut |_, _, _| {})
}

/// [`scan`], calling `visit` with the key, metadata and canonical request of each good entry
/// (the relay's start-up scan fills the index of recorded requests so).
pub fn scan_with(
    dir: &Path,
    fix: bool,
    visit: &mut dyn FnMut(&str, &store::Meta, &[u8]),
) -> Report {
    let mut report = Report::default();
    let now = SystemTime::now();
    let old = |p: &Path| {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= GRACE)
    };
    for sub in store::fan_out_dirs(dir) {
        let Ok(rd) = fs::read_dir(&sub) else { continue };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in &names {
            let path = sub.join(name);
            let mut bad = |reason: &'static str, files: &[&Path]| {
                *report.quarantined.entry(reason).or_default() += files.len() as u64;
                if fix {
                    for f in files {
                        store::quarantine(dir, f);
                    }
                }
            };
            if name.ends_with(TEMP_SUFFIX) {
                if old(&path) {
                    bad("stale temp file", &[&path]);
                }
                continue;
            }
            if let Some(key) = name.strip_suffix(".txt").filter(|k| is_key(k)) {
                if !sub.join(format!("{key}.request")).exists() && old(&path) {
                    bad("orphan response half", &[&path]);
                }
                continue;
            }
            let Some(key) = name.strip_suffix(".request").filter(|k| is_key(k)) else {
                continue;
            };
            let txt = sub.join(format!("{key}.txt"));
            let Ok(request) = fs::read(&path) else {
                continue;
            };
            let Ok(response) = fs::read(&txt) else {
                if old(&path) {
                    bad("orphan request half", &[&path]);
                }
                continue;
            };
            let meta = match store::verify(key, &request, &response) {
                Ok(meta) => meta,
                Err(reason) => {
                    bad(reason, &[&path, &txt]);
                    continue;
                }
            };
            match apis::check(&meta.route, &response) {
                Ok(_) => {
                    if let Some((_, canonical)) = store::split_request(&request) {
                        visit(key, &meta, canonical);
                    }
                    report.entries += 1;
                    report.bytes += (request.len() + response.len()) as u64;
                }
                Err(reason) => bad(reason, &[&path, &txt]),
            }
        }
    }
    report
}
