//! `llm-relay cache why` (the command and the dashboard): a request body prepared as the relay
//! would, its route guessed from the body when not given.

use serde_json::{Map, Value};

use crate::cache;
use crate::client_headers::ClientHeaders;
use crate::config::Config;
use crate::store::Responses;
use crate::stored;
use crate::translate::Dialect;

use super::prepare::{keyed_body, prepare, translation};
use super::Endpoint;

/// Whether a body with `input` is an embeddings request rather than a Responses one: only the
/// embeddings API's keys, and an `input` of text or token ids (a Responses `input` may hold
/// message objects). `{"model", "input": "text"}` fits both and counts as embeddings.
pub(super) fn looks_like_embeddings(body: &Map<String, Value>) -> bool {
    const EMBEDDINGS: [&str; 5] = ["model", "input", "encoding_format", "dimensions", "user"];
    let text_or_ids = |v: &Value| !v.is_object() && !v.is_array();
    body.keys().all(|k| EMBEDDINGS.contains(&k.as_str()))
        && match body.get("input") {
            Some(Value::Array(items)) => items
                .iter()
                .all(|i| text_or_ids(i) || i.as_array().is_some_and(|t| t.iter().all(text_or_ids))),
            _ => true,
        }
}

/// `cache why` (the command and the dashboard): prepares `body` as the relay would (translation,
/// rules, shaping, the keyed headers: [`prepare`] and [`keyed_body`]) on `route` (guessed from
/// the body when `None`), and asks the cache which keys it has and what is closest (reading at
/// most `bound`'s number of recorded requests).
pub fn why(
    cfg: &Config,
    route: Option<&str>,
    mut body: Map<String, Value>,
    headers: Vec<(String, String)>,
    bound: cache::WhyBound,
    responses: Option<&Responses>,
) -> Result<String, String> {
    let anthropic = headers
        .iter()
        .any(|(name, _)| name.to_ascii_lowercase().starts_with("anthropic-"));
    let endpoint = match route.map(|r| r.strip_prefix("/v1").unwrap_or(r)) {
        Some(r) => Endpoint::of_path(r).ok_or_else(|| {
            format!(
                "route {r}: use /chat/completions, /completions, /embeddings, /responses or \
                 /messages"
            )
        })?,
        None if body.contains_key("messages") && anthropic => Endpoint::Messages,
        None if body.contains_key("messages") => Endpoint::Chat,
        None if body.contains_key("prompt") => Endpoint::Completions,
        None if body.contains_key("input") && !looks_like_embeddings(&body) => Endpoint::Responses,
        None if body.contains_key("input") => Endpoint::Embeddings,
        None => {
            return Err(
                "cannot tell the route from the body; give the route (/chat/completions, \
                 /completions, /embeddings, /responses or /messages)"
                    .to_string(),
            )
        }
    };
    let continued = if translation(cfg, endpoint, &body) == Some(Dialect::Responses) {
        match stored::continued_for_why(cfg, &mut body, responses)? {
            Ok(continued) => continued,
            Err(explained) => return Ok(explained),
        }
    } else {
        None
    };
    let prepared = prepare(cfg, endpoint, &mut body).map_err(|e| e.message)?;
    let endpoint = prepared.sent;
    let headers = ClientHeaders::pairs(&headers).without_anthropic(prepared.drops_anthropic);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let models = cfg.upstreams.effective_models(endpoint.api(), model);
    let keyed = keyed_body(endpoint, &body, headers);
    let text = cache::why_command(&cfg.cache, endpoint.path(), &keyed, headers, &models, bound)?;
    Ok(match continued {
        Some((id, n)) => format!(
            "continues the stored response {id}: its conversation ({n} items) is in front of \
             `input`, as the relay keys it\n{text}"
        ),
        None => text,
    })
}
