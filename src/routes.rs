//! Routing: which path does what. [`handle`] passes every request through the route policy
//! (`route_policy::check`: paths that could resolve elsewhere, other spellings of named
//! routes), the gate (client key, rate limit) and the key's `routes`, then maps its path (with
//! or without the `/v1` prefix) to a handler. Small
//! handlers (probes, metrics, cache stats, the OpenAPI document) live here; API calls go to
//! [`pipeline::relay`], `/v1/messages/count_tokens` to [`count_tokens::handle`], `/admin/ui/*`
//! and the `/ui` page to `ui.rs`, other `/admin/*` to
//! [`admin::handle`].

use tiny_http::Method;

use crate::admin;
use crate::cache::Scope;
use crate::count_tokens;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::lifecycle;
use crate::metrics;
use crate::passthrough;
use crate::pipeline::{self, Endpoint, Next, Work};
use crate::route_policy;
use crate::state::State;
use crate::upstream::balance;

/// Whether a request gets a trace (with `telemetry` on): API calls, `/v1/models` and
/// pass-through routes, refused ones included; never probes, metrics, admin or the relay's own
/// documents.
fn traced(route: &str, path: &str) -> bool {
    let own = matches!(
        route,
        "/health" | "/ready" | "/metrics" | "/cache/stats" | "/openapi.json"
    ) || route.starts_with("/admin/")
        || route.starts_with("/__test/");
    !own && (Endpoint::of_path(route).is_some() || route == "/models" || path.starts_with("/v1/"))
}

/// Handles one request where it was received. Work that needs the upstream comes back as
/// [`Next::Upstream`] for the `workers` pool.
pub fn handle(state: &State, ex: &mut Exchange) -> Next {
    if let Some(dashboard) = &state.ui {
        ex.observe(dashboard.observer(&state.gate.prices));
    }
    let Some(req) = ex.request() else {
        return Next::Done;
    };
    let path = ex.access.path.clone();
    let route = match crate::util::api_route(&path) {
        // the dashboard's page lives at the root only: `/v1/ui` is an API path like any other
        // (it needs a client key and passes through)
        r if crate::auth::is_ui_page(r) && r != path => path.as_str(),
        r => r,
    };
    let method = req.method().clone();
    if let Some(tracer) = state.telemetry.as_ref().filter(|_| traced(route, &path)) {
        let parent = crate::exchange::header(req, "traceparent");
        let trace = tracer.trace(parent.as_deref(), method.as_str(), &path);
        ex.set_trace(trace);
    }
    // the route policy comes before the gate: a path it refuses reaches no handler and no
    // upstream (its refusal is traced)
    if let Err(err) = route_policy::check(&path) {
        ex.error(&err);
        return Next::Done;
    }
    let Some(req) = ex.request() else {
        return Next::Done;
    };
    match state.gate.check(route, req) {
        Ok(Some(client)) => {
            let meter = state.gate.meter(&client);
            ex.admit(client, meter);
        }
        Ok(None) => {}
        Err(refusal) => {
            state.gate.refuse(ex, *refusal);
            return Next::Done;
        }
    }
    // decided once, here, where the cache keeps answers per key: the cache never reads
    // credentials from the headers itself
    let per_key = state
        .cache
        .as_ref()
        .is_some_and(|c| c.config.scope == Scope::Key);
    if let (true, Some(req)) = (per_key, ex.request()) {
        let principal = crate::auth::principal(ex.client(), req);
        ex.set_principal(principal);
    }
    // the key's `routes` (the relay's own `/cache/stats` is no API route)
    let allowed = match ex.client() {
        Some(client) if route != "/cache/stats" => client.may_use(method.as_str(), route),
        _ => Ok(()),
    };
    if let Err(err) = allowed {
        ex.error(&err);
        return Next::Done;
    }
    let result = match (route, &method) {
        ("/health", Method::Get | Method::Head) => {
            ex.json(200, br#"{"status":"ok"}"#.to_vec());
            Ok(Next::Done)
        }
        ("/ready", Method::Get | Method::Head) => {
            let store = &state.gate.store;
            let shared = store
                .reachable()
                .map(|up| (up, store.config.on_unavailable));
            let (status, body) = lifecycle::readiness(&state.upstream.health(), shared);
            ex.json(status, body);
            Ok(Next::Done)
        }
        ("/metrics", Method::Get) => {
            let ct = (
                "Content-Type".to_string(),
                metrics::CONTENT_TYPE.to_string(),
            );
            if let Some(cache) = &state.cache {
                let c = &cache.counters;
                metrics::cache_size(
                    c.entries.load(std::sync::atomic::Ordering::Relaxed),
                    c.bytes.load(std::sync::atomic::Ordering::Relaxed),
                );
            }
            let mut text = metrics::render();
            balance::render_metrics(&mut text, &state.upstream.health());
            ex.respond(200, &[ct], text.into_bytes());
            Ok(Next::Done)
        }
        ("/cache/stats", Method::Get) => {
            let body = match &state.cache {
                Some(cache) => cache.stats_json(),
                None => br#"{"enabled":false}"#.to_vec(),
            };
            ex.json(200, body);
            Ok(Next::Done)
        }
        ("/chat/completions", Method::Post) => pipeline::relay(state, ex, Endpoint::Chat),
        ("/completions", Method::Post) => pipeline::relay(state, ex, Endpoint::Completions),
        ("/embeddings", Method::Post) => pipeline::relay(state, ex, Endpoint::Embeddings),
        ("/responses", Method::Post) => pipeline::relay(state, ex, Endpoint::Responses),
        ("/messages", Method::Post) => pipeline::relay(state, ex, Endpoint::Messages),
        ("/messages/count_tokens", Method::Post) => count_tokens::handle(state, ex),
        ("/models", Method::Get) => Ok(Next::Upstream(Work::Models)),
        ("/openapi.json", Method::Get) => {
            let doc = include_str!("../openapi.json").as_bytes().to_vec();
            ex.json(200, doc);
            Ok(Next::Done)
        }
        (r, _) if crate::auth::is_ui_page(r) => {
            crate::ui::page(state, ex, r, &method).map(|()| Next::Done)
        }
        (r, _) if r.starts_with("/admin/ui/") => {
            crate::ui::api(state, ex, r, &method).map(|()| Next::Done)
        }
        (r, _) if r.starts_with("/admin/") => {
            admin::handle(state, ex, r, &method).map(|()| Next::Done)
        }
        ("/__test/panic", Method::Get) if state.test_hooks => {
            // the one deliberate panic: a test hook (LLM_RELAY_TEST_HOOKS=1) that proves a
            // panicking request is isolated and answered 500
            #[allow(clippy::panic)]
            {
                panic!("test hook: deliberate panic")
            }
        }
        ("/health" | "/models" | "/ready" | "/metrics" | "/cache/stats", _) => {
            Err(ApiError::method_not_allowed(method.as_str(), &path, "GET"))
        }
        ("/chat/completions" | "/completions" | "/embeddings" | "/responses" | "/messages", _) => {
            Err(ApiError::method_not_allowed(method.as_str(), &path, "POST"))
        }
        _ if path.starts_with("/v1/") => passthrough::admit(state, ex)
            .map(|pass| pass.map_or(Next::Done, |pass| Next::Upstream(Work::Passthrough(pass)))),
        _ => Err(ApiError::not_found(&path)),
    };
    result.unwrap_or_else(|err| {
        ex.error(&err);
        Next::Done
    })
}
