//! An upstream fixture handler that speaks the OpenAI Responses API as OpenAI does
//! ([`responses_reply`]): `POST /v1/responses` plain and streamed (typed SSE events, each with
//! `event:` and a `data:` JSON carrying `type` and `sequence_number`), a `function_call` when the
//! request offers tools and has no tool output yet, and the stored-response routes
//! (`GET/DELETE /v1/responses/{id}`, `/input_items`, `/cancel`).

use std::time::Duration;

use serde_json::{json, Value};

use super::upstream::{RecordedRequest, Reply};

/// The text of every Responses answer (streamed in [`RESPONSES_DELTAS`]).
pub const RESPONSES_TEXT: &str = "Hello from the Responses fixture.";
pub const RESPONSES_DELTAS: &[&str] = &["Hello", " from the", " Responses fixture."];
/// The text after a tool result came back.
pub const RESPONSES_TOOL_TEXT: &str = "It is sunny in Paris.";

/// One typed event as OpenAI writes it.
pub fn typed(v: &Value) -> String {
    format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or(""))
}

fn usage() -> Value {
    json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
           "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": 17})
}

/// True when the request's `input` already holds a `function_call_output`.
fn has_tool_output(body: &Value) -> bool {
    body["input"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i["type"] == "function_call_output"))
}

fn response_shell(body: &Value, status: &str) -> Value {
    json!({
        "id": "resp_fixture1", "object": "response", "created_at": 1_700_000_000,
        "status": status, "error": null, "incomplete_details": null,
        "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": null, "model": body["model"], "output": [],
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": body.get("tools").cloned().unwrap_or(json!([])), "top_p": 1.0,
        "truncation": "disabled", "usage": null, "user": null, "metadata": {},
    })
}

fn message_item(text: &str) -> Value {
    json!({"id": "msg_fixture1", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item() -> Value {
    json!({"id": "fc_fixture1", "type": "function_call", "status": "completed",
           "call_id": "call_fixture1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
}

/// The whole answer a plain request gets.
pub fn responses_answer(body: &Value) -> Value {
    let wants_tool =
        body["tools"].as_array().is_some_and(|t| !t.is_empty()) && !has_tool_output(body);
    let text = if has_tool_output(body) {
        RESPONSES_TOOL_TEXT
    } else {
        RESPONSES_TEXT
    };
    let mut r = response_shell(body, "completed");
    r["output"] = if wants_tool {
        json!([call_item()])
    } else {
        json!([message_item(text)])
    };
    r["usage"] = usage();
    r
}

/// The events of a streamed answer, written out as OpenAI sends them.
pub fn responses_events(body: &Value) -> Vec<String> {
    let wants_tool =
        body["tools"].as_array().is_some_and(|t| !t.is_empty()) && !has_tool_output(body);
    let mut seq = 0;
    let mut out = Vec::new();
    let mut push = |mut v: Value| {
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push(typed(&v));
    };
    let shell = response_shell(body, "in_progress");
    push(json!({"type": "response.created", "response": shell}));
    push(json!({"type": "response.in_progress", "response": shell}));
    if wants_tool {
        let mut item = call_item();
        item["status"] = json!("in_progress");
        item["arguments"] = json!("");
        push(json!({"type": "response.output_item.added", "output_index": 0, "item": item}));
        for d in ["{\"city\":", "\"Paris\"}"] {
            push(
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_fixture1",
                        "output_index": 0, "delta": d}),
            );
        }
        push(
            json!({"type": "response.function_call_arguments.done", "item_id": "fc_fixture1",
                    "output_index": 0, "arguments": "{\"city\":\"Paris\"}"}),
        );
        push(json!({"type": "response.output_item.done", "output_index": 0, "item": call_item()}));
    } else {
        let text = if has_tool_output(body) {
            RESPONSES_TOOL_TEXT
        } else {
            RESPONSES_TEXT
        };
        push(
            json!({"type": "response.output_item.added", "output_index": 0,
                    "item": {"id": "msg_fixture1", "type": "message", "status": "in_progress",
                             "role": "assistant", "content": []}}),
        );
        push(
            json!({"type": "response.content_part.added", "item_id": "msg_fixture1",
                    "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        let deltas: Vec<&str> = if text == RESPONSES_TEXT {
            RESPONSES_DELTAS.to_vec()
        } else {
            vec![text]
        };
        for d in deltas {
            push(
                json!({"type": "response.output_text.delta", "item_id": "msg_fixture1",
                        "output_index": 0, "content_index": 0, "delta": d, "logprobs": []}),
            );
        }
        push(
            json!({"type": "response.output_text.done", "item_id": "msg_fixture1",
                    "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        );
        push(
            json!({"type": "response.content_part.done", "item_id": "msg_fixture1",
                    "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []}}),
        );
        push(
            json!({"type": "response.output_item.done", "output_index": 0, "item": message_item(text)}),
        );
    }
    let mut done = responses_answer(body);
    done["status"] = json!("completed");
    push(json!({"type": "response.completed", "response": done}));
    out
}

/// OpenAI-like answers for the Responses routes; `None` for any other path.
pub fn responses_reply(req: &RecordedRequest) -> Option<Reply> {
    let tick = Duration::from_millis(5);
    let path = req.path.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/v1/responses")?;
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    Some(match (req.method.as_str(), rest) {
        ("POST", "") if body["stream"] == json!(true) => Reply::sse(
            responses_events(&body)
                .into_iter()
                .map(|e| (tick, e))
                .collect(),
        ),
        ("POST", "") => Reply::json(200, responses_answer(&body)),
        ("GET", id) if id.ends_with("/input_items") => Reply::json(
            200,
            json!({"object": "list", "data": [{"id": "msg_in1", "type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "hi"}]}],
                   "first_id": "msg_in1", "last_id": "msg_in1", "has_more": false}),
        ),
        ("POST", id) if id.ends_with("/cancel") => {
            let mut r = responses_answer(&json!({"model": "fixture-model-a"}));
            r["status"] = json!("cancelled");
            Reply::json(200, r)
        }
        ("GET", _) => Reply::json(200, responses_answer(&json!({"model": "fixture-model-a"}))),
        ("DELETE", id) => Reply::json(
            200,
            json!({"id": id.trim_start_matches('/'), "object": "response", "deleted": true}),
        ),
        _ => Reply::json(
            404,
            json!({"error": {"message": "fixture: no such Responses route",
                                     "type": "invalid_request_error", "code": null, "param": null}}),
        ),
    })
}
