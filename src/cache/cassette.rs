//! Cassettes: cache entries in one portable file, to commit next to a test suite.
//!
//! A cassette is JSON Lines: a header `{"llm_relay_cassette":2,"entries":N}`, then one line
//! per entry, sorted by key: `{"key":…,"meta":{…},"request":{…},"response":"…"}` where `meta`
//! is the entry's metadata, `request` the canonical request as JSON (reviewable in a diff) and
//! `response` the answer's exact text. The canonical request is its own JSON serialisation, so
//! an export, import and export again gives the same file, and imported entries are the
//! recorded ones exactly (answers byte for byte, checksums and creation times included).
//! Format 1 (`request` as the `.request` file's text) is still imported.
//!
//! The format does not depend on the directory's layout: `response` is the answer file the
//! `.request` refers to (its checksum name, or an old-layout `<key>.txt`).
//!
//! Export refuses credential-shaped strings (`secrets.rs`) unless told to skip or allow them.
//! Import checks every entry before writing any (a damaged cassette changes nothing), then
//! publishes each entry the way the relay does (the answer under its checksum name, then the
//! `.request`, each by an atomic rename): a crash mid-import leaves whole entries only.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::is_key;
use super::secrets::{self, Finding};
use super::store;
use super::{apis, CacheConfig};
use crate::glob::Glob;

/// The format version in a cassette's header line.
const FORMAT: u32 = 2;

/// Findings listed in the refusal of an export, at most.
const MAX_LISTED: usize = 20;

#[derive(Serialize, Deserialize)]
struct Header {
    llm_relay_cassette: u32,
    entries: u64,
}

/// An entry line of format 1.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineV1 {
    key: String,
    request: String,
    response: String,
}

/// An entry line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    meta: store::Meta,
    request: Value,
    response: String,
}

/// Which entries `cache export` writes (and `import` reads).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportFilter {
    /// A glob the recorded (effective) model must match.
    pub model: Option<Glob>,
    /// Unix seconds: only entries created at or after.
    pub since: Option<f64>,
    /// Only entries of this namespace (`X-Relay-Cache-Namespace`).
    pub namespace: Option<String>,
}

/// What `cache export` does with an entry holding a credential-shaped string.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Write nothing and name them (the default).
    #[default]
    Refuse,
    /// `--skip-secrets`: export the other entries.
    Skip,
    /// `--allow-secrets`: export them too.
    Allow,
}

/// `llm-relay cache export`: writes the selected entries to `out` (atomically). Returns the
/// report line.
pub fn export_command(
    config: &CacheConfig,
    out: &Path,
    filter: &ExportFilter,
    secrets_rule: Secrets,
) -> Result<String, String> {
    let dir = &config.dir;
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut skipped = 0u64;
    let mut flagged: Vec<(String, Finding)> = Vec::new();
    let mut with_secrets = 0u64;
    for (key, _) in store::entries(dir) {
        let Some(found) = entry_line(dir, &key) else {
            continue;
        };
        let Ok((meta, line)) = found else {
            skipped += 1;
            continue;
        };
        if filter.since.is_some_and(|t| meta.created < t) {
            continue;
        }
        if !meta.selected_by(filter.namespace.as_deref()) {
            continue;
        }
        if let Some(glob) = &filter.model {
            let model = line
                .request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !glob.matches(model) {
                continue;
            }
        }
        if secrets_rule != Secrets::Allow {
            let findings = credentials(&line);
            if !findings.is_empty() {
                with_secrets += 1;
                flagged.extend(findings.into_iter().map(|f| (key.clone(), f)));
                continue;
            }
        }
        let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
        lines.push((key, text));
    }
    if secrets_rule == Secrets::Refuse && !flagged.is_empty() {
        flagged.sort_by(|a, b| (&a.0, &a.1.path).cmp(&(&b.0, &b.1.path)));
        let mut msg = format!(
            "not exported: {with_secrets} {} a credential-shaped string (a cassette is meant \
             to be committed):\n",
            if with_secrets == 1 {
                "entry holds"
            } else {
                "entries hold"
            }
        );
        for (key, f) in flagged.iter().take(MAX_LISTED) {
            msg.push_str(&format!("  entry {key}: {} holds {}\n", f.path, f.kind));
        }
        if flagged.len() > MAX_LISTED {
            msg.push_str(&format!("  … and {} more\n", flagged.len() - MAX_LISTED));
        }
        msg.push_str(
            "re-record those requests without the secret, or pass --skip-secrets to export the \
             other entries, or --allow-secrets to export them anyway",
        );
        return Err(msg);
    }
    lines.sort();
    let text = cassette_text(&lines)?;
    store::write_atomic(out, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(format!(
        "exported {} entries from {} to {}{}{}",
        lines.len(),
        dir.display(),
        out.display(),
        if with_secrets > 0 {
            format!(" ({with_secrets} entries holding a credential-shaped string left out)")
        } else {
            String::new()
        },
        if skipped > 0 {
            format!(
                " ({skipped} unservable entries left out; `llm-relay cache scan` quarantines them)"
            )
        } else {
            String::new()
        }
    ))
}

/// The credential-shaped strings of a cassette line, in its request and its answer.
fn credentials(line: &Line) -> Vec<Finding> {
    let mut findings = Vec::new();
    secrets::scan_json("request ", &line.request, &mut findings);
    secrets::scan_answer(&line.response, &mut findings);
    findings
}

/// Entry `key` as a cassette line with its metadata: `None` when it is absent, `Err` when it
/// is unservable (fails `verify` or the API's completeness check, or is not UTF-8).
fn entry_line(dir: &Path, key: &str) -> Option<Result<(store::Meta, Line), ()>> {
    let store::Read::Both(store::Pair {
        request, response, ..
    }) = store::read(dir, key)
    else {
        return None;
    };
    let Ok(meta) = store::verify(key, &request, &response) else {
        return Some(Err(()));
    };
    if apis::check(&meta.route, &response).is_err() {
        return Some(Err(()));
    }
    let Some(canonical) =
        store::split_request(&request).and_then(|(_, r)| crate::json::from_slice::<Value>(r).ok())
    else {
        return Some(Err(()));
    };
    let Ok(response) = String::from_utf8(response) else {
        return Some(Err(()));
    };
    let line = Line {
        key: key.to_string(),
        meta: meta.clone(),
        request: canonical,
        response,
    };
    Some(Ok((meta, line)))
}

/// The most a selection exported by the dashboard may take (the relay holds it whole).
pub const MAX_EXPORT_BYTES: usize = 64 * 1024 * 1024;

/// The entries `keys` (those present and servable) as a cassette, for the dashboard's export
/// of a selection. Entries holding a credential-shaped string are left out, as
/// `cache export --skip-secrets` does. Returns the text, how many entries it holds and how many
/// were left out for a credential; `Err` past [`MAX_EXPORT_BYTES`].
pub fn export_keys(dir: &Path, keys: &[String]) -> Result<(String, u64, u64), String> {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut bytes = 0usize;
    let mut with_secrets = std::collections::BTreeSet::new();
    for key in keys.iter().filter(|k| is_key(k)) {
        if let Some(Ok((_, line))) = entry_line(dir, key) {
            if !credentials(&line).is_empty() {
                with_secrets.insert(key);
                continue;
            }
            let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
            bytes += text.len();
            if bytes > MAX_EXPORT_BYTES {
                return Err(format!(
                    "the selection takes more than {MAX_EXPORT_BYTES} bytes; export fewer \
                     entries at a time, or all of them with `llm-relay cache export`"
                ));
            }
            lines.push((key.clone(), text));
        }
    }
    lines.sort();
    lines.dedup();
    let left_out = with_secrets.len() as u64;
    Ok((cassette_text(&lines)?, lines.len() as u64, left_out))
}

/// The cassette file: the header line, then `lines` (sorted by key).
fn cassette_text(lines: &[(String, String)]) -> Result<String, String> {
    let header = Header {
        llm_relay_cassette: FORMAT,
        entries: lines.len() as u64,
    };
    let mut text = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    text.push('\n');
    for (_, line) in lines {
        text.push_str(line);
        text.push('\n');
    }
    Ok(text)
}

/// `llm-relay cache import`: checks every entry of the cassette `file`, then writes them into
/// the cache directory. Returns the report line.
pub fn import_command(
    config: &CacheConfig,
    file: &Path,
    namespace: Option<&str>,
) -> Result<String, String> {
    let name = file.display();
    let f = fs::File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut reader = BufReader::new(f).lines();
    let first = reader
        .next()
        .transpose()
        .map_err(|e| format!("cannot read {name}: {e}"))?
        .unwrap_or_default();
    let header: Header = serde_json::from_str(&first).map_err(|_| {
        format!(
            "{name}, line 1: not a cassette header; a cassette starts with \
             {{\"llm_relay_cassette\":{FORMAT},\"entries\":N}} (write one with `llm-relay cache export`)"
        )
    })?;
    let format = header.llm_relay_cassette;
    if format != FORMAT && format != 1 {
        return Err(format!(
            "{name}: cassette format {} is not supported by this relay (it reads format {FORMAT})",
            header.llm_relay_cassette
        ));
    }
    let mut entries = Vec::new();
    let mut total = 0u64;
    for (i, line) in reader.enumerate() {
        let n = i + 2;
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let not_entry =
            |e: serde_json::Error| format!("{name}, line {n}: not a cassette entry: {e}");
        let entry = if format == 1 {
            let e: LineV1 = serde_json::from_str(&line).map_err(not_entry)?;
            Files {
                key: e.key,
                request: e.request.into_bytes(),
                response: e.response,
            }
        } else {
            let e: Line = serde_json::from_str(&line).map_err(not_entry)?;
            let mut request = serde_json::to_vec(&e.meta).map_err(|e| e.to_string())?;
            request.push(b'\n');
            request.extend(serde_json::to_vec(&e.request).map_err(|e| e.to_string())?);
            request.push(b'\n');
            Files {
                key: e.key,
                request,
                response: e.response,
            }
        };
        if !is_key(&entry.key) {
            return Err(format!("{name}, line {n}: `key` is not a cache key"));
        }
        let bad = |why: &str| format!("{name}, line {n}: entry {}: {why}", entry.key);
        let meta =
            store::verify(&entry.key, &entry.request, entry.response.as_bytes()).map_err(bad)?;
        apis::check(&meta.route, entry.response.as_bytes()).map_err(bad)?;
        total += 1;
        if !meta.selected_by(namespace) {
            continue;
        }
        entries.push(entry);
    }
    if total != header.entries {
        return Err(format!(
            "{name}: the header announces {} entries but the file holds {total} (a cut-off copy?)",
            header.entries,
        ));
    }
    let dir = &config.dir;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (mut added, mut replaced, mut unchanged) = (0u64, 0u64, 0u64);
    for e in &entries {
        let existed = match store::read(dir, &e.key) {
            store::Read::Both(p)
                if p.request == e.request && p.response == e.response.as_bytes() =>
            {
                unchanged += 1;
                continue;
            }
            store::Read::NoRequest => false,
            _ => true,
        };
        store::save_files(dir, &e.key, &e.request, e.response.as_bytes())
            .map_err(|err| format!("cannot write entry {} in {}: {err}", e.key, dir.display()))?;
        if existed {
            replaced += 1;
        } else {
            added += 1;
        }
    }
    Ok(format!(
        "imported {} entries into {}: {added} added, {replaced} replaced, {unchanged} unchanged{}",
        entries.len(),
        dir.display(),
        match namespace {
            Some(ns) => format!(
                " (namespace \"{ns}\"; {} other entries of the cassette left out)",
                total - entries.len() as u64
            ),
            None => String::new(),
        }
    ))
}

/// An entry's two files as a cassette gives them.
struct Files {
    key: String,
    request: Vec<u8>,
    response: String,
}
