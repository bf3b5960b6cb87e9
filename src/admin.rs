//! The admin API under `/admin/*` (the gate has already checked the admin key): create, list,
//! change and revoke client keys; usage per key and for all keys.
//!
//! A created key's secret appears exactly once, in the 201 answer to `POST /admin/keys`; every
//! other answer carries ids and names only.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tiny_http::{Method, Request};

use crate::budget::{self, Budget, RawBudget};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::intake;
use crate::key_store;
use crate::keys_file::StoredKey;
use crate::limits::{RateLimit, RawRateLimit};
use crate::route_policy;
use crate::state::State;
use crate::store::Down;
use crate::utc;

/// The largest admin request body read.
const MAX_ADMIN_BODY: u64 = 64 * 1024;
/// Days `GET /admin/keys/{id}/usage` lists without `since`.
const DEFAULT_DAYS: u64 = 31;

/// `POST /admin/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    rate_limit: Option<RawRateLimit>,
    budget: Option<RawBudget>,
    models: Option<Vec<String>>,
    routes: Option<Vec<String>>,
    /// Unix seconds.
    expires_at: Option<u64>,
}

/// Handles `/admin/*`; `route` is the path without a `/v1` prefix.
pub fn handle(
    state: &State,
    ex: &mut Exchange,
    route: &str,
    method: &Method,
) -> Result<(), ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let since = crate::util::query(req.url(), "since")
        .map(|s| {
            utc::parse_day(&s).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_request",
                    format!("`since` must be a UTC date like 2026-01-31, got `{s}`"),
                )
            })
        })
        .transpose()?;
    let timeout = (
        state.config.client_timeout,
        state.config.max_body_bytes_in_flight,
    );
    let (status, body) = match (route, method) {
        ("/admin/keys", Method::Post) => {
            let new: NewKey = parse_json(req, timeout, NEW_KEY_SHAPE)?;
            let (key, secret) = state.gate.keys.create(checked_new_key(new)?)?;
            let mut v = describe(&key, false);
            set(&mut v, "key", Value::String(secret));
            (201, v)
        }
        ("/admin/keys", Method::Get) => {
            let data: Vec<Value> = state
                .gate
                .keys
                .list()
                .iter()
                .map(|(k, cfg)| describe(k, *cfg))
                .collect();
            (200, json!({"object": "list", "data": data}))
        }
        ("/admin/stats", Method::Get) => (200, stats(state, since)?),
        (r, Method::Get) if key_route(r).is_some_and(|(_, sub)| sub == Some("usage")) => {
            let (id, _) = key_route(r).unwrap_or_default();
            (200, key_usage(state, id, since)?)
        }
        (r, Method::Patch) if key_route(r).is_some_and(|(_, sub)| sub.is_none()) => {
            let (id, _) = key_route(r).unwrap_or_default();
            let (key, from_config) = state.gate.keys.get(id)?;
            if from_config {
                return Err(ApiError::new(
                    409,
                    "invalid_request_error",
                    "config_key",
                    format!("key `{id}` is defined in the config file; change it there and reload"),
                ));
            }
            let patch: Map<String, Value> = parse_json(req, timeout, PATCH_SHAPE)?;
            let key = patched(key, patch)?;
            state.gate.keys.update(key.clone())?;
            (200, describe(&key, false))
        }
        (r, Method::Delete) if key_route(r).is_some_and(|(_, sub)| sub.is_none()) => {
            let (id, _) = key_route(r).unwrap_or_default();
            state.gate.keys.revoke(id)?;
            state.gate.store.forget(id);
            (200, json!({"id": id, "object": "key", "deleted": true}))
        }
        ("/admin/keys", _) => {
            return Err(ApiError::method_not_allowed(
                method.as_str(),
                route,
                "GET, POST",
            ))
        }
        ("/admin/stats", _) => {
            return Err(ApiError::method_not_allowed(method.as_str(), route, "GET"))
        }
        (r, _) if key_route(r).is_some_and(|(_, sub)| sub == Some("usage")) => {
            return Err(ApiError::method_not_allowed(method.as_str(), route, "GET"))
        }
        (r, _) if key_route(r).is_some_and(|(_, sub)| sub.is_none()) => {
            return Err(ApiError::method_not_allowed(
                method.as_str(),
                route,
                "PATCH, DELETE",
            ))
        }
        _ => return Err(ApiError::not_found(route)),
    };
    ex.json(status, body.to_string().into_bytes());
    Ok(())
}

/// `/admin/keys/{id}` → `(id, None)`, `/admin/keys/{id}/usage` → `(id, Some("usage"))`.
fn key_route(route: &str) -> Option<(&str, Option<&str>)> {
    let rest = route.strip_prefix("/admin/keys/")?;
    let (id, sub) = match rest.split_once('/') {
        Some((id, sub)) => (id, Some(sub)),
        None => (rest, None),
    };
    (!id.is_empty()).then_some((id, sub))
}

/// `GET /admin/stats`: every key's figures, all time or from `since` on.
fn stats(state: &State, since: Option<u64>) -> Result<Value, ApiError> {
    let now = crate::util::now_secs();
    let mut data = Vec::new();
    for (k, _) in state.gate.keys.list() {
        let figures = state
            .gate
            .store
            .totals(&k.id, since, now)
            .map_err(|Down| key_store::unavailable())?;
        let mut v = figures.describe();
        set(&mut v, "id", Value::String(k.id.clone()));
        set(&mut v, "name", Value::String(k.name.clone()));
        data.push(v);
    }
    Ok(json!({
        "object": "list",
        "since": since.map(utc::day),
        "data": data,
        // usage served while Redis was down, not yet in these figures (0 without Redis)
        "pending_usage_requests": state.gate.store.pending_requests(),
    }))
}

/// `GET /admin/keys/{id}/usage`: totals, the current day and month against the budget, and
/// per-day figures from `since` (default: the last 31 days).
fn key_usage(state: &State, id: &str, since: Option<u64>) -> Result<Value, ApiError> {
    let (key, _) = state.gate.keys.get(id)?;
    let gate = &state.gate;
    let now = crate::util::now_secs();
    let down = |Down| key_store::unavailable();
    let from = since.unwrap_or(now.saturating_sub((DEFAULT_DAYS - 1) * 86_400));
    let total = gate.store.totals(id, None, now).map_err(down)?;
    let (day, month) = gate.store.period(id, now).map_err(down)?;
    let days: Vec<Value> = gate
        .store
        .days(id, from, now)
        .map_err(down)?
        .into_iter()
        .map(|(date, u)| {
            let mut v = u.describe();
            set(&mut v, "date", Value::String(date));
            v
        })
        .collect();
    let budget = key.budget.or(gate.default_budget);
    Ok(json!({
        "id": key.id,
        "object": "key.usage",
        "name": key.name,
        "total": total.describe(),
        "today": day.describe(),
        "this_month": month.describe(),
        "budget": budget.describe(),
        "budget_exceeded": budget.check(id, &day, &month, now).is_err(),
        "since": utc::day(from),
        "days": days,
    }))
}

const NEW_KEY_SHAPE: &str =
    "{\"name\": \"...\", \"rate_limit\"?: {\"per_minute\"?, \"per_hour\"?}, \
     \"budget\"?: {\"tokens_per_day\"?, \"tokens_per_month\"?, \"usd_per_day\"?, \
     \"usd_per_month\"?}, \"models\"?: [\"glob\", ...], \"routes\"?: [\"METHOD /v1/path-glob\", ...], \
     \"expires_at\"?: unix seconds}";
const PATCH_SHAPE: &str =
    "an object with any of \"name\", \"rate_limit\", \"budget\", \"models\", \"routes\", \
     \"expires_at\" (null clears a field)";

fn checked_new_key(new: NewKey) -> Result<StoredKey, ApiError> {
    let bad = |m: String| ApiError::invalid("invalid_request", m);
    check_name(&new.name)?;
    check_expiry(new.expires_at)?;
    Ok(StoredKey {
        id: String::new(),
        name: new.name,
        sha256: String::new(),
        rate_limit: RateLimit::from_raw(new.rate_limit, "rate_limit").map_err(bad)?,
        budget: Budget::from_raw(new.budget, "budget").map_err(bad)?,
        models: budget::models_from_raw(new.models, "models").map_err(bad)?,
        routes: route_policy::key_routes(new.routes, "routes").map_err(bad)?,
        expires_at: new.expires_at,
        created_at: 0,
    })
}

/// `key` with the fields of a `PATCH` body replaced (`null` clears one).
fn patched(mut key: StoredKey, patch: Map<String, Value>) -> Result<StoredKey, ApiError> {
    let bad = |m: String| ApiError::invalid("invalid_request", m);
    fn field<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<Option<T>, ApiError> {
        serde_json::from_value(v).map_err(|e| {
            ApiError::invalid("invalid_request", format!("`{name}` is not valid: {e}"))
        })
    }
    for (name, v) in patch {
        match name.as_str() {
            "name" => {
                let Value::String(n) = v else {
                    return Err(bad("`name` must be a string".to_string()));
                };
                check_name(&n)?;
                key.name = n;
            }
            "rate_limit" => {
                key.rate_limit =
                    RateLimit::from_raw(field(&name, v)?, "rate_limit").map_err(bad)?;
            }
            "budget" => key.budget = Budget::from_raw(field(&name, v)?, "budget").map_err(bad)?,
            "models" => {
                key.models = budget::models_from_raw(field(&name, v)?, "models").map_err(bad)?;
            }
            "routes" => {
                key.routes = route_policy::key_routes(field(&name, v)?, "routes").map_err(bad)?;
            }
            "expires_at" => {
                let t: Option<u64> = field(&name, v)?;
                check_expiry(t)?;
                key.expires_at = t;
            }
            other => {
                return Err(bad(format!(
                    "unknown field `{other}`; the body is {PATCH_SHAPE}"
                )))
            }
        }
    }
    Ok(key)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "invalid_request",
            "`name` must be 1 to 200 characters".to_string(),
        ));
    }
    Ok(())
}

fn check_expiry(t: Option<u64>) -> Result<(), ApiError> {
    if t.is_some_and(|t| t <= crate::util::now_secs()) {
        return Err(ApiError::invalid(
            "invalid_request",
            "`expires_at` (unix seconds) is in the past".to_string(),
        ));
    }
    Ok(())
}

/// Reads a JSON body of at most [`MAX_ADMIN_BODY`] bytes; `shape` says what it should be.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    req: &mut Request,
    (budget, in_flight): (Duration, u64),
    shape: &str,
) -> Result<T, ApiError> {
    intake::check_content_type(req)?;
    let mut reserved = crate::body_cost::Reservation::new(in_flight);
    let raw = intake::read_body(req, MAX_ADMIN_BODY, budget, &mut reserved)?;
    crate::json::from_slice(&raw)
        .map_err(|e| ApiError::invalid("invalid_request", format!("the body must be {shape}: {e}")))
}

/// Sets `field` of the JSON object `v` (nothing if `v` is not an object).
pub fn set(v: &mut Value, field: &str, x: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(field.to_string(), x);
    }
}

/// A key as the admin API shows it: no secret, no hash.
pub fn describe(k: &StoredKey, from_config: bool) -> Value {
    json!({
        "id": k.id,
        "object": "key",
        "name": k.name,
        "source": if from_config { "config" } else { "admin_api" },
        "rate_limit": k.rate_limit,
        "budget": k.budget.describe(),
        "models": k.models,
        // null: the default (`route_policy::key_allows`)
        "routes": (!k.routes.is_empty()).then_some(&k.routes),
        "expires_at": k.expires_at,
        "created_at": k.created_at,
    })
}
