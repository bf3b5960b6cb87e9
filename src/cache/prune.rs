//! `llm-relay cache prune` and `cache stats --namespace`: select entries by namespace and by
//! when they were last used, to keep a cassette small (drop what a replay run no longer asks
//! for) or to re-record one test's namespace.
//!
//! An entry's last use is the later of its creation and its last hit; last hits come from
//! `hits.log` (`KEY COUNT LAST_HIT` lines, appended about once a second by each relay and at
//! shutdown), so no read ever writes to an entry's files.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::store;
use super::upkeep::HITS_FILE;

/// Which entries `cache prune` removes: those matching every filter given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PruneFilter {
    /// Only entries of this namespace.
    pub namespace: Option<String>,
    /// Only entries neither created nor hit at or after this Unix time.
    pub unused_since: Option<f64>,
}

/// The last hit of every key in `<dir>/hits.log` (Unix seconds).
fn last_hits(dir: &Path) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    let Ok(file) = fs::File::open(dir.join(HITS_FILE)) else {
        return out;
    };
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let mut parts = line.split(' ');
        let (Some(key), Some(_), Some(last)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(last) = last.parse::<u64>() {
            let slot = out.entry(key.to_string()).or_default();
            *slot = (*slot).max(last);
        }
    }
    out
}

/// `llm-relay cache prune`: removes the selected entries. Returns the report line.
pub fn prune_command(dir: &Path, filter: &PruneFilter) -> Result<String, String> {
    if filter.namespace.is_none() && filter.unused_since.is_none() {
        return Err(
            "`cache prune` needs --unused-since TIME, --namespace NAME or both (it removes the \
             entries that match)"
                .to_string(),
        );
    }
    if let Some(since) = filter.unused_since {
        let now = super::now_precise();
        if since > now {
            return Err(format!(
                "--unused-since {since:.0} is in the future (now is {now:.0}): every entry would \
                 go; give a past time"
            ));
        }
    }
    let hits = last_hits(dir);
    let (mut removed, mut kept, mut bytes) = (0u64, 0u64, 0u64);
    for (key, req_path) in store::entries(dir) {
        let Some(meta) = fs::read(&req_path).ok().and_then(|b| store::parse_meta(&b)) else {
            continue;
        };
        if !meta.selected_by(filter.namespace.as_deref()) {
            continue;
        }
        if let Some(since) = filter.unused_since {
            let last_hit = hits.get(&key).map_or(0.0, |&t| t as f64);
            if meta.created.max(last_hit) >= since {
                kept += 1;
                continue;
            }
        }
        bytes += store::remove(dir, &key);
        removed += 1;
    }
    Ok(format!(
        "pruned {removed} entries ({bytes} bytes) from {}{}{}",
        dir.display(),
        match &filter.namespace {
            Some(ns) => format!(" in namespace \"{ns}\""),
            None => String::new(),
        },
        if filter.unused_since.is_some() {
            format!("; {kept} used since then kept")
        } else {
            String::new()
        }
    ))
}

/// `llm-relay cache stats --namespace NAME`.
pub fn namespace_stats(dir: &Path, namespace: &str) -> String {
    let (mut entries, mut bytes, mut samples) = (0u64, 0u64, 0u64);
    for (key, req_path) in store::entries(dir) {
        let Ok(request) = fs::read(&req_path) else {
            continue;
        };
        let Some(meta) = store::parse_meta(&request) else {
            continue;
        };
        if !meta.selected_by(Some(namespace)) {
            continue;
        }
        entries += 1;
        if meta.sample > 1 {
            samples += 1;
        }
        let txt = store::referenced_answer(dir, &key)
            .and_then(|p| fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        bytes += request.len() as u64 + txt;
    }
    format!(
        "cache {} namespace \"{namespace}\": entries {entries} ({samples} of them sample 2 or \
         later), bytes {bytes}\n",
        dir.display()
    )
}
