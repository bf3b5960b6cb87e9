//! How a request goes upstream and how the cache keys it: [`prepare`] (translation to Chat
//! when no endpoint speaks the client's API, model rules, shaping) and [`keyed_body`], shared by
//! the relay and `llm-relay cache why`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::api::Api;
use crate::client_headers::ClientHeaders;
use crate::config::Config;
use crate::error::ApiError;
use crate::translate::{self, Dialect, Translation};
use crate::{rules, shape};

use super::Endpoint;

/// Request headers that change a Messages answer and so belong in its cache key.
pub const ANTHROPIC_KEYED_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

/// The body the cache keys a request by: the body itself (for Responses without the ids of
/// input items), plus for Messages the headers that select API behaviour (as `relay:<header>`
/// members, names no API body uses). `llm-relay cache why` keys through this too. Borrowed
/// when nothing is removed or added (most requests): the key needs no copy of the body.
pub fn keyed_body<'a>(
    endpoint: Endpoint,
    body: &'a Map<String, Value>,
    headers: ClientHeaders<'_>,
) -> Cow<'a, Map<String, Value>> {
    let mut keyed = Cow::Borrowed(body);
    if endpoint == Endpoint::Responses && has_input_ids(body) {
        // The `id` a client gives its own input items names them; it does not change the
        // answer (Codex CLI gives every item a fresh id each run). An `item_reference` is all id.
        if let Some(Value::Array(items)) = keyed.to_mut().get_mut("input") {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                    item.remove("id");
                }
            }
        }
    }
    if endpoint == Endpoint::Messages {
        for name in ANTHROPIC_KEYED_HEADERS {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
                .collect();
            if !values.is_empty() {
                keyed
                    .to_mut()
                    .insert(format!("relay:{name}"), Value::String(values.join(",")));
            }
        }
    }
    keyed
}

/// Whether a Responses body has an input item with an `id` that [`keyed_body`] removes.
fn has_input_ids(body: &Map<String, Value>) -> bool {
    let Some(Value::Array(items)) = body.get("input") else {
        return false;
    };
    items.iter().filter_map(Value::as_object).any(|item| {
        item.contains_key("id")
            && item.get("type").and_then(Value::as_str) != Some("item_reference")
    })
}

/// Whether the cache may answer or keep this request at all: a background Responses request
/// is answered by a queued response the client polls, never by a stored one.
pub(super) fn cacheable(endpoint: Endpoint, body: &Map<String, Value>) -> bool {
    !(endpoint == Endpoint::Responses && body.get("background") == Some(&Value::Bool(true)))
}

/// Where [`prepare`] sends a request.
pub struct Prepared {
    /// The endpoint the request goes to (Chat when translated).
    pub sent: Endpoint,
    /// The client's API when the request was translated to Chat Completions.
    pub translation: Option<Translation>,
    /// The client API's own `anthropic-*` headers stay behind: they mean nothing to the chat
    /// endpoint a Messages request was translated for (apply with
    /// [`ClientHeaders::without_anthropic`]).
    pub drops_anthropic: bool,
}

/// The body as it goes upstream and as the cache keys it (with [`keyed_body`]): translated to
/// a chat request if no endpoint for its model speaks the client's API (the client API's own
/// headers are then dropped), then model rules, then shaping of chat requests. The relay and
/// `llm-relay cache why` both prepare a request through this.
pub fn prepare(
    config: &Config,
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
) -> Result<Prepared, ApiError> {
    let translation = translation(config, endpoint, body).map(|d| {
        let mut t = Translation::new(d, body);
        // a Responses client on a model only `anthropic` endpoints serve: Chat is the pivot
        t.pivot = d == Dialect::Responses && pivots(config, body);
        t
    });
    let sent = if let Some(t) = &translation {
        *body = translate::to_chat(t.dialect, body).map_err(|e| {
            // through the pivot the endpoint speaks Messages, whichever step refuses
            let message = if t.pivot {
                e.message(Dialect::Chat)
            } else {
                e.message(t.dialect)
            };
            ApiError::invalid("untranslatable_field", message)
        })?;
        if t.pivot {
            *body = translate::to_chat(Dialect::Chat, body).map_err(|mut e| {
                // named as the client wrote it
                e.field = translate::pivot_field(&e.field);
                ApiError::invalid("untranslatable_field", e.message(Dialect::Chat))
            })?;
        }
        if t.dialect == Dialect::Chat || t.pivot {
            // the anthropic endpoint's own headers (key, version) are set at send time
            Endpoint::Messages
        } else {
            Endpoint::Chat
        }
    } else {
        endpoint
    };
    rules::apply(&config.rules, body);
    if sent == Endpoint::Chat {
        shape::apply_chat(&config.shaping, body);
    }
    let drops_anthropic = translation.is_some() && sent == Endpoint::Chat;
    Ok(Prepared {
        sent,
        translation,
        drops_anthropic,
    })
}

/// The client API a request on `endpoint` is translated from, if it is: when no endpoint that
/// serves its model (as the model rules leave it) speaks the client's API, but one speaks Chat
/// Completions.
pub fn translation(
    config: &Config,
    endpoint: Endpoint,
    body: &Map<String, Value>,
) -> Option<Dialect> {
    let (dialect, target) = match endpoint {
        Endpoint::Messages => (Dialect::Anthropic, Api::Chat),
        Endpoint::Responses => (Dialect::Responses, Api::Chat),
        Endpoint::Chat => (Dialect::Chat, Api::Anthropic),
        _ => return None,
    };
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    let model = ruled_model(config, asked);
    let up = &config.upstreams;
    let speaks =
        up.speaks(model, target) || (dialect == Dialect::Responses && pivots_to(config, model));
    (!up.speaks(model, endpoint.api()) && speaks).then_some(dialect)
}

/// True when a Responses request for the model in `body` goes to an `anthropic` endpoint through
/// Chat (no endpoint for it speaks Responses or Chat Completions).
pub(super) fn pivots(config: &Config, body: &Map<String, Value>) -> bool {
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    pivots_to(config, ruled_model(config, asked))
}

pub(super) fn pivots_to(config: &Config, model: &str) -> bool {
    let up = &config.upstreams;
    !up.speaks(model, Api::Responses)
        && !up.speaks(model, Api::Chat)
        && up.speaks(model, Api::Anthropic)
}

/// The model a request for `asked` goes upstream for, as the model rules set it.
pub fn ruled_model<'a>(config: &'a Config, asked: &'a str) -> &'a str {
    rules::select(&config.rules, asked)
        .and_then(|rule| rule.set.get("model"))
        .and_then(Value::as_str)
        .unwrap_or(asked)
}
