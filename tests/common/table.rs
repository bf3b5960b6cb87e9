//! README's translation table as test data: the rows and their bases (`table_data.rs`, shared
//! with `src/translate/table_tests.rs`), and a row's upstream answer written as the stream the
//! upstream would send.

use serde_json::{json, Value};

use super::openai::{sse_data, sse_done};
use super::responses::typed;

pub use super::table_data::*;

/// A text in two pieces (a stream that splits a value is what the relay must join).
fn halves(s: &str) -> Vec<String> {
    let cut = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    [&s[..cut], &s[cut..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// A chat completion as OpenAI streams it: a role chunk, `reasoning_content` and `content`
/// deltas, each tool call's head then its arguments in two pieces, a chunk with the
/// `finish_reason` (and vLLM's `stop_reason` when the answer has one), a usage chunk, `[DONE]`.
pub fn chat_completion_events(answer: &Value) -> Vec<String> {
    let chunk = |choice: Value| {
        sse_data(
            &json!({"id": answer["id"], "object": "chat.completion.chunk",
            "created": answer["created"], "model": answer["model"], "choices": [choice]}),
        )
    };
    let delta = |d: Value| chunk(json!({"index": 0, "delta": d, "finish_reason": null}));
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    let mut out = vec![delta(json!({"role": "assistant", "content": ""}))];
    for key in ["reasoning_content", "content"] {
        for piece in halves(message[key].as_str().unwrap_or("")) {
            out.push(delta(json!({ key: piece })));
        }
    }
    if let Some(blocks) = message.get("thinking_blocks") {
        out.push(delta(json!({ "thinking_blocks": blocks })));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.push(delta(
            json!({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}]}),
        ));
        for piece in halves(call["function"]["arguments"].as_str().unwrap_or("")) {
            out.push(delta(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
            ));
        }
    }
    let mut last = json!({"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]});
    if let Some(stop) = choice.get("stop_reason") {
        last["stop_reason"] = stop.clone();
    }
    out.push(chunk(last));
    if answer["usage"].is_object() {
        out.push(sse_data(
            &json!({"id": answer["id"], "object": "chat.completion.chunk",
            "created": answer["created"], "model": answer["model"], "choices": [],
            "usage": answer["usage"]}),
        ));
    }
    out.push(sse_done());
    out
}

/// An Anthropic message as Anthropic streams it: `message_start` (input and cache usage),
/// per block `content_block_start` / deltas / `content_block_stop` (text, thinking with its
/// signature, a tool use's input as JSON in two pieces), `message_delta` (stop reason, output
/// tokens), `message_stop`.
pub fn anthropic_message_events(answer: &Value) -> Vec<String> {
    let usage = &answer["usage"];
    let mut start_usage = json!({"input_tokens": usage["input_tokens"], "output_tokens": 1});
    for key in ["cache_read_input_tokens", "cache_creation_input_tokens"] {
        if let Some(v) = usage.get(key) {
            start_usage[key] = v.clone();
        }
    }
    let mut out = vec![typed(&json!({"type": "message_start", "message": {
        "id": answer["id"], "type": "message", "role": "assistant", "model": answer["model"],
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}))];
    for (index, block) in answer["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (start, deltas) = match block["type"].as_str() {
            Some("thinking") => {
                let mut deltas: Vec<Value> = halves(block["thinking"].as_str().unwrap_or(""))
                    .into_iter()
                    .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                    .collect();
                deltas.push(json!({"type": "signature_delta", "signature": block["signature"]}));
                (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    deltas,
                )
            }
            Some("tool_use") => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                halves(&block["input"].to_string())
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
            _ => (
                json!({"type": "text", "text": ""}),
                halves(block["text"].as_str().unwrap_or(""))
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect(),
            ),
        };
        out.push(typed(
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            out.push(typed(
                &json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        out.push(typed(
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(typed(&json!({"type": "message_delta",
        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]},
        "usage": {"output_tokens": usage["output_tokens"]}})));
    out.push(typed(&json!({"type": "message_stop"})));
    out
}
