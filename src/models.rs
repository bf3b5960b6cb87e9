//! `GET /v1/models`: the upstream's model list plus each rule's model name, as far as the
//! client key's allow-list permits (runs on the
//! `workers` pool: it calls the upstream).

use serde_json::Value;

use crate::budget;
use crate::client_headers::ClientHeaders;
use crate::error::ApiError;
use crate::exchange::{header, json_content_type, Exchange};
use crate::rules;
use crate::state::State;
use crate::upstream;

/// `GET /v1/models`: the upstream's list plus each rule's model name, so clients can discover
/// the aliases the rules define.
pub fn models(state: &State, ex: &mut Exchange) -> Result<(), ApiError> {
    let auth = ex.request().and_then(|req| header(req, "authorization"));
    if let Some(auth) = &auth {
        let auth = [("Authorization".to_string(), auth.clone())];
        state
            .upstream
            .check_forwardable(ClientHeaders::pairs(&auth))?;
    }
    let trace = ex.trace();
    let sent = state
        .upstream
        .get("/models", auth.as_deref(), trace.as_deref())?;
    ex.access.upstream = sent.base;
    let response = sent.response;
    let status = response.status().as_u16();
    let headers = upstream::response_headers(response.headers());
    let data = state
        .upstream
        .read_body(&ex.access.upstream, response.into_body())?;
    let allowed = ex.client().map(|c| c.models.clone()).unwrap_or_default();
    let merged = (status == 200)
        .then(|| add_aliases(&data, &state.config.rules, &allowed))
        .flatten();
    match merged {
        Some(body) => {
            let mut headers: Vec<_> = headers
                .into_iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
                .collect();
            headers.push(json_content_type());
            ex.respond(status, &headers, body);
        }
        None => ex.respond(status, &headers, data),
    }
    Ok(())
}

/// Appends `{"id": alias, "object": "model", "owned_by": "llm-relay"}` for each rule alias not
/// already listed, then keeps what the key's allow-list `allowed` permits (all if empty).
/// `None` if the upstream's body is not a model list.
fn add_aliases(
    data: &[u8],
    rules: &[rules::Rule],
    allowed: &[crate::glob::Glob],
) -> Option<Vec<u8>> {
    let mut list: Value = crate::json::from_slice(data).ok()?;
    let entries = list.get_mut("data")?.as_array_mut()?;
    for alias in rules::aliases(rules) {
        let known = entries
            .iter()
            .any(|m| m.get("id").and_then(Value::as_str) == Some(alias));
        if !known {
            entries.push(serde_json::json!({
                "id": alias, "object": "model", "created": 0, "owned_by": "llm-relay"
            }));
        }
    }
    // as for a request: the name and what the rules turn it into must both be allowed
    entries.retain(|m| {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("");
        let target = rules::select(rules, id)
            .and_then(|r| r.set.get("model"))
            .and_then(Value::as_str)
            .unwrap_or(id);
        budget::model_allowed(allowed, id) && budget::model_allowed(allowed, target)
    });
    serde_json::to_vec(&list).ok()
}
