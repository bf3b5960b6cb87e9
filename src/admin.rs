//! The admin API under `/admin/*` (the gate has already checked the admin key): create, list
//! and revoke client keys, and per-key usage.
//!
//! A created key's secret appears exactly once, in the 201 answer to `POST /admin/keys`; every
//! other answer carries ids and names only.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tiny_http::{Method, Request};

use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::intake;
use crate::keys_file::StoredKey;
use crate::limits::{RateLimit, RawRateLimit};
use crate::state::State;

/// The largest admin request body read.
const MAX_ADMIN_BODY: u64 = 64 * 1024;

/// `POST /admin/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    rate_limit: Option<RawRateLimit>,
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
    let gate = &state.gate;
    let (status, body) = match (route, method) {
        ("/admin/keys", Method::Post) => {
            let Some(req) = ex.request_mut() else {
                return Ok(());
            };
            let new = parse_new_key(
                req,
                state.config.client_timeout,
                state.config.max_body_bytes_in_flight,
            )?;
            let limit = RateLimit::from_raw(new.rate_limit, "rate_limit")
                .map_err(|m| ApiError::invalid("invalid_request", m))?;
            let (key, secret) = gate.keys.create(new.name, limit, new.expires_at)?;
            let mut v = describe(&key, false);
            if let Some(o) = v.as_object_mut() {
                o.insert("key".to_string(), Value::String(secret));
            }
            (201, v)
        }
        ("/admin/keys", Method::Get) => {
            let data: Vec<Value> = gate
                .keys
                .list()
                .iter()
                .map(|(k, cfg)| describe(k, *cfg))
                .collect();
            (200, json!({"object": "list", "data": data}))
        }
        ("/admin/stats", Method::Get) => {
            let data: Vec<Value> = gate
                .keys
                .list()
                .iter()
                .map(|(k, _)| {
                    let mut v = serde_json::to_value(gate.usage.get(&k.id))
                        .ok()
                        .and_then(|v| match v {
                            Value::Object(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or_default();
                    v.insert("id".to_string(), Value::String(k.id.clone()));
                    v.insert("name".to_string(), Value::String(k.name.clone()));
                    Value::Object(v)
                })
                .collect();
            (200, json!({"object": "list", "data": data}))
        }
        (r, Method::Delete) if r.starts_with("/admin/keys/") => {
            let id = r.strip_prefix("/admin/keys/").unwrap_or_default();
            gate.keys.revoke(id)?;
            gate.limiter.forget(id);
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
        (r, _) if r.starts_with("/admin/keys/") => {
            return Err(ApiError::method_not_allowed(
                method.as_str(),
                route,
                "DELETE",
            ))
        }
        _ => return Err(ApiError::not_found(route)),
    };
    ex.json(status, body.to_string().into_bytes());
    Ok(())
}

fn parse_new_key(req: &mut Request, budget: Duration, in_flight: u64) -> Result<NewKey, ApiError> {
    intake::check_content_type(req)?;
    let mut reserved = crate::body_cost::Reservation::new(in_flight);
    let raw = intake::read_body(req, MAX_ADMIN_BODY, budget, &mut reserved)?;
    let new: NewKey = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::invalid(
            "invalid_request",
            format!(
                "the body must be {{\"name\": \"...\", \"rate_limit\"?: {{\"per_minute\"?, \
                 \"per_hour\"?}}, \"expires_at\"?: unix seconds}}: {e}"
            ),
        )
    })?;
    if new.name.is_empty() || new.name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "invalid_request",
            "`name` must be 1 to 200 characters".to_string(),
        ));
    }
    if new.expires_at.is_some_and(|t| t <= crate::util::now_secs()) {
        return Err(ApiError::invalid(
            "invalid_request",
            "`expires_at` (unix seconds) is in the past".to_string(),
        ));
    }
    Ok(new)
}

/// A key as the admin API shows it: no secret, no hash.
fn describe(k: &StoredKey, from_config: bool) -> Value {
    json!({
        "id": k.id,
        "object": "key",
        "name": k.name,
        "source": if from_config { "config" } else { "admin_api" },
        "rate_limit": k.rate_limit,
        "expires_at": k.expires_at,
        "created_at": k.created_at,
    })
}
