//! The client APIs the relay speaks, one file each for what is particular to its wire format.
//!
//! Chat Completions (and completions, embeddings) is the core's format: its stream shape and
//! cache conversions live in `api/completion.rs`, `sse/` and `cache/replay/`. The Responses API
//! ([`responses`]) and Anthropic Messages ([`messages`]) stream typed events
//! (`event: TYPE` + `data: {"type": TYPE, ...}`); each file says when such a stream is complete,
//! when an answer is a success worth caching, and how a recorded stream and a plain answer turn
//! into each other. [`crate::passthrough`] relays every other `/v1/` route unchanged. Translation
//! between these formats and Chat Completions lives in `translate/`.

mod completion;
pub mod messages;

pub mod responses;

use serde_json::{json, Value};

pub use crate::answer::Api;
pub use completion::Completion;

/// The API a request path belongs to (with or without `/v1`).
pub fn of_path(path: &str) -> Api {
    of_route(path.strip_prefix("/v1").unwrap_or(path))
}

/// The API a route (the path below `/v1`) belongs to: `/responses` → Responses, `/messages`
/// → Anthropic, anything else the OpenAI chat family.
pub fn of_route(route: &str) -> Api {
    let top = route.split('/').nth(1).unwrap_or("");
    match top {
        "responses" => Api::Responses,
        "messages" => Api::Anthropic,
        _ => Api::Chat,
    }
}

/// How a typed event stream stands after the events seen so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// No terminal event yet: a stream that stops here was cut.
    #[default]
    Open,
    /// The success terminal (`response.completed`, `message_stop`).
    Succeeded,
    /// A failure terminal (`response.failed`, `response.incomplete`, `error`): the upstream
    /// ended the stream properly, but it is not an answer to keep.
    Failed,
}

/// What the event `kind` means for a stream of `api` (`None`: not a terminal event).
pub fn terminal(api: Api, kind: &str) -> Option<Ending> {
    match api {
        Api::Responses => responses::terminal(kind),
        Api::Anthropic => messages::terminal(kind),
        Api::Chat => None,
    }
}

/// The `type` member of an event's JSON data.
pub fn event_type(data: &[u8]) -> Option<String> {
    let v: Value = crate::json::from_slice(data).ok()?;
    v.get("type")?.as_str().map(str::to_string)
}

/// One typed SSE event: `event: TYPE` and the JSON as its `data:` line.
pub fn typed_event(v: &Value) -> Vec<u8> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("message");
    format!("event: {kind}\ndata: {v}\n\n").into_bytes()
}

/// The SSE event that ends a stream cut short, in the client API's own error shape.
pub fn cut_event(api: Api, message: &str) -> Vec<u8> {
    match api {
        Api::Chat => {
            let v = json!({"error": {
                "message": message, "type": "upstream_error", "code": "upstream_stream_interrupted"
            }});
            format!("data: {v}\n\n").into_bytes()
        }
        Api::Responses => typed_event(&json!({
            "type": "error", "code": "upstream_stream_interrupted", "message": message,
            "param": null,
        })),
        Api::Anthropic => typed_event(&json!({
            "type": "error", "error": {"type": "api_error", "message": message},
        })),
    }
}

/// The data payloads of a recorded stream's `data:` lines (trimmed), in order.
pub fn data_lines(recorded: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::answer::lines(recorded).filter_map(crate::answer::data_payload)
}

/// Sets `key` of `v` when `v` is an object (a no-op for anything else, which has no members).
pub fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

/// Appends `piece` (a string) to the string member `key` of `acc`, creating it.
pub fn append_str(acc: &mut serde_json::Map<String, Value>, key: &str, piece: Option<&Value>) {
    let Some(piece) = piece.and_then(Value::as_str) else {
        return;
    };
    match acc.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            acc.insert(key.to_string(), Value::String(piece.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_belong_to_apis() {
        let cases = [
            ("/responses", Api::Responses),
            ("/responses/resp_1/cancel", Api::Responses),
            ("/messages", Api::Anthropic),
            ("/messages/count_tokens", Api::Anthropic),
            ("/chat/completions", Api::Chat),
            ("/audio/speech", Api::Chat),
        ];
        for (route, want) in cases {
            assert_eq!(of_route(route), want, "{route}");
        }
    }

    #[test]
    fn cut_events_speak_each_api() {
        let r = String::from_utf8(cut_event(Api::Responses, "gone")).unwrap();
        assert!(r.starts_with("event: error\ndata: {"), "{r}");
        let a = String::from_utf8(cut_event(Api::Anthropic, "gone")).unwrap();
        assert!(
            a.contains(r#""error":{"message":"gone","type":"api_error"}"#),
            "{a}"
        );
        let c = String::from_utf8(cut_event(Api::Chat, "gone")).unwrap();
        assert!(c.starts_with("data: {\"error\""), "{c}");
    }
}
