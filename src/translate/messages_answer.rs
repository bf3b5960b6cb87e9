//! An Anthropic Messages answer as a chat completion (the reverse of `anthropic_answer.rs`):
//! text blocks → `content`, `tool_use` → `tool_calls` (arguments: the input as a JSON string),
//! `thinking` → `reasoning_content` (and the blocks whole, signatures included, in
//! `thinking_blocks`, as LiteLLM names them, for the next turn to send back), `stop_reason` → `finish_reason`, usage → chat usage
//! (prompt tokens include cache reads and writes; `cached_tokens` the reads).

use serde_json::{json, Map, Value};

use crate::answer::Usage;

/// The chat `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Chat `usage` from an Anthropic `usage` object.
pub fn usage(messages: &Value) -> Value {
    let u = Usage::messages(messages);
    json!({
        "prompt_tokens": u.prompt(),
        "completion_tokens": u.output,
        "total_tokens": u.total(),
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    })
}

/// The chat completion id for an Anthropic message id.
pub fn completion_id(message_id: Option<&str>) -> String {
    format!("chatcmpl-{}", message_id.unwrap_or("relay"))
}

/// The chat completion for an Anthropic message.
pub fn answer(message: &Value) -> Value {
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    // the blocks whole (with their signatures), for the next turn to send back
    let mut thinking_blocks = Vec::new();
    for block in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(json!("")),
                    "arguments": block.get("input").unwrap_or(&json!({})).to_string(),
                },
            })),
            _ => {}
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    msg.insert("content".into(), content);
    if !reasoning.is_empty() {
        msg.insert("reasoning_content".into(), json!(reasoning));
    }
    if !thinking_blocks.is_empty() {
        msg.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    let stop = message.get("stop_reason").and_then(Value::as_str);
    json!({
        "id": completion_id(message.get("id").and_then(Value::as_str)),
        "object": "chat.completion",
        "created": now(),
        "model": message.get("model").cloned().unwrap_or(json!("")),
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason(stop), "logprobs": null}],
        "usage": usage(message.get("usage").unwrap_or(&Value::Null)),
    })
}

/// Seconds since the epoch (`created`).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
