//! Stored translated responses on requests: a `/v1/responses` request translated to Chat
//! Completions with `store` not false is kept (its Response object and input, owned by the
//! key that made it through `owners`) for `state.responses_store_days`, so that
//! `GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and a later
//! `previous_response_id` work for it. Storage is `store::Responses` (Redis, `state.dir` or
//! bounded memory).
//!
//! Each stored answer gets a fresh id (`resp_<32 hex>`, its items `msg_<hex>_<n>`, …), cache
//! hits included; an answer with `store: false` is never kept and keeps the ids derived from
//! the chat completion.

use serde_json::{json, Map, Value};

use crate::auth::Client;
use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::objects::{self, Kind, Route};
use crate::state::State;
use crate::store::{Responses, Stored};
use crate::translate::Translation;

/// Whether a Responses request asks to be stored (`store` defaults to true).
pub fn asked(body: &Map<String, Value>) -> bool {
    body.get("store") != Some(&Value::Bool(false))
}

/// A fresh id base for a stored answer.
pub fn fresh_base() -> Result<String, ApiError> {
    Ok(crate::util::hex(&crate::auth::random_bytes::<16>()?))
}

/// The input of a Responses request as items (a string is one user message).
fn input_items(body: &Map<String, Value>) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// What a translated request keeps for storing: its own input, and the conversation it
/// continues (empty without `previous_response_id`).
#[derive(Debug, Default)]
pub struct Pending {
    pub input: Vec<Value>,
    pub prefix: Vec<Value>,
}

/// For a request translated from Responses: replaces `previous_response_id` by the stored
/// conversation (its inputs and output items) in front of `input`. `Err` with the answer
/// (OpenAI's 400) when the id is not a stored response the relay can use.
pub fn continue_conversation(
    state: &State,
    body: &mut Map<String, Value>,
) -> Result<Result<Pending, (u16, Vec<u8>)>, ApiError> {
    continue_from(&state.gate.responses, body)
}

/// [`continue_conversation`] with the stored responses of `responses` (`cache why` reads them
/// without a running relay).
pub fn continue_from(
    responses: &Responses,
    body: &mut Map<String, Value>,
) -> Result<Result<Pending, (u16, Vec<u8>)>, ApiError> {
    let input = input_items(body);
    if !matches!(
        body.get("input"),
        None | Some(Value::String(_) | Value::Array(_))
    ) {
        // translation refuses the input itself, naming it
        return Ok(Ok(Pending::default()));
    }
    let id = match body.remove("previous_response_id") {
        None | Some(Value::Null) => {
            return Ok(Ok(Pending {
                input,
                prefix: Vec::new(),
            }))
        }
        Some(Value::String(id)) => id,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_type",
                "`previous_response_id` must be a string".to_string(),
            ))
        }
    };
    let Some(stored) = responses.get(&id).map_err(unavailable)? else {
        return Ok(Err(objects::unknown_reference(Kind::Response, &id)));
    };
    let mut prefix = stored.context;
    prefix.extend(
        stored
            .response
            .get("output")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    );
    let mut whole = prefix.clone();
    whole.extend(input.iter().cloned());
    body.insert("input".into(), Value::Array(whole));
    Ok(Ok(Pending { input, prefix }))
}

/// For `cache why`: a translated Responses request with `previous_response_id` gets the stored
/// conversation in front of its input, as the relay does before keying it (`Ok(Some((id, items
/// in front)))`); `Err` explains why there is no key to show instead (the relay would answer
/// OpenAI's 400, or the stored responses are not readable here).
pub fn continued_for_why(
    cfg: &Config,
    body: &mut Map<String, Value>,
    responses: Option<&Responses>,
) -> Result<Result<Option<(String, usize)>, String>, String> {
    let Some(id) = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(Ok(None));
    };
    let Some(responses) = responses else {
        let kept = if cfg.state.redis.is_some() {
            "in Redis"
        } else {
            "in the relay's memory"
        };
        return Ok(Err(format!(
            "this request continues the stored response {id}: the relay puts that response's \
             conversation (its inputs and output items) in front of `input` and keys the whole, \
             so the key depends on what is stored. The command reads stored responses only from \
             `state.dir`, and this configuration keeps them {kept}: use `why` on the dashboard's \
             Cache page, which reads them where the relay keeps them.\n"
        )));
    };
    match continue_from(responses, body) {
        Ok(Ok(pending)) => Ok(Ok(Some((id, pending.prefix.len())))),
        Ok(Err(_)) => Ok(Err(format!(
            "this request continues {id}, which is not a stored response (expired, deleted, \
             made with `store: false`, or not made by this relay): the relay answers it with \
             OpenAI's 400 `previous_response_not_found`, looks in no cache and keeps nothing.\n"
        ))),
        Err(e) => Err(e.message),
    }
}

fn unavailable(_: crate::store::Down) -> ApiError {
    ApiError::busy(
        "state_unavailable",
        "stored responses (`state.redis`) cannot be reached; retry shortly".to_string(),
        1,
    )
}

/// Keeps the translated answer `response` (JSON) of a request that asked to be stored, and
/// records the caller as the owner of it and its output items. Failures are logged: the
/// client still gets its answer.
pub fn keep(state: &State, client: Option<&Client>, pending: &Pending, response: &Value) {
    let Some(id) = response.get("id").and_then(Value::as_str) else {
        return;
    };
    let days = state.config.state.responses_store_days;
    let mut context = pending.prefix.clone();
    context.extend(pending.input.iter().cloned());
    let stored = Stored {
        response: response.clone(),
        input: pending.input.clone(),
        context,
        expires: crate::util::now_secs().saturating_add(days.saturating_mul(86_400)),
    };
    if state.gate.responses.put(id, &stored).is_err() {
        crate::log::error(&format!("translated response {id} could not be stored"));
        return;
    }
    if let Some(client) = client {
        for item in ids_of(response) {
            crate::owners::record(state, item, &client.key_id);
        }
    }
}

/// The ids a stored response owns: its own and its output items' (an `item_reference` names
/// those).
fn ids_of(response: &Value) -> Vec<&str> {
    let items = response.get("output").and_then(Value::as_array);
    let items = items.into_iter().flatten();
    std::iter::once(response.get("id").and_then(Value::as_str))
        .chain(items.map(|i| i.get("id").and_then(Value::as_str)))
        .flatten()
        .collect()
}

/// Keeps a translated answer given as the client's JSON bytes.
pub fn keep_bytes(state: &State, client: Option<&Client>, pending: &Pending, answer: &[u8]) {
    if let Ok(v) = crate::json::from_slice::<Value>(answer) {
        keep(state, client, pending, &v);
    }
}

/// Keeps the answer a complete upstream answer (`chat`: JSON, or a recorded stream; a Messages
/// one when the translation pivots through Chat) becomes.
pub fn keep_chat(
    state: &State,
    client: Option<&Client>,
    pending: &Pending,
    translation: &Translation,
    chat: &[u8],
) {
    let Some(plain) = crate::cache::complete_answer(translation.upstream_route(), chat) else {
        return; // a stream that broke off answered nothing worth keeping
    };
    if let Ok(chat) = crate::json::from_slice::<Value>(&plain) {
        keep(state, client, pending, &translation.answer(&chat));
    }
}

/// `GET`/`DELETE /v1/responses/{id}` (`?stream=true`: replayed as its stream events, from
/// after `starting_after`) and `GET /v1/responses/{id}/input_items` of a stored translated
/// response (ownership was checked before). `false`: not one the relay stored
/// (the request goes upstream).
pub fn serve(
    state: &State,
    ex: &mut Exchange,
    method: &str,
    target: &str,
) -> Result<bool, ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Route::Object {
        kind: Kind::Response,
        id,
        rest,
    } = Route::of(method, path)
    else {
        return Ok(false);
    };
    let Some(stored) = state.gate.responses.get(&id).map_err(unavailable)? else {
        return Ok(false);
    };
    match (method, rest.as_str()) {
        ("GET", "") if param(query, "stream") == Some("true") => {
            let after = match param(query, "starting_after") {
                None => None,
                Some(n) => Some(n.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        "invalid_value",
                        format!("`starting_after` must be a whole number; got {n:?}"),
                    )
                })?),
            };
            let events = crate::translate::replay_response(&stored.response, after);
            let headers = [
                ("Content-Type".to_string(), "text/event-stream".to_string()),
                ("Cache-Control".to_string(), "no-cache".to_string()),
            ];
            ex.respond(200, &headers, events);
        }
        ("GET", "") => ex.json(200, stored.response.to_string().into_bytes()),
        ("DELETE", "") => {
            state.gate.responses.delete(&id).map_err(unavailable)?;
            for item in ids_of(&stored.response) {
                if state.gate.owners.forget(item).is_err() {
                    crate::log::error(&format!("the owner of deleted response {item:?} stays"));
                }
            }
            let body = json!({"id": id, "object": "response", "deleted": true});
            ex.json(200, body.to_string().into_bytes());
        }
        ("GET", "/input_items") => {
            let list = list_items(&id, &stored.input, query)?;
            ex.json(200, list.to_string().into_bytes());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The value of query parameter `name`.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}

/// The input items as the API lists them: each a typed item with an id (a message's string
/// content as one `input_text` part), in `order` (default `desc`), from after `after`, at most
/// `limit` (1 to 100, default 20).
fn list_items(id: &str, input: &[Value], query: &str) -> Result<Value, ApiError> {
    let base = id.strip_prefix("resp_").unwrap_or(id);
    let mut items: Vec<Value> = input
        .iter()
        .enumerate()
        .map(|(n, item)| listed_item(base, n, item))
        .collect();
    let param = |name: &str| param(query, name);
    match param("order") {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_value",
                format!("`order` must be asc or desc; got {other:?}"),
            ))
        }
    }
    let limit = match param("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_value",
                "`limit` must be a whole number from 1 to 100".to_string(),
            ))
        }
    };
    if let Some(after) = param("after") {
        let at = items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after));
        items = match at {
            Some(at) => items.split_off(at + 1),
            None => Vec::new(),
        };
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items.first().and_then(|i| i.get("id")).cloned();
    let last = items.last().and_then(|i| i.get("id")).cloned();
    Ok(
        json!({"object": "list", "data": items, "first_id": first, "last_id": last,
        "has_more": has_more}),
    )
}

fn listed_item(base: &str, n: usize, item: &Value) -> Value {
    let mut item = item.clone();
    let Some(o) = item.as_object_mut() else {
        return item;
    };
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_string();
    o.insert("type".into(), json!(kind));
    if kind == "message" {
        let role = o.get("role").and_then(Value::as_str).unwrap_or("user");
        let part = if role == "assistant" {
            "output_text"
        } else {
            "input_text"
        };
        if let Some(Value::String(text)) = o.get("content") {
            let content = json!([{"type": part, "text": text}]);
            o.insert("content".into(), content);
        }
        o.entry("status").or_insert(json!("completed"));
    }
    if !o.contains_key("id") {
        o.insert("id".into(), json!(format!("msg_{base}_in{n}")));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_items_list_newest_first_with_ids_and_pages() {
        let input = vec![
            json!({"role": "user", "content": "one"}),
            json!({"type": "function_call_output", "call_id": "c", "output": "x"}),
            json!({"role": "user", "content": [{"type": "input_text", "text": "three"}]}),
        ];
        let all = list_items("resp_ab", &input, "").unwrap();
        let ids: Vec<&str> = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["msg_ab_in2", "msg_ab_in1", "msg_ab_in0"]);
        assert_eq!(all["data"][2]["content"][0]["type"], "input_text");
        assert_eq!(all["data"][2]["type"], "message");
        let page = list_items("resp_ab", &input, "order=asc&limit=1&after=msg_ab_in0").unwrap();
        assert_eq!(page["data"][0]["id"], "msg_ab_in1");
        assert_eq!(page["has_more"], true);
        assert!(list_items("resp_ab", &input, "limit=0").is_err());
    }
}
