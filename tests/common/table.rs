//! README's translation table as test data (the same parse and the same "contains" rule as
//! `src/translate/table_tests.rs`, which walks the rows through the Rust functions): each row's
//! API, way, field, client JSON and upstream JSON, the base request and base upstream answer
//! a row is merged into, and the upstream answer written as the stream the upstream would send.

use serde_json::{json, Value};

use super::openai::{sse_data, sse_done};
use super::responses::typed;

const README: &str = include_str!("../../README.md");

/// One row of the table. `api` is `anthropic`, `responses` or `chat` (the client's API);
/// `upstream` is the last cell: Chat Completions JSON, or Messages JSON for `chat` rows.
#[derive(Clone, Debug)]
pub struct Row {
    pub api: String,
    pub way: String,
    pub field: String,
    pub client: Value,
    pub upstream: Option<Value>,
}

impl Row {
    /// How a failure names the row.
    pub fn name(&self) -> String {
        format!("{} {} `{}`", self.api, self.way, self.field)
    }
}

/// The rows between the `translation-table` markers.
pub fn table_rows() -> Vec<Row> {
    let start = README
        .find("<!-- translation-table -->")
        .expect("table start marker");
    let end = README
        .find("<!-- /translation-table -->")
        .expect("table end marker");
    let json_cell = |c: &str| -> Option<Value> {
        let c = c.trim_matches('`');
        (!c.is_empty()).then(|| serde_json::from_str(c).unwrap_or_else(|e| panic!("{e} in {c}")))
    };
    README[start..end]
        .lines()
        .skip(3)
        .map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert_eq!(cells.len(), 6, "a table row has 6 cells: {line}");
            Row {
                api: cells[0].to_string(),
                way: cells[1].to_string(),
                field: cells[2].split('`').nth(1).unwrap_or(cells[2]).to_string(),
                client: json_cell(cells[4]).expect("client JSON"),
                upstream: json_cell(cells[5]),
            }
        })
        .collect()
}

/// The client request a row's client JSON is merged into.
pub fn table_base_request(api: &str) -> Value {
    match api {
        "anthropic" => {
            json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        }
        "responses" => json!({"model": "m", "input": "hi"}),
        _ => json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    }
}

/// The upstream answer a row's last cell is merged into: a chat completion, or an Anthropic
/// message for `chat` rows.
pub fn table_base_answer(api: &str) -> Value {
    if api == "chat" {
        return json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 2},
        });
    }
    json!({
        "id": "c1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    })
}

/// `base` with `over` merged in: objects merge key by key, anything else replaces.
pub fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let m = b.get(k).map_or_else(|| v.clone(), |bv| merged(bv, v));
                out.insert(k.clone(), m);
            }
            Value::Object(out)
        }
        _ => over.clone(),
    }
}

/// True if `actual` has everything `expected` has (objects: the listed keys; arrays and
/// scalars: equal, element by element; numbers by value, so `1` matches `1.0`).
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y))
        }
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

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
