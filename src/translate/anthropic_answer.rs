//! A chat completion as an Anthropic Messages answer: the chat message becomes content blocks
//! (`reasoning_content` → `thinking`, text, `tool_use`), `finish_reason` becomes `stop_reason`
//! (`stop_sequence` with its value when the upstream says which stop string matched),
//! usage is counted as Anthropic counts it (input tokens without cache reads).

use serde_json::{json, Map, Value};

use super::{answered, chat_usage, first_choice};

/// Anthropic `stop_reason` and `stop_sequence` for a chat `finish_reason` and the stop string
/// the upstream says matched (`choices[].stop_reason` of vLLM and SGLang).
pub fn stop_reason(finish: Option<&str>, matched: Option<&str>) -> (&'static str, Value) {
    let reason = match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        Some("stop") | None if matched.is_some() => "stop_sequence",
        _ => "end_turn",
    };
    let sequence = match (reason, matched) {
        ("stop_sequence", Some(m)) => json!(m),
        _ => Value::Null,
    };
    (reason, sequence)
}

/// The stop string a chat choice says matched: its `stop_reason` when that is a string (a
/// number is a stop token's id, no sequence of the client's).
pub fn matched_stop(choice: Option<&Value>) -> Option<&str> {
    choice
        .and_then(|c| c.get("stop_reason"))
        .and_then(Value::as_str)
}

/// Anthropic `usage` from a chat `usage`: input tokens exclude cache reads, as Anthropic counts.
pub fn usage(chat: Option<&Value>) -> Value {
    let usage = chat_usage(chat);
    let mut u = Map::new();
    u.insert("input_tokens".into(), json!(usage.input));
    u.insert("output_tokens".into(), json!(usage.output));
    if usage.cache_read > 0 {
        u.insert("cache_read_input_tokens".into(), json!(usage.cache_read));
    }
    Value::Object(u)
}

/// The Anthropic `message` id for a chat completion id.
pub fn message_id(chat_id: Option<&str>) -> String {
    format!("msg_{}", chat_id.unwrap_or("relay"))
}

/// The Anthropic answer for a chat completion.
pub fn answer(chat: &Value) -> Value {
    let (message, finish) = first_choice(chat);
    let stop = stop_reason(finish, matched_stop(chat.pointer("/choices/0")));
    let parts = answered(message);
    let mut content = Vec::new();
    if let Some(r) = parts.reasoning {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if !parts.text.is_empty() {
        content.push(json!({"type": "text", "text": parts.text}));
    }
    for (id, name, args) in parts.calls {
        content
            .push(json!({"type": "tool_use", "id": id, "name": name, "input": tool_input(args)}));
    }
    json!({
        "id": message_id(chat.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model").cloned().unwrap_or(json!("")),
        "content": content,
        "stop_reason": stop.0,
        "stop_sequence": stop.1,
        "usage": usage(chat.get("usage")),
    })
}

/// A tool call's `arguments` string as the `input` object. Arguments that are not a JSON
/// object are kept visible as `{"arguments": "<text>"}` rather than lost.
pub fn tool_input(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"arguments": args}),
    }
}
