//! The dashboard over HTTP (`ui.enabled`): `GET /ui` serves the page, its script and its style
//! sheet, built into the binary; they hold no data and need no key. Every figure comes from
//! the data routes under `/admin/ui/`, which the gate admits only with the admin key (the page
//! keeps it in the tab's `sessionStorage` and sends it as `Authorization` on each call; no
//! cookie, so no CSRF). With the dashboard off every one of these paths is a 404.
//!
//! The data: [`crate::dashboard`] (per-minute figures, the last requests, per-upstream
//! latency, refusals per key, the replica), the usage store (per key, fleet-wide with
//! `state.redis`), the upstreams' health, and the cache's index and entries (`cache::browse`).

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tiny_http::Method;

use crate::admin;
use crate::cache;
use crate::dashboard::{Dashboard, PAGE_CSS, PAGE_HTML, PAGE_JS};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::key_store;
use crate::state::State;
use crate::store::Down;

/// Requests one page of `/admin/ui/requests` lists at most.
const MAX_LIST: usize = 500;
/// Keys one export takes at most.
const MAX_EXPORT_KEYS: usize = 1000;

/// The page's Content-Security-Policy: nothing but the relay itself (no CDN, no inline code).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui…`: the page, its script or its style sheet.
pub fn page(
    state: &State,
    ex: &mut Exchange,
    route: &str,
    method: &Method,
) -> Result<(), ApiError> {
    if state.ui.is_none() {
        return Err(ApiError::not_found(route));
    }
    if !matches!(method, Method::Get | Method::Head) {
        return Err(ApiError::method_not_allowed(method.as_str(), route, "GET"));
    }
    let (body, kind) = match route {
        "/ui/app.js" => (PAGE_JS, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (PAGE_CSS, "text/css; charset=utf-8"),
        _ => (PAGE_HTML, "text/html; charset=utf-8"),
    };
    let headers = [
        ("Content-Type".to_string(), kind.to_string()),
        ("Content-Security-Policy".to_string(), CSP.to_string()),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
        ("Referrer-Policy".to_string(), "no-referrer".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
    ];
    ex.respond(200, &headers, body.as_bytes().to_vec());
    Ok(())
}

/// `POST /admin/ui/cache/why` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhyBody {
    /// `/chat/completions`, …; guessed from the body when absent.
    route: Option<String>,
    /// The request body as a client sends it.
    body: Map<String, Value>,
}

/// `POST /admin/ui/cache/export` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    keys: Vec<String>,
}

/// `/admin/ui/*` (the gate has checked the admin key).
pub fn api(state: &State, ex: &mut Exchange, route: &str, method: &Method) -> Result<(), ApiError> {
    let Some(dash) = &state.ui else {
        return Err(ApiError::not_found(route));
    };
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let url = req.url().to_string();
    let timeout = (
        state.config.client_timeout,
        state.config.max_body_bytes_in_flight,
    );
    let sub = route.strip_prefix("/admin/ui").unwrap_or(route);
    let get = matches!(method, Method::Get);
    let post = matches!(method, Method::Post);
    let body = match sub {
        "/overview" if get => {
            let day = match crate::util::query(&url, "window").as_deref() {
                None | Some("hour") => false,
                Some("day") => true,
                Some(w) => return Err(bad_query("window", w, "`hour` or `day`")),
            };
            overview(state, dash, day)
        }
        "/keys" if get => keys(state, dash)?,
        "/upstreams" if get => upstreams(state, dash),
        "/requests" if get => {
            let limit = match crate::util::query(&url, "limit") {
                None => 100,
                Some(n) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| bad_query("limit", &n, "a whole number from 1 to 500"))?,
            };
            let before = match crate::util::query(&url, "before") {
                None => None,
                Some(n) => Some(
                    n.parse::<u64>()
                        .map_err(|_| bad_query("before", &n, "a request id (a whole number)"))?,
                ),
            };
            dash.requests(limit, before)
        }
        "/cache" if get => cache_page(
            state,
            crate::util::query(&url, "q"),
            crate::util::query(&url, "model"),
        )?,
        "/cache/why" if post => {
            let why: WhyBody = admin::parse_json(req, timeout, WHY_SHAPE)?;
            let headers = Vec::new();
            let text = crate::pipeline::why(
                &state.config,
                why.route.as_deref(),
                why.body,
                headers,
                cache::WhyBound::Online,
                Some(&state.gate.responses),
            )
            .map_err(|m| ApiError::invalid("invalid_request", m))?;
            json!({"object": "cache.why", "text": text})
        }
        "/cache/export" if post => {
            let export: ExportBody = admin::parse_json(req, timeout, EXPORT_SHAPE)?;
            if export.keys.len() > MAX_EXPORT_KEYS {
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!("export at most {MAX_EXPORT_KEYS} keys at a time"),
                ));
            }
            let cache = enabled_cache(state)?;
            let (text, n, left_out) = cache::export_keys(&cache.config.dir, &export.keys)
                .map_err(|m| ApiError::new(413, "invalid_request_error", "request_too_large", m))?;
            let headers = [
                (
                    "Content-Type".to_string(),
                    "application/x-ndjson".to_string(),
                ),
                (
                    "Content-Disposition".to_string(),
                    "attachment; filename=\"cassette.jsonl\"".to_string(),
                ),
                ("X-Relay-Exported".to_string(), n.to_string()),
                // entries holding a credential-shaped string are never exported from the page
                ("X-Relay-Left-Out-Secrets".to_string(), left_out.to_string()),
            ];
            ex.respond(200, &headers, text.into_bytes());
            return Ok(());
        }
        s if get && s.starts_with("/requests/") => {
            let id = s
                .strip_prefix("/requests/")
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| ApiError::not_found(route))?;
            request_detail(state, dash, id).ok_or_else(|| {
                ApiError::new(
                    404,
                    "invalid_request_error",
                    "not_found",
                    format!(
                        "request {id} is not among the last requests this replica holds \
                         (`ui.recent_bytes` bounds them)"
                    ),
                )
            })?
        }
        s if get && s.starts_with("/cache/entries/") => {
            let key = s.strip_prefix("/cache/entries/").unwrap_or_default();
            let cache = enabled_cache(state)?;
            cache::browse::open(&cache.config.dir, key).ok_or_else(|| {
                ApiError::new(
                    404,
                    "invalid_request_error",
                    "not_found",
                    format!(
                        "no servable cache entry `{}`",
                        key.chars().take(80).collect::<String>()
                    ),
                )
            })?
        }
        "/overview" | "/keys" | "/upstreams" | "/requests" | "/cache" => {
            return Err(ApiError::method_not_allowed(method.as_str(), route, "GET"))
        }
        "/cache/why" | "/cache/export" => {
            return Err(ApiError::method_not_allowed(method.as_str(), route, "POST"))
        }
        s if s.starts_with("/requests/") || s.starts_with("/cache/entries/") => {
            return Err(ApiError::method_not_allowed(method.as_str(), route, "GET"))
        }
        _ => return Err(ApiError::not_found(route)),
    };
    ex.json(200, body.to_string().into_bytes());
    Ok(())
}

fn bad_query(name: &str, value: &str, want: &str) -> ApiError {
    ApiError::invalid(
        "invalid_request",
        format!(
            "`{name}` must be {want}, got `{}`",
            value.chars().take(80).collect::<String>()
        ),
    )
}

const WHY_SHAPE: &str = "{\"route\"?: \"/chat/completions\", \"body\": {the request body}}";
const EXPORT_SHAPE: &str = "{\"keys\": [\"<cache key>\", ...]}";

fn enabled_cache(state: &State) -> Result<&std::sync::Arc<cache::Cache>, ApiError> {
    state.cache.as_ref().ok_or_else(|| {
        ApiError::new(
            409,
            "invalid_request_error",
            "cache_disabled",
            "the cache is off (`cache.enabled`)".to_string(),
        )
    })
}

/// `GET /admin/ui/overview`: the replica, the window's figures and chart points, the cache's.
fn overview(state: &State, dash: &Dashboard, day: bool) -> Value {
    let cache = state
        .cache
        .as_ref()
        .and_then(|c| crate::json::from_slice::<Value>(&c.stats_json()).ok());
    json!({
        "object": "ui.overview",
        "replica": dash.replica.describe(),
        "in_flight": crate::metrics::in_flight(),
        "overview": dash.overview(day),
        "cache": cache,
    })
}

/// `GET /admin/ui/keys`: every key with its figures (all time, today, this month; from Redis
/// with `state.redis`, so fleet-wide), what is left of its budget, and this replica's
/// rate-limit and budget refusals since start.
fn keys(state: &State, dash: &Dashboard) -> Result<Value, ApiError> {
    let gate = &state.gate;
    let now = crate::util::now_secs();
    let down = |Down| key_store::unavailable();
    let mut data = Vec::new();
    for (k, from_config) in gate.keys.list() {
        let total = gate.store.totals(&k.id, None, now).map_err(down)?;
        let (day, month) = gate.store.period(&k.id, now).map_err(down)?;
        let budget = k.budget.or(gate.default_budget);
        let refusals = dash.refusals(&k.id);
        let mut v = admin::describe(&k, from_config);
        admin::set(&mut v, "total", total.describe());
        admin::set(&mut v, "today", day.describe());
        admin::set(&mut v, "this_month", month.describe());
        admin::set(&mut v, "effective_budget", budget.describe());
        admin::set(&mut v, "budget_left", budget.left(&day, &month));
        admin::set(
            &mut v,
            "refusals",
            json!({
                "rate_limited": refusals.rate_limited,
                "budget_exceeded": refusals.budget_exceeded,
                "since": dash.replica.started_at,
            }),
        );
        data.push(v);
    }
    Ok(json!({
        "object": "list",
        "shared_state": gate.store.reachable().is_some(),
        "data": data,
    }))
}

/// `GET /admin/ui/upstreams`: each endpoint's health and counters since start, with this
/// replica's requests, errors and latency to it over the last hour.
fn upstreams(state: &State, dash: &Dashboard) -> Value {
    let figures = dash.upstream_figures();
    let data: Vec<Value> = state
        .upstream
        .health()
        .into_iter()
        .map(|h| {
            let hour = figures
                .iter()
                .find(|(url, _)| url.trim_end_matches('/') == h.url.trim_end_matches('/'))
                .map(|(_, v)| v.clone());
            json!({
                "name": h.name,
                "url": h.url,
                "healthy": h.healthy,
                "consecutive_failures": h.consecutive_failures,
                "cooling_down_for_ms": h.cooling_down_for.map(|d| d.as_millis() as u64),
                "requests": h.requests,
                "errors": h.errors,
                "retries": h.retries,
                "last_hour": hour,
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

/// One request of the ring with its bodies: from the body log (what was sent upstream and
/// answered, redacted as the body log writes it), else from the cache entry it was looked up
/// under (redacted the same way), else none.
fn request_detail(state: &State, dash: &Dashboard, id: u64) -> Option<Value> {
    let item = dash.request(id)?;
    let mut v = item.describe();
    let from_log = item
        .body_log_at
        .as_ref()
        .and_then(crate::body_log::read_back);
    let from_cache = || {
        let cache = state.cache.as_ref()?;
        cache::browse::open(&cache.config.dir, item.cache_key.as_deref()?)
    };
    let (source, request, response, events) = match (from_log, from_cache()) {
        (Some(line), _) => (
            "body_log",
            line.get("request").cloned(),
            line.get("response").cloned(),
            None,
        ),
        (None, Some(entry)) => (
            "cache",
            entry.get("request").cloned(),
            entry.get("response").cloned(),
            entry.get("events").cloned(),
        ),
        (None, None) => ("none", None, None, None),
    };
    admin::set(&mut v, "cache_key", json!(item.cache_key));
    admin::set(
        &mut v,
        "bodies",
        json!({"source": source, "request": request, "response": response, "events": events}),
    );
    Some(v)
}

/// `GET /admin/ui/cache`: the cache's figures, entries by model and namespace (of the index),
/// and the index's entries matching `q` and `model`.
fn cache_page(state: &State, q: Option<String>, model: Option<String>) -> Result<Value, ApiError> {
    let Some(cache) = &state.cache else {
        return Ok(json!({"object": "ui.cache", "enabled": false}));
    };
    let index = cache.index(state.config.ui.cache_index_bytes);
    let stats: Value = crate::json::from_slice(&cache.stats_json()).unwrap_or_default();
    let model = model.filter(|m| !m.is_empty());
    Ok(json!({
        "object": "ui.cache",
        "enabled": true,
        "stats": stats,
        "index": index.summary(),
        "search": index.search(q.as_deref().unwrap_or(""), model.as_deref()),
    }))
}
