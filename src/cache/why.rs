//! Why a request missed: the closest recorded requests of the same route, and in which fields
//! they differ from it. Used by the `cache_miss` error of `replay` mode and by
//! `llm-relay cache why REQUEST.json`.
//!
//! The search reads `.request` files (the canonical request each entry was recorded for) of
//! the route and scope, at most [`MAX_SEARCHED`] of them ([`MAX_SEARCHED_ONLINE`] for the
//! error), and ranks them by the number of
//! differing fields (paths like `temperature` or `messages[1].content`), same model first.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

pub use super::field_diff::{describe, diff, Diff};
use super::key::Variant;
use super::store;
use crate::error::ApiError;

/// `.request` files one search by `cache why` reads at most (a cassette has hundreds; a big
/// cache is cut off, and the answer says so).
pub const MAX_SEARCHED: u64 = 100_000;

/// The same for the `cache_miss` error, which a front thread computes: a replay miss costs at
/// most this many small reads.
pub const MAX_SEARCHED_ONLINE: u64 = 10_000;

/// Differing fields listed per entry, at most.
const MAX_DIFFS: usize = 12;

/// A recorded request near the asked one.
#[derive(Debug, Clone)]
pub struct Near {
    pub key: String,
    pub model: String,
    pub diffs: Vec<Diff>,
    /// Differing fields in all (`diffs` holds at most [`MAX_DIFFS`]).
    pub count: usize,
    /// Whether the recorded values may be shown to the asker (it recorded the entry).
    pub visible: bool,
    /// Its namespace and sample.
    pub variant: Variant,
}

/// Whether `viewer` may see the values of an entry recorded by `recorded_by`: everyone when
/// the viewer is no key (auth off, or the `cache why` command), else only its recorder; an
/// entry from before `recorded_by` existed shows no values to a key.
pub fn may_see(recorded_by: Option<&str>, viewer: Option<&str>) -> bool {
    match viewer {
        None => true,
        Some(v) => recorded_by == Some(v),
    }
}

/// The [`Near`] a `.request` file's contents make for `asked`, if it is an entry of `route`
/// (and `scope`, when given).
fn near_of(
    key: String,
    file: &[u8],
    route: &str,
    scope: Option<&str>,
    asked: &Value,
    viewer: Option<&str>,
) -> Option<Near> {
    let (meta, request) = store::split_request(file)?;
    if meta.route != route || scope.is_some_and(|s| s != meta.scope) {
        return None;
    }
    let recorded = crate::json::from_slice::<Value>(request).ok()?;
    let diffs = diff(&recorded, asked);
    Some(Near {
        key,
        model: recorded
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        count: diffs.len(),
        diffs: diffs.into_iter().take(MAX_DIFFS).collect(),
        visible: may_see(meta.recorded_by.as_deref(), viewer),
        variant: meta.variant(),
    })
}

/// Adds `near` to the `n` nearest of `report`, in rank order: fewest differing fields, then
/// the same model, then the `want`ed namespace and the nearest sample.
fn rank_in(report: &mut Report, near: Near, (model, want): (&str, &Variant), n: usize) {
    let rank = |x: &Near| {
        (
            x.count,
            x.model != model,
            x.variant.namespace != want.namespace,
            x.variant.sample_index().abs_diff(want.sample_index()),
            x.key.clone(),
        )
    };
    let at = report
        .nearest
        .iter()
        .position(|x| rank(&near) < rank(x))
        .unwrap_or(report.nearest.len());
    if at < n {
        report.nearest.insert(at, near);
        report.nearest.truncate(n);
    }
}

/// The closest of the entries `keys` (chosen by the index, nearest first) to `asked`: each is
/// read and diffed; `compared` is how many the index compared. Among equally close ones, the
/// variant `want` first.
pub fn closest_of(
    dir: &Path,
    route: &str,
    keys: &[String],
    (asked, want): (&Value, &Variant),
    viewer: Option<&str>,
    compared: u64,
) -> Report {
    let mut report = Report {
        complete: true,
        searched: compared,
        ..Report::default()
    };
    let model = asked.get("model").and_then(Value::as_str).unwrap_or("");
    for key in keys {
        let Ok(file) = fs::read(store::request_path(dir, key)) else {
            continue;
        };
        if let Some(near) = near_of(key.clone(), &file, route, None, asked, viewer) {
            rank_in(&mut report, near, (model, want), 1);
        }
    }
    report
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Report {
    /// Closest first.
    pub nearest: Vec<Near>,
    pub searched: u64,
    /// False when the search stopped at [`MAX_SEARCHED`].
    pub complete: bool,
}

/// The `n` recorded requests of `route` closest to `asked` (canonical JSON), by reading the
/// directory. `scope`: only entries of that scope (a client never sees another credential's
/// requests); `None`: all. `viewer`: whose values may show (see [`may_see`]). Among equally
/// close ones, the variant `want` first.
pub fn closest(
    dir: &Path,
    route: &str,
    scope: Option<&str>,
    (asked, want): (&Value, &Variant),
    (n, max_searched): (usize, u64),
    viewer: Option<&str>,
) -> Report {
    let mut report = Report {
        complete: true,
        ..Report::default()
    };
    let model = asked.get("model").and_then(Value::as_str).unwrap_or("");
    for (key, path) in store::entries(dir) {
        if report.searched >= max_searched {
            report.complete = false;
            break;
        }
        report.searched += 1;
        let Ok(file) = fs::read(path) else {
            continue;
        };
        if let Some(near) = near_of(key, &file, route, scope, asked, viewer) {
            rank_in(&mut report, near, (model, want), n);
        }
    }
    report
}

/// `sample 3 in namespace "suite"`, `the shared entry`.
pub fn describe_variant(v: &Variant) -> String {
    match (v.sample_index(), v.namespace.as_str()) {
        (1, "") => "the shared entry (sample 1)".to_string(),
        (k, "") => format!("shared sample {k}"),
        (k, ns) => format!("sample {k} in namespace \"{ns}\""),
    }
}

/// The `cache_miss` error of `replay` mode for a request of the variant `asked`. The
/// differing fields are always named; their recorded values only when the asker recorded the
/// entry ([`Near::visible`]).
pub fn miss_error(key: &str, asked: &Variant, report: &Report) -> ApiError {
    let (closest, hint) = match report.nearest.first() {
        // the same request, recorded as another sample or in another namespace
        Some(near) if near.count == 0 => (
            json!({"key": near.key, "differs": [], "namespace": near.variant.namespace,
                   "sample": near.variant.sample_index()}),
            format!(
                "This request was recorded, but not as {} (X-Relay-Cache-Sample / \
                 X-Relay-Cache-Namespace): the closest entry (key {}) is {}.",
                describe_variant(asked),
                near.key,
                describe_variant(&near.variant)
            ),
        ),
        Some(near) => {
            let fields: Vec<String> = near
                .diffs
                .iter()
                .map(|d| {
                    if near.visible {
                        describe(d)
                    } else {
                        d.path.clone()
                    }
                })
                .collect();
            let more = near.count.saturating_sub(near.diffs.len());
            (
                json!({"key": near.key, "differs": near.diffs.iter().map(|d| &d.path).collect::<Vec<_>>()}),
                format!(
                    "The closest recorded request (key {}) differs in {}{}: {}.",
                    near.key,
                    near.count,
                    if near.count == 1 { " field" } else { " fields" },
                    fields.join("; ")
                ) + &if more > 0 {
                    format!(" ({more} more not listed)")
                } else {
                    String::new()
                },
            )
        }
        None if !report.complete => (
            Value::Null,
            format!(
                "No close request was found among the first {} recorded ones.",
                report.searched
            ),
        ),
        None => (
            Value::Null,
            "Nothing was recorded for this route yet.".to_string(),
        ),
    };
    let what = if asked == &Variant::default() {
        String::new()
    } else {
        format!("{}, ", describe_variant(asked))
    };
    let message = format!(
        "cache miss in replay mode: no recorded answer for this request ({what}key {key}), and \
         replay never calls an upstream. {hint} Record it (cache.mode \"record\") or send the \
         recorded request."
    );
    let mut detail = serde_json::Map::new();
    detail.insert("key".to_string(), json!(key));
    detail.insert("closest".to_string(), closest);
    if asked != &Variant::default() {
        detail.insert("namespace".to_string(), json!(asked.namespace));
        detail.insert("sample".to_string(), json!(asked.sample_index()));
    }
    let detail = Value::Object(detail);
    ApiError {
        detail: Some(Box::new(detail)),
        ..ApiError::new(404, "invalid_request_error", "cache_miss", message)
    }
}

/// The text of `llm-relay cache why`: the request's key, whether it is recorded, and the
/// closest recorded requests with their differing fields (among equally close ones, those of
/// the variant `want` first).
pub fn explain(
    dir: &Path,
    route: &str,
    keys: &[(String, String, bool)],
    (asked, want): (&Value, &Variant),
    max_searched: u64,
) -> String {
    let mut out = String::new();
    for (model, key, recorded) in keys {
        out.push_str(&format!(
            "{route} for model {model}: key {key}, {}\n",
            if *recorded {
                "recorded (a hit, if its age and shape allow)"
            } else {
                "not recorded"
            }
        ));
    }
    let report = closest(dir, route, None, (asked, want), (3, max_searched), None);
    out.push_str(&format!(
        "closest recorded requests of {route} ({} entries searched{}):\n",
        report.searched,
        if report.complete {
            String::new()
        } else {
            format!(", stopped at the bound of {max_searched}")
        }
    ));
    if report.nearest.is_empty() {
        out.push_str("  none\n");
    }
    for (i, near) in report.nearest.iter().enumerate() {
        let variant = if near.variant == Variant::default() {
            String::new()
        } else {
            format!(", {}", describe_variant(&near.variant))
        };
        out.push_str(&format!(
            "  {}. key {} (model {}{variant}): {} {}\n",
            i + 1,
            near.key,
            near.model,
            near.count,
            if near.count == 1 {
                "field differs"
            } else {
                "fields differ"
            }
        ));
        for d in &near.diffs {
            out.push_str(&format!("       {}\n", describe(d)));
        }
    }
    out
}
