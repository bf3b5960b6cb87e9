//! An upstream fixture handler that speaks the Anthropic Messages API as Anthropic does
//! ([`anthropic_reply`]): it refuses a request without `x-api-key` or `anthropic-version`
//! (401 / 400 in Anthropic's error shape), answers `POST /v1/messages` plain or streamed
//! (`message_start`, `content_block_*`, `ping`, `message_delta`, `message_stop`, each with an
//! `event:` line), with a `tool_use` block when tools are offered and no `tool_result` came back
//! yet, and `POST /v1/messages/count_tokens`. Like Anthropic it refuses (400) a request without
//! `max_tokens`, whose turns do not alternate user / assistant starting with user, or whose
//! `tool_result` blocks do not answer the `tool_use` ids of the assistant turn just before
//! ([`misordered`]).

use std::time::Duration;

use serde_json::{json, Value};

use super::responses::typed;
use super::upstream::{RecordedRequest, Reply};

pub const ANTHROPIC_TEXT: &str = "Hello from the Anthropic fixture.";
pub const ANTHROPIC_DELTAS: &[&str] = &["Hello", " from the", " Anthropic fixture."];
pub const ANTHROPIC_TOOL_TEXT: &str = "It is sunny in Paris.";
/// The key the fixture's endpoint is configured with in tests.
pub const ANTHROPIC_KEY: &str = "sk-ant-fixture";

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn has_tool_result(body: &Value) -> bool {
    body["messages"].as_array().is_some_and(|ms| {
        ms.iter().any(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        })
    })
}

fn wants_tool(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|t| !t.is_empty()) && !has_tool_result(body)
}

fn text_of(body: &Value) -> &'static str {
    if has_tool_result(body) {
        ANTHROPIC_TOOL_TEXT
    } else {
        ANTHROPIC_TEXT
    }
}

/// The whole message a plain request gets.
pub fn anthropic_message(body: &Value) -> Value {
    let (content, stop) = if wants_tool(body) {
        (
            json!([{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_fixture1", "name": "get_weather",
                 "input": {"city": "Paris"}}]),
            "tool_use",
        )
    } else {
        (json!([{"type": "text", "text": text_of(body)}]), "end_turn")
    };
    json!({"id": "msg_fixture1", "type": "message", "role": "assistant", "model": body["model"],
           "content": content, "stop_reason": stop, "stop_sequence": null,
           "usage": {"input_tokens": 12, "output_tokens": 8}})
}

/// The events of a streamed answer, as Anthropic sends them.
pub fn anthropic_events(body: &Value) -> Vec<String> {
    let mut out = vec![typed(&json!({"type": "message_start", "message": {
        "id": "msg_fixture1", "type": "message", "role": "assistant", "model": body["model"],
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1}}}))];
    out.push(typed(&json!({"type": "ping"})));
    let mut block = |index: usize, start: Value, deltas: Vec<Value>| {
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
    };
    let stop = if wants_tool(body) {
        block(
            0,
            json!({"type": "text", "text": ""}),
            vec![json!({"type": "text_delta", "text": "Let me check."})],
        );
        block(
            1,
            json!({"type": "tool_use", "id": "toolu_fixture1", "name": "get_weather", "input": {}}),
            vec![
                json!({"type": "input_json_delta", "partial_json": ""}),
                json!({"type": "input_json_delta", "partial_json": "{\"city\": "}),
                json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
            ],
        );
        "tool_use"
    } else {
        let deltas: Vec<&str> = if has_tool_result(body) {
            vec![ANTHROPIC_TOOL_TEXT]
        } else {
            ANTHROPIC_DELTAS.to_vec()
        };
        block(
            0,
            json!({"type": "text", "text": ""}),
            deltas
                .into_iter()
                .map(|d| json!({"type": "text_delta", "text": d}))
                .collect(),
        );
        "end_turn"
    };
    out.push(typed(&json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 8}})));
    out.push(typed(&json!({"type": "message_stop"})));
    out
}

/// Why Anthropic would refuse the turns of `body`: roles not alternating from `user`, a
/// `tool_result` whose id is not a `tool_use` of the assistant turn before, or a `tool_use`
/// left without its result in the next turn.
pub fn misordered(body: &Value) -> Option<String> {
    let turns = body["messages"].as_array()?;
    let ids = |m: &Value, kind: &str, key: &str| -> Vec<String> {
        m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == kind)
            .filter_map(|b| b[key].as_str().map(str::to_string))
            .collect()
    };
    for (i, m) in turns.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m["role"] != want {
            return Some(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", starting with \"user\" (messages.{i})"
            ));
        }
        let uses = ids(m, "tool_use", "id");
        let next = turns.get(i + 1);
        let results = next.map(|n| ids(n, "tool_result", "tool_use_id"));
        if !uses.is_empty() && next.is_some() && results.as_ref() != Some(&uses) {
            return Some(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after",
                i
            ));
        }
        let answered = ids(m, "tool_result", "tool_use_id");
        let asked = i.checked_sub(1).map(|p| ids(&turns[p], "tool_use", "id"));
        if !answered.is_empty() && asked.as_ref() != Some(&answered) {
            return Some(format!(
                "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks"
            ));
        }
    }
    None
}

/// Anthropic-like answers for `/v1/messages…`; `None` for any other path.
pub fn anthropic_reply(req: &RecordedRequest) -> Option<Reply> {
    let path = req.path.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/v1/messages")?;
    if req.header("x-api-key") != Some(ANTHROPIC_KEY) {
        return Some(anthropic_error(
            401,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    if req.header("anthropic-version").is_none() {
        return Some(anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let tick = Duration::from_millis(5);
    Some(match (req.method.as_str(), rest) {
        ("POST", "") if body["max_tokens"].as_u64().is_none() => {
            anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        }
        ("POST", "") if misordered(&body).is_some() => anthropic_error(
            400,
            "invalid_request_error",
            &misordered(&body).unwrap_or_default(),
        ),
        ("POST", "") if body["stream"] == json!(true) => Reply::sse(
            anthropic_events(&body)
                .into_iter()
                .map(|e| (tick, e))
                .collect(),
        ),
        ("POST", "") => Reply::json(200, anthropic_message(&body)),
        ("POST", "/count_tokens") => Reply::json(200, json!({"input_tokens": 12})),
        _ => anthropic_error(404, "not_found_error", "fixture: no such Messages route"),
    })
}
