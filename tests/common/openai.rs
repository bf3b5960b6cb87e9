//! The default OpenAI-like upstream handler ([`openai_reply`]) and SSE
//! helpers to build realistic `chat.completion.chunk` events.

use std::time::Duration;

use serde_json::{json, Value};

use super::upstream::{RecordedRequest, Reply};

/// Text of every non-streamed chat/completion answer, and the concatenation
/// of the streamed deltas.
pub const FIXTURE_TEXT: &str = "Hello from the fixture.";
/// The streamed deltas (joined = [`FIXTURE_TEXT`]).
pub const FIXTURE_DELTAS: &[&str] = &["Hello", " from", " the fixture."];
/// The embedding vector every embeddings request gets.
pub const FIXTURE_EMBEDDING: [f64; 3] = [0.1, 0.2, 0.3];
/// Model ids listed by the fixture's `/v1/models`.
pub const FIXTURE_MODELS: &[&str] = &["fixture-model-a", "fixture-model-b"];

/// One SSE event carrying `v` as JSON: `data: {...}\n\n`.
pub fn sse_data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The `data: [DONE]` terminator event.
pub fn sse_done() -> String {
    "data: [DONE]\n\n".to_string()
}

/// A `chat.completion.chunk` SSE event with the given delta and finish reason.
pub fn chat_chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    sse_data(&json!({
        "id": "chatcmpl-fixture",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }))
}

fn usage() -> Value {
    json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
}

/// Whether a request asks for the usage chunk (`stream: true` and
/// `stream_options.include_usage: true`), as OpenAI's API reads it.
pub fn wants_usage(req: &RecordedRequest) -> bool {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    body["stream"] == json!(true) && body["stream_options"]["include_usage"] == json!(true)
}

/// The usage-only chunk OpenAI sends last (before `[DONE]`) when `include_usage` was asked:
/// `"choices": []` and the stream's `usage`.
pub fn usage_chunk(model: &str, object: &str) -> String {
    sse_data(&json!({
        "id": "chatcmpl-fixture",
        "object": object,
        "created": 1_700_000_000,
        "model": model,
        "choices": [],
        "usage": usage(),
    }))
}

/// Realistic OpenAI answers per path; `stream: true` gets SSE chunks ending
/// with `data: [DONE]`. Unknown paths get a 404 OpenAI-style error.
pub fn openai_reply(req: &RecordedRequest) -> Reply {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = body["stream"] == json!(true);
    let tick = Duration::from_millis(10);
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/chat/completions") if stream => {
            let mut events = vec![(
                tick,
                chat_chunk(&model, json!({"role": "assistant", "content": ""}), None),
            )];
            for d in FIXTURE_DELTAS {
                events.push((tick, chat_chunk(&model, json!({"content": d}), None)));
            }
            events.push((tick, chat_chunk(&model, json!({}), Some("stop"))));
            if wants_usage(req) {
                events.push((tick, usage_chunk(&model, "chat.completion.chunk")));
            }
            events.push((tick, sse_done()));
            Reply::sse(events)
        }
        ("POST", "/v1/chat/completions") => Reply::json(
            200,
            json!({
                "id": "chatcmpl-fixture",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": FIXTURE_TEXT},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": usage(),
            }),
        ),
        ("POST", "/v1/completions") if stream => {
            let mut events = Vec::new();
            for (i, d) in FIXTURE_DELTAS.iter().enumerate() {
                let finish = (i + 1 == FIXTURE_DELTAS.len()).then_some("stop");
                let chunk = json!({
                    "id": "cmpl-fixture",
                    "object": "text_completion",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{"index": 0, "text": d, "logprobs": null, "finish_reason": finish}],
                });
                events.push((tick, sse_data(&chunk)));
            }
            if wants_usage(req) {
                events.push((tick, usage_chunk(&model, "text_completion")));
            }
            events.push((tick, sse_done()));
            Reply::sse(events)
        }
        ("POST", "/v1/completions") => Reply::json(
            200,
            json!({
                "id": "cmpl-fixture",
                "object": "text_completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": FIXTURE_TEXT, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage(),
            }),
        ),
        ("POST", "/v1/embeddings") => Reply::json(
            200,
            json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": FIXTURE_EMBEDDING}],
                "model": model,
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }),
        ),
        ("GET", "/v1/models") => Reply::json(
            200,
            json!({
                "object": "list",
                "data": FIXTURE_MODELS
                    .iter()
                    .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "fixture"}))
                    .collect::<Vec<_>>(),
            }),
        ),
        _ => Reply::json(
            404,
            json!({"error": {"message": format!("fixture: no route {} {}", req.method, req.path),
                             "type": "invalid_request_error", "code": "not_found"}}),
        ),
    }
}
