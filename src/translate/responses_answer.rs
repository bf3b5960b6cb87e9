//! A chat completion as an OpenAI Responses `response` object: the chat message becomes
//! `output` items (`reasoning`, `message`, `function_call`), `finish_reason` the `status`, usage
//! is renamed, and the request's `instructions`, `tools`, `tool_choice`, sampling and the like
//! are repeated as OpenAI repeats them ([`echo`]). The item builders serve the stream
//! translator too.

use serde_json::{json, Map, Value};

use super::{answered, chat_usage, first_choice, object};

/// Responses `usage` from a chat `usage`.
pub fn usage(chat: Option<&Value>) -> Value {
    let u = chat_usage(chat);
    json!({
        "input_tokens": u.prompt(),
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.total(),
    })
}

/// `status` and `incomplete_details` for a chat `finish_reason`.
pub fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The ids of one answer's items, derived from the chat completion id so that a replay of the
/// same answer gives the same ids.
pub struct Ids {
    pub base: String,
}

impl Ids {
    pub fn new(chat_id: Option<&str>) -> Ids {
        Ids {
            base: chat_id.unwrap_or("relay").to_string(),
        }
    }
    pub fn response(&self) -> String {
        format!("resp_{}", self.base)
    }
    pub fn item(&self, kind: &str, n: usize) -> String {
        format!("{kind}_{}_{n}", self.base)
    }
}

/// The request fields a `response` object repeats, as OpenAI's does: the client's value, or
/// the API's default when it sent none (or `null`).
pub fn echo(request: &Map<String, Value>) -> Map<String, Value> {
    let defaults = [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("metadata", json!({})),
        ("parallel_tool_calls", json!(true)),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("store", json!(true)),
        ("temperature", json!(1.0)),
        ("text", json!({"format": {"type": "text"}})),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("top_p", json!(1.0)),
    ];
    defaults
        .into_iter()
        .map(|(k, default)| {
            let v = request.get(k).filter(|v| !v.is_null()).cloned();
            (k.to_string(), v.unwrap_or(default))
        })
        .collect()
}

/// A whole `response` object around `output` (the shape of `response.completed` too), with
/// the request's fields it repeats (`echo`).
pub fn response_object(
    chat: &Value,
    ids: &Ids,
    status: (&str, Value),
    output: Vec<Value>,
    usage: Value,
    echo: &Map<String, Value>,
) -> Value {
    let mut response = object([
        ("id", Value::String(ids.response())),
        ("object", json!("response")),
        (
            "created_at",
            chat.get("created").cloned().unwrap_or(json!(0)),
        ),
        ("status", json!(status.0)),
        ("incomplete_details", status.1),
        ("error", Value::Null),
        ("model", chat.get("model").cloned().unwrap_or(json!(""))),
        ("output", Value::Array(output)),
        ("usage", usage),
    ]);
    if let Some(o) = response.as_object_mut() {
        o.extend(echo.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    response
}

pub fn message_item(id: String, status: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

pub fn call_item(
    id: String,
    status: &str,
    call_id: &Value,
    name: &Value,
    arguments: &str,
) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": call_id, "name": name, "arguments": arguments,
    })
}

pub fn reasoning_item(id: String, text: &str) -> Value {
    json!({
        "id": id, "type": "reasoning", "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    })
}

/// The Responses answer for a chat completion (`echo`: what it repeats of the request).
///
/// `base` names the answer's ids when given (a stored response's fresh id), else the chat
/// completion's id does.
pub fn answer(chat: &Value, echo: &Map<String, Value>, base: Option<&str>) -> Value {
    let (message, finish) = first_choice(chat);
    let ids = Ids::new(base.or_else(|| chat.get("id").and_then(Value::as_str)));
    let parts = answered(message);
    let mut output = Vec::new();
    if let Some(r) = parts.reasoning {
        output.push(reasoning_item(ids.item("rs", output.len()), r));
    }
    if !parts.text.is_empty() {
        let id = ids.item("msg", output.len());
        output.push(message_item(id, "completed", &parts.text));
    }
    for (call_id, name, args) in parts.calls {
        let id = ids.item("fc", output.len());
        output.push(call_item(id, "completed", &call_id, &name, args));
    }
    let usage = usage(chat.get("usage"));
    response_object(chat, &ids, status(finish), output, usage, echo)
}
