//! Which API's rules a stored response follows, and answering in the shape a request asked
//! for: the chat family's (`replay/`) or those of the Responses and Messages APIs
//! (`api::responses`, `api::messages`), chosen by the route the entry was stored for.

use std::borrow::Cow;

use serde_json::Value;

use super::replay::{self, Delivery, Form};
use crate::answer::Answer;
use crate::api::{self, Api};

/// `Ok(form)` for a complete success worth storing for `route`, else why not.
pub fn check(route: &str, response: &[u8]) -> Result<Form, &'static str> {
    check_read(route, response, &read(route, response))
}

/// A response of `route` read once (its form, parsed JSON and usage).
pub fn read(route: &str, response: &[u8]) -> Answer {
    Answer::read(api::of_route(route), response)
}

/// [`check`] of a response already read (`read`: [`read`] of the same bytes).
pub fn check_read(route: &str, response: &[u8], read: &Answer) -> Result<Form, &'static str> {
    if response.iter().all(u8::is_ascii_whitespace) {
        return Err("empty response");
    }
    let form = read.form;
    match api::of_route(route) {
        Api::Chat => replay::check(response, read),
        Api::Responses => api::responses::check(response, read).map(|()| form),
        Api::Anthropic => api::messages::check(response, read).map(|()| form),
    }
}

/// The plain answer of a stored stream.
fn sse_to_json(api: Api, response: &[u8]) -> Option<Value> {
    match api {
        Api::Chat => replay::sse_to_json(response),
        Api::Responses => api::responses::sse_to_json(response),
        Api::Anthropic => api::messages::sse_to_json(response),
    }
}

/// The events a streamed request gets for a stored plain answer.
fn json_to_sse(api: Api, answer: &Value, include_usage: bool) -> Vec<Vec<u8>> {
    match api {
        Api::Chat => replay::json_to_sse(answer, include_usage),
        Api::Responses => api::responses::json_to_sse(answer),
        Api::Anthropic => api::messages::json_to_sse(answer),
    }
}

/// Whether a stored answer can be served in `delivery`'s shape. Chat family: a usage chunk
/// exactly when asked, and `usage` in a plain answer whenever the upstream reported one; a
/// stream recorded without usage (an upstream that refused `stream_options`) serves only
/// streams that did not ask for it, a plain answer without usage cannot give a usage chunk,
/// and embeddings are never streamed. The Responses and Messages streams always carry usage.
pub fn serves(route: &str, response: &[u8], has_usage: bool, delivery: Delivery) -> bool {
    match api::of_route(route) {
        Api::Responses | Api::Anthropic => true,
        Api::Chat if !asks_usage(route) => !delivery.stream,
        Api::Chat => {
            let needs_usage = match replay::form(response) {
                Form::Json => delivery.include_usage,
                Form::Sse => !delivery.stream || delivery.include_usage,
            };
            !needs_usage || has_usage
        }
    }
}

/// The body a plain request gets.
pub fn plain_body(route: &str, response: &[u8]) -> Vec<u8> {
    plain_body_of(route, response).into_owned()
}

/// [`plain_body`], borrowed where the stored answer is already plain JSON (a hit's body is
/// written from the entry itself, not from a copy of it).
pub fn plain_body_of<'a>(route: &str, response: &'a [u8]) -> Cow<'a, [u8]> {
    match replay::form(response) {
        Form::Sse => match sse_to_json(api::of_route(route), response) {
            Some(v) => Cow::Owned(v.to_string().into_bytes()),
            None => Cow::Borrowed(response),
        },
        Form::Json => Cow::Borrowed(response),
    }
}

/// The events a streamed request gets: a recorded stream's own events (a chat stream's usage
/// chunk only if asked for), or a plain answer cut into events.
pub fn stream_events(route: &str, response: &[u8], include_usage: bool) -> Vec<Vec<u8>> {
    match replay::form(response) {
        Form::Sse => replay::events(response)
            .into_iter()
            .filter(|e| include_usage || !is_usage_only(route, e))
            .map(<[u8]>::to_vec)
            .collect(),
        Form::Json => {
            let answer: Value = crate::json::from_slice(response).unwrap_or(Value::Null);
            json_to_sse(api::of_route(route), &answer, include_usage)
        }
    }
}

/// True for a chat stream's usage-only chunk (`"choices": []`), which a client gets only when
/// it asked for `stream_options.include_usage`.
pub fn is_usage_only(route: &str, event: &[u8]) -> bool {
    asks_usage(route) && replay::is_usage_only(event)
}

/// Whether the relay asks this route's streaming upstreams for usage
/// (`stream_options.include_usage`), so that every recorded stream can serve every shape.
pub fn asks_usage(route: &str) -> bool {
    matches!(route, "/chat/completions" | "/completions")
}

/// A complete answer of `route` (JSON, or a recorded stream) as its plain JSON body; `None`
/// for a stream that broke off.
pub fn complete_answer(route: &str, response: &[u8]) -> Option<Vec<u8>> {
    check(route, response).ok()?;
    Some(plain_body(route, response))
}
