//! The Anthropic Messages API (`POST /v1/messages`) on the wire.
//!
//! Its stream is typed SSE: `message_start` (the message with empty `content`), per content
//! block `content_block_start`, `content_block_delta`s (`text_delta`, `input_json_delta`,
//! `thinking_delta`, `signature_delta`, `citations_delta`) and `content_block_stop`, then
//! `message_delta` (`stop_reason`, final `usage`) and `message_stop`; `ping` may come anywhere.
//! A stream is complete only at `message_stop`; an `error` event ends it without an answer.
//! [`sse_to_json`] accumulates a recorded stream into the message a plain request gets, as the
//! SDKs do; [`json_to_sse`] turns a plain message into that event sequence. Errors on these
//! routes are `{"type":"error","error":{"type","message"}}` ([`error_body`]).

use serde_json::{json, Map, Value};

use crate::answer::{Answer, Form};

use super::{append_str, data_lines, set, typed_event, Ending};

/// What the event `kind` means for the stream (`None`: not a terminal event).
pub fn terminal(kind: &str) -> Option<Ending> {
    match kind {
        "message_stop" => Some(Ending::Succeeded),
        "error" => Some(Ending::Failed),
        _ => None,
    }
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 415 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An error body in Anthropic's shape.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
        .to_string()
        .into_bytes()
}

/// `Ok` for a complete success worth storing: a `message`, or a stream that reached
/// `message_stop` without an `error` event.
pub fn check(response: &[u8], read: &Answer) -> Result<(), &'static str> {
    if read.form == Form::Json {
        let v = read.json.as_ref().ok_or("unparsable JSON")?;
        return match v.get("type").and_then(Value::as_str) {
            Some("message") => Ok(()),
            _ => Err("not a message"),
        };
    }
    let mut started = false;
    for data in data_lines(response) {
        let v: Value = crate::json::from_slice(data).map_err(|_| "unparsable event")?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        started |= kind == "message_start";
        match terminal(kind) {
            Some(Ending::Succeeded) if started => return Ok(()),
            Some(Ending::Succeeded) => return Err("stream without message_start"),
            Some(_) => return Err("error event in stream"),
            None => {}
        }
    }
    Err("truncated stream")
}

/// Accumulates a recorded stream into the message a plain request gets.
pub fn sse_to_json(response: &[u8]) -> Option<Value> {
    let mut message: Option<Map<String, Value>> = None;
    let mut blocks: Vec<Map<String, Value>> = Vec::new();
    let mut partial_json: Vec<String> = Vec::new();
    for data in data_lines(response) {
        let Ok(v) = crate::json::from_slice::<Value>(data) else {
            continue;
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => message = v.get("message").and_then(Value::as_object).cloned(),
            "content_block_start" if index <= 1024 => {
                while blocks.len() <= index {
                    blocks.push(Map::new());
                    partial_json.push(String::new());
                }
                if let (Some(slot), Some(b)) = (
                    blocks.get_mut(index),
                    v.get("content_block").and_then(Value::as_object),
                ) {
                    *slot = b.clone();
                }
            }
            "content_block_delta" => {
                let (Some(block), Some(json_acc), Some(delta)) = (
                    blocks.get_mut(index),
                    partial_json.get_mut(index),
                    v.get("delta"),
                ) else {
                    continue;
                };
                apply_delta(block, json_acc, delta);
            }
            "message_delta" => {
                let m = message.get_or_insert_with(Map::new);
                if let Some(d) = v.get("delta").and_then(Value::as_object) {
                    m.extend(d.clone());
                }
                if let Some(u) = v.get("usage").and_then(Value::as_object) {
                    let usage = m.entry("usage").or_insert_with(|| json!({}));
                    if let Some(usage) = usage.as_object_mut() {
                        for (k, n) in u.iter().filter(|(_, n)| !n.is_null()) {
                            usage.insert(k.clone(), n.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut message = message?;
    for (block, acc) in blocks.iter_mut().zip(&partial_json) {
        if block.get("type").and_then(Value::as_str) == Some("tool_use") && !acc.is_empty() {
            if let Ok(input) = serde_json::from_str::<Value>(acc) {
                block.insert("input".into(), input);
            }
        }
    }
    message.insert(
        "content".into(),
        Value::Array(blocks.into_iter().map(Value::Object).collect()),
    );
    Some(Value::Object(message))
}

fn apply_delta(block: &mut Map<String, Value>, json_acc: &mut String, delta: &Value) {
    match delta.get("type").and_then(Value::as_str).unwrap_or("") {
        "text_delta" => append_str(block, "text", delta.get("text")),
        "thinking_delta" => append_str(block, "thinking", delta.get("thinking")),
        "signature_delta" => append_str(block, "signature", delta.get("signature")),
        "input_json_delta" => {
            if let Some(p) = delta.get("partial_json").and_then(Value::as_str) {
                json_acc.push_str(p);
            }
        }
        "citations_delta" => {
            if let Some(c) = delta.get("citation") {
                let list = block.entry("citations").or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(c.clone());
                }
            }
        }
        _ => {}
    }
}

/// The events a streamed request gets for a plain `message`: `message_start`, per block its
/// start, one delta (or a thinking and a signature delta) and stop, `message_delta` with the
/// stop reason and usage, `message_stop`.
pub fn json_to_sse(message: &Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut shell = message.clone();
    if let Some(o) = shell.as_object_mut() {
        o.insert("content".into(), json!([]));
        o.insert("stop_reason".into(), Value::Null);
        o.insert("stop_sequence".into(), Value::Null);
        if let Some(Value::Object(u)) = o.get_mut("usage") {
            u.insert("output_tokens".into(), json!(0));
        }
    }
    out.push(typed_event(
        &json!({"type": "message_start", "message": shell}),
    ));
    let blocks = message.get("content").and_then(Value::as_array);
    for (index, block) in blocks.into_iter().flatten().enumerate() {
        let (start, deltas) = block_events(block);
        out.push(typed_event(&json!({
            "type": "content_block_start", "index": index, "content_block": start,
        })));
        for delta in deltas {
            out.push(typed_event(&json!({
                "type": "content_block_delta", "index": index, "delta": delta,
            })));
        }
        out.push(typed_event(
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(typed_event(&json!({
        "type": "message_delta",
        "delta": {
            "stop_reason": message.get("stop_reason").cloned().unwrap_or(Value::Null),
            "stop_sequence": message.get("stop_sequence").cloned().unwrap_or(Value::Null),
        },
        "usage": message.get("usage").cloned().unwrap_or(json!({})),
    })));
    out.push(typed_event(&json!({"type": "message_stop"})));
    out
}

/// A block as `content_block_start` carries it, and the deltas that fill it.
fn block_events(block: &Value) -> (Value, Vec<Value>) {
    let mut start = block.clone();
    let mut deltas = Vec::new();
    let text = |k: &str| block.get(k).cloned().unwrap_or(json!(""));
    match block.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => {
            set(&mut start, "text", json!(""));
            if let Some(o) = start.as_object_mut() {
                o.remove("citations");
            }
            for c in block
                .get("citations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                deltas.push(json!({"type": "citations_delta", "citation": c}));
            }
            deltas.push(json!({"type": "text_delta", "text": text("text")}));
        }
        "tool_use" | "server_tool_use" => {
            set(&mut start, "input", json!({}));
            let input = block.get("input").cloned().unwrap_or(json!({}));
            deltas.push(json!({"type": "input_json_delta", "partial_json": input.to_string()}));
        }
        "thinking" => {
            set(&mut start, "thinking", json!(""));
            set(&mut start, "signature", json!(""));
            deltas.push(json!({"type": "thinking_delta", "thinking": text("thinking")}));
            deltas.push(json!({"type": "signature_delta", "signature": text("signature")}));
        }
        _ => {}
    }
    (start, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(body: &[u8]) -> Result<(), &'static str> {
        check(body, &Answer::read(crate::answer::Api::Anthropic, body))
    }

    fn message() -> Value {
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 7}
        })
    }

    #[test]
    fn a_plain_message_round_trips_through_its_stream() {
        let m = message();
        let stream: Vec<u8> = json_to_sse(&m).concat();
        assert_eq!(checked(&stream), Ok(()));
        assert_eq!(sse_to_json(&stream), Some(m));
    }

    #[test]
    fn only_finished_messages_are_kept() {
        let ok = serde_json::to_vec(&message()).unwrap();
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n";
        let cases: Vec<(Vec<u8>, bool, bool)> = vec![
            (ok, false, true),
            (br#"{"type":"error","error":{}}"#.to_vec(), false, false),
            (format!("{start}{stop}").into_bytes(), true, true),
            (start.as_bytes().to_vec(), true, false),
            (format!("{start}{error}{stop}").into_bytes(), true, false),
        ];
        for (body, stream, want) in cases {
            assert_eq!(Form::of(&body) == Form::Sse, stream);
            let got = checked(&body);
            assert_eq!(
                got.is_ok(),
                want,
                "{}: {got:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
