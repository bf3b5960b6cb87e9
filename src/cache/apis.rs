//! Which API's rules a stored response follows: the chat family's (`replay.rs`) or those of
//! the Responses and Messages APIs (`api::responses`, `api::messages`), chosen by the route the
//! entry was stored for.

use serde_json::Value;

use super::replay::{self, Form};
use crate::api::{self, Api};

/// `Ok(form)` for a complete success worth storing for `route`, else why not.
pub fn check(route: &str, response: &[u8]) -> Result<Form, &'static str> {
    if response.iter().all(u8::is_ascii_whitespace) {
        return Err("empty response");
    }
    let form = replay::form(response);
    let stream = form == Form::Sse;
    match api::of_route(route) {
        Api::Chat => replay::check(response),
        Api::Responses => api::responses::check(response, stream).map(|()| form),
        Api::Anthropic => api::messages::check(response, stream).map(|()| form),
    }
}

/// The plain answer of a stored stream.
pub fn sse_to_json(api: Api, response: &[u8]) -> Option<Value> {
    match api {
        Api::Chat => replay::sse_to_json(response),
        Api::Responses => api::responses::sse_to_json(response),
        Api::Anthropic => api::messages::sse_to_json(response),
    }
}

/// The events a streamed request gets for a stored plain answer.
pub fn json_to_sse(api: Api, answer: &Value, include_usage: bool) -> Vec<Vec<u8>> {
    match api {
        Api::Chat => replay::json_to_sse(answer, include_usage),
        Api::Responses => api::responses::json_to_sse(answer),
        Api::Anthropic => api::messages::json_to_sse(answer),
    }
}

/// The tokens a hit on this entry saves (input plus output).
pub fn total_tokens(route: &str, response: &[u8]) -> u64 {
    match api::of_route(route) {
        Api::Chat => replay::total_tokens(response),
        Api::Responses | Api::Anthropic => {
            let (input, output) = match replay::form(response) {
                Form::Json => crate::usage::tokens(response),
                Form::Sse => crate::usage::stream_tokens(response),
            };
            input + output
        }
    }
}
