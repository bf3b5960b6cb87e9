//! The miss report of `replay` mode (`cache.miss_log`): one JSON line per miss, appended, so a
//! CI run leaves one file listing every request that was not recorded; and
//! `llm-relay cache misses FILE`, which summarises such a file.
//!
//! A line holds the time, route, model, cache key, the caller's key id (with `auth`; never the
//! key itself), namespace, sample, and the closest recorded entry with the JSON paths that
//! differ. The recorded and asked values of those paths are written only where the
//! `cache_miss` error shows them (to the key that recorded the entry, `recorded_by`; to anyone
//! with auth off), and then through the body log's redaction: a shared miss log never shows
//! one client another's prompts.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::key::Variant;
use super::why::Report;

/// Fields `ignore_fields` may never leave out (see `config.rs`).
const KEYED_ALWAYS: &[&str] = &["model", "messages", "prompt", "input"];

/// An open miss log.
pub struct MissLog {
    file: Mutex<File>,
}

/// One miss, as the relay saw it.
pub struct Miss<'a> {
    pub route: &'a str,
    pub model: &'a str,
    pub key: &'a str,
    pub variant: &'a Variant,
    /// The id of the caller's key (`auth.keys`), if any.
    pub client: Option<&'a str>,
}

impl MissLog {
    /// Opens (appending, creating) the log at `path`.
    pub fn open(path: &Path) -> Result<MissLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open `cache.miss_log` file {}: {e}; point it at a writable path",
                    path.display()
                )
            })?;
        Ok(MissLog {
            file: Mutex::new(file),
        })
    }

    /// Appends the line of one miss (one write, so lines of several relays never interleave).
    pub fn record(&self, miss: &Miss, report: &Report) {
        let mut text = line(miss, report, SystemTime::now()).to_string();
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()) {
            crate::log::error(&format!("cannot append to `cache.miss_log`: {e}"));
        }
    }
}

fn line(miss: &Miss, report: &Report, now: SystemTime) -> Value {
    let closest = report.nearest.first().map(|near| {
        // values only where the `cache_miss` error shows them: to the key that recorded the
        // entry (`recorded_by`), or to anyone with auth off
        let own = near.visible;
        let mut c = json!({
            "key": near.key,
            "model": near.model,
            "namespace": near.variant.namespace,
            "sample": near.variant.sample_index(),
            "differs": near.diffs.iter().map(|d| &d.path).collect::<Vec<_>>(),
            "differing_fields": near.count,
        });
        if own {
            let values: Vec<Value> = near
                .diffs
                .iter()
                .map(|d| json!({"path": d.path, "recorded": d.recorded, "asked": d.asked}))
                .collect();
            if let Value::Object(m) = &mut c {
                m.insert(
                    "values".to_string(),
                    crate::body_log::redacted_value(Value::Array(values)),
                );
            }
        }
        c
    });
    json!({
        "time": crate::log::timestamp(now),
        "route": miss.route,
        "model": miss.model,
        "key": miss.key,
        "client": miss.client,
        "namespace": miss.variant.namespace,
        "sample": miss.variant.sample_index(),
        "closest": closest,
        "searched": report.searched,
    })
}

/// `llm-relay cache misses FILE`: the summary of a miss log.
pub fn summarize(file: &Path) -> Result<String, String> {
    let name = file.display();
    let f = File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut total = 0u64;
    let mut per_target: BTreeMap<(String, String), u64> = BTreeMap::new();
    // per namespace (one per test, in a per-test cassette workflow)
    let mut per_namespace: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_path: BTreeMap<String, u64> = BTreeMap::new();
    // top-level fields: in how many misses (with a closest entry) each differs
    let mut per_field: BTreeMap<String, u64> = BTreeMap::new();
    let (mut with_closest, mut variant_only, mut unreadable) = (0u64, 0u64, 0u64);
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            unreadable += 1;
            continue;
        };
        total += 1;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        *per_target.entry((s("route"), s("model"))).or_default() += 1;
        let ns = s("namespace");
        if !ns.is_empty() {
            *per_namespace.entry(ns).or_default() += 1;
        }
        let Some(differs) = v.pointer("/closest/differs").and_then(Value::as_array) else {
            continue;
        };
        with_closest += 1;
        if differs.is_empty() {
            variant_only += 1;
        }
        let mut fields: Vec<String> = Vec::new();
        for p in differs.iter().filter_map(Value::as_str) {
            *per_path.entry(p.to_string()).or_default() += 1;
            let top = p.split(['.', '[']).next().unwrap_or(p).to_string();
            if !fields.contains(&top) {
                fields.push(top);
            }
        }
        for f in fields {
            *per_field.entry(f).or_default() += 1;
        }
    }
    let mut out = format!(
        "{name}: {total} cache {}{}\n",
        if total == 1 { "miss" } else { "misses" },
        if unreadable > 0 {
            format!(" ({unreadable} unreadable lines skipped)")
        } else {
            String::new()
        }
    );
    if total == 0 {
        return Ok(out);
    }
    let per_target = per_target
        .into_iter()
        .map(|((route, model), n)| (format!("{route}  {model}"), n))
        .collect();
    table(&mut out, "by route and model", per_target, usize::MAX);
    table(&mut out, "by namespace", per_namespace, 50);
    out.push_str(&format!(
        "{with_closest} had a close recorded request ({variant_only} of them the same request \
         recorded as another sample or namespace)\n"
    ));
    table(&mut out, "fields that differ most often", per_path, 20);
    let always: Vec<String> = per_field
        .into_iter()
        .filter(|(f, n)| *n == total && !KEYED_ALWAYS.contains(&f.as_str()) && f != "(body)")
        .map(|(f, _)| f)
        .collect();
    if !always.is_empty() {
        out.push_str(&format!(
            "suggestion: {} differed in every miss; if {} not change the answer, add \
             \"cache\": {{\"ignore_fields\": {}}}\n",
            always.join(", "),
            if always.len() == 1 {
                "it does"
            } else {
                "they do"
            },
            serde_json::to_string(&always).unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `title:` and the `limit` largest counts of `counts`, largest first (nothing if empty).
fn table(out: &mut String, title: &str, counts: BTreeMap<String, u64>, limit: usize) {
    if counts.is_empty() {
        return;
    }
    out.push_str(&format!("{title}:\n"));
    let mut rows: Vec<(String, u64)> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (what, n) in rows.into_iter().take(limit) {
        out.push_str(&format!("  {n:>6}  {what}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::why::{Diff, Near};

    #[test]
    fn values_only_where_the_miss_error_shows_them_and_redacted() {
        let report = |visible| Report {
            nearest: vec![Near {
                key: "k".to_string(),
                model: "m".to_string(),
                variant: Variant::default(),
                visible,
                diffs: vec![Diff {
                    path: "user".to_string(),
                    recorded: Some(json!("sk-live-abcdef")),
                    asked: Some(json!("u2")),
                }],
                count: 1,
            }],
            searched: 1,
            complete: true,
        };
        let variant = Variant::default();
        let miss = Miss {
            route: "/chat/completions",
            model: "m",
            key: "q",
            variant: &variant,
            client: Some("k-1"),
        };
        let own = line(&miss, &report(true), SystemTime::UNIX_EPOCH);
        assert_eq!(own["closest"]["differs"], json!(["user"]));
        assert_eq!(own["client"], json!("k-1"));
        assert_eq!(own["closest"]["values"][0]["recorded"], json!("[redacted]"));
        assert_eq!(own["closest"]["values"][0]["asked"], json!("u2"));
        let other = line(&miss, &report(false), SystemTime::UNIX_EPOCH);
        assert_eq!(other["closest"]["differs"], json!(["user"]));
        assert!(other["closest"].get("values").is_none(), "{other}");
    }
}
