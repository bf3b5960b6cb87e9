//! The `llm-relay cache` commands that read the directory without a running relay: `scan`,
//! `why`, `misses` and `stats` (`export`, `import` and `prune` are in `cassette.rs` and `prune.rs`).

use std::path::Path;

use serde_json::{Map, Value};

use super::{miss_log, prune, scan, store, upkeep, why, CacheConfig, Plan, Scope};

/// `llm-relay cache scan`: scans and quarantines, returns the report line.
pub fn scan_command(config: &CacheConfig) -> String {
    scan::command(&config.dir)
}

/// How many recorded requests a `why` reads at most: the command's bound, or the smaller one of
/// a request the relay answers (the dashboard's `why`, like the `cache_miss` error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhyBound {
    Command,
    Online,
}

/// `llm-relay cache why`: the keys of a request body (after rules and shaping) on `route`,
/// whether each is recorded, and the closest recorded requests with their differing fields.
pub fn why_command(
    config: &CacheConfig,
    route: &str,
    body: &Map<String, Value>,
    headers: crate::client_headers::ClientHeaders<'_>,
    models: &[(String, bool)],
    bound: WhyBound,
) -> Result<String, String> {
    // the headers that choose an entry (namespace, sample); never a credential
    let chosen: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("x-relay-cache-namespace")
                || n.eq_ignore_ascii_case("x-relay-cache-sample")
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let chosen = crate::client_headers::ClientHeaders::pairs(&chosen);
    let plan = Plan::new(config, route, body, (chosen, ""), models).map_err(|e| e.message)?;
    let keys: Vec<(String, String, bool)> = plan
        .candidates
        .iter()
        .filter(|c| c.primary)
        .map(|c| {
            let found = matches!(store::load(&config.dir, &c.key), store::Loaded::Found(..));
            (c.model.clone(), c.key.clone(), found)
        })
        .collect();
    let asked = plan.canonical_json();
    let max_searched = match bound {
        WhyBound::Command => why::MAX_SEARCHED,
        WhyBound::Online => why::MAX_SEARCHED_ONLINE,
    };
    let mut out = why::explain(
        &config.dir,
        route,
        &keys,
        (&asked, &plan.variant),
        max_searched,
    );
    if config.scope == Scope::Key {
        out.push_str(
            "note: `cache.scope` is \"key\": the keys above are those of a request without a \
             credential; the closest requests are searched among every credential's entries\n",
        );
    }
    Ok(out)
}

/// `llm-relay cache misses FILE`: the summary of a `cache.miss_log`.
pub fn misses_command(file: &Path) -> Result<String, String> {
    miss_log::summarize(file)
}

/// `llm-relay cache stats`: counts entries, bytes and recorded hits without changing anything
/// (with `namespace`: of that namespace's entries).
pub fn stats_command(config: &CacheConfig, namespace: Option<&str>) -> String {
    let dir: &Path = &config.dir;
    if let Some(ns) = namespace {
        return prune::namespace_stats(dir, ns);
    }
    let report = scan::scan(dir, false, None, &|_| false);
    let hits = upkeep::HitBook::load(dir).total();
    format!(
        "cache {}: entries {}, bytes {}, hits {}, unservable files {}\n",
        dir.display(),
        report.entries,
        report.bytes,
        hits,
        report.quarantined_total()
    )
}
