//! A Chat-Completions-only upstream that behaves like a tool-using model, for the translation
//! tests and the agents (Claude Code, Codex CLI) run through it.
//!
//! It follows a script written in the prompt: a user message containing the line
//! `CALL <tool> <json arguments>` gets that tool call (when a tool of that name is offered),
//! streamed with its arguments in two pieces; several such lines get parallel calls, streamed
//! interleaved as the chat format allows (every call's head, then every call's first half of
//! arguments, then every second half: each delta carries its `index`); once the conversation
//! ends in `tool` messages, the answer is `TOOL SAID: <their texts, joined by " | ">`; anything
//! else gets [`FIXTURE_TEXT`]. A text answer stops before the first of the request's `stop`
//! strings it contains, and then says which in `choices[].stop_reason` (as vLLM and SGLang do;
//! `null` otherwise). Every
//! answer comes plain or streamed (usage at the end when `stream_options.include_usage`), as
//! OpenAI sends them. Other API paths get OpenAI's 404, so a request that was not translated
//! cannot pass.

use std::time::Duration;

use serde_json::{json, Value};

use super::openai::{chat_chunk, sse_data, sse_done, FIXTURE_TEXT};
use super::upstream::{RecordedRequest, Reply, Upstream};

/// What the model decided to answer.
enum Turn {
    Text(String),
    /// One tool call or several parallel ones: (name, arguments).
    Calls(Vec<(String, String)>),
}

/// The text of a chat message's content (string or parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn decide(body: &Value) -> Turn {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_assistant = messages.iter().rposition(|m| m["role"] == "assistant");
    let results: Vec<String> = messages
        .iter()
        .skip(last_assistant.map_or(0, |i| i + 1))
        .filter(|m| m["role"] == "tool")
        .map(|m| text_of(&m["content"]).chars().take(400).collect::<String>())
        .map(|t| t.trim().to_string())
        .collect();
    if !results.is_empty() {
        return Turn::Text(format!("TOOL SAID: {}", results.join(" | ")));
    }
    if let Some(tool) = messages.iter().rev().find(|m| m["role"] == "tool") {
        let said = text_of(&tool["content"]);
        let said: String = said.chars().take(400).collect();
        return Turn::Text(format!("TOOL SAID: {}", said.trim()));
    }
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    for m in messages.iter().filter(|m| m["role"] == "user") {
        let mut calls = Vec::new();
        for line in text_of(&m["content"]).lines() {
            let Some(rest) = line.trim().strip_prefix("CALL ") else {
                continue;
            };
            let (name, arguments) = rest.split_once(' ').unwrap_or((rest, "{}"));
            if offered.contains(&name) {
                calls.push((name.to_string(), arguments.to_string()));
            }
        }
        if !calls.is_empty() {
            return Turn::Calls(calls);
        }
    }
    Turn::Text(FIXTURE_TEXT.to_string())
}

/// The id of the `i`th call of an answer.
fn call_id(i: usize) -> String {
    format!("call_fixture_{}", i + 1)
}

/// `text` cut in two at (about) its middle.
fn halve(text: &str) -> (&str, &str) {
    let mid = (text.len() / 2..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text.split_at(mid)
}

fn usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18})
}

/// The reply of the chat model to one request.
pub fn chat_model_reply(req: &RecordedRequest) -> Reply {
    if req.method != "POST" || req.path != "/v1/chat/completions" {
        return Reply::json(
            404,
            json!({"error": {"message": format!("chat-only fixture: no route {} {}", req.method, req.path),
                             "type": "invalid_request_error", "code": "not_found"}}),
        );
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let mut turn = decide(&body);
    // a stop string cuts the text before it, and the answer says which matched (as vLLM does)
    let mut matched = Value::Null;
    if let Turn::Text(t) = &mut turn {
        let stops = body["stop"].as_array().cloned().unwrap_or_default();
        let first = stops
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| t.find(s).map(|at| (at, s.to_string())))
            .min();
        if let Some((at, stop)) = first {
            t.truncate(at);
            matched = json!(stop);
        }
    }
    if body["stream"] != json!(true) {
        let (message, finish) = match &turn {
            Turn::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
            Turn::Calls(calls) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| {
                        json!({"id": call_id(i), "type": "function",
                               "function": {"name": name, "arguments": arguments}})
                    })
                    .collect();
                (
                    json!({"role": "assistant", "content": null, "tool_calls": calls}),
                    "tool_calls",
                )
            }
        };
        return Reply::json(
            200,
            json!({
                "id": "chatcmpl-model", "object": "chat.completion", "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish,
                             "stop_reason": matched}],
                "usage": usage(),
            }),
        );
    }
    let tick = Duration::from_millis(5);
    let mut events = vec![(
        tick,
        chat_chunk(&model, json!({"role": "assistant", "content": ""}), None),
    )];
    let finish = match &turn {
        Turn::Text(t) => {
            let mid = t
                .char_indices()
                .nth(t.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for piece in [&t[..mid], &t[mid..]] {
                events.push((tick, chat_chunk(&model, json!({"content": piece}), None)));
            }
            "stop"
        }
        Turn::Calls(calls) => {
            // every head, then every first half, then every second half
            let halves: Vec<(&str, &str)> = calls.iter().map(|(_, a)| halve(a)).collect();
            let mut deltas = Vec::new();
            for (i, (name, _)) in calls.iter().enumerate() {
                deltas.push(json!({"index": i, "id": call_id(i), "type": "function",
                                   "function": {"name": name, "arguments": ""}}));
            }
            for (i, (first, _)) in halves.iter().enumerate() {
                deltas.push(json!({"index": i, "function": {"arguments": first}}));
            }
            for (i, (_, second)) in halves.iter().enumerate() {
                deltas.push(json!({"index": i, "function": {"arguments": second}}));
            }
            for d in deltas {
                events.push((tick, chat_chunk(&model, json!({"tool_calls": [d]}), None)));
            }
            "tool_calls"
        }
    };
    let last = json!({"id": "chatcmpl-fixture", "object": "chat.completion.chunk",
                      "created": 1_700_000_000, "model": model,
                      "choices": [{"index": 0, "delta": {}, "finish_reason": finish,
                                   "stop_reason": matched}]});
    events.push((tick, sse_data(&last)));
    if body["stream_options"]["include_usage"] == json!(true) {
        let chunk = json!({"id": "chatcmpl-fixture", "object": "chat.completion.chunk",
                           "created": 1_700_000_000, "model": model, "choices": [], "usage": usage()});
        events.push((tick, sse_data(&chunk)));
    }
    events.push((tick, sse_done()));
    Reply::sse(events)
}

impl Upstream {
    /// A Chat-Completions-only fixture that answers like a tool-using model
    /// (see [`chat_model_reply`]).
    pub fn chat_model() -> Upstream {
        Upstream::start(chat_model_reply)
    }
}
