//! The OpenAI Responses API (`POST /v1/responses`) on the wire.
//!
//! Its stream is typed SSE: `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its parts and deltas (`response.output_text.delta`,
//! `response.function_call_arguments.delta`, ...), `response.output_item.done`, and last
//! `response.completed` carrying the whole final `response`. A stream is complete only at
//! `response.completed`; `response.failed`, `response.incomplete` and `error` end it without an
//! answer worth keeping. A recorded stream's plain answer is the `response` of its
//! `response.completed`; a plain answer becomes the event sequence the SDKs' stream helpers
//! accumulate into the same response ([`json_to_sse`]).

use serde_json::{json, Map, Value};

use crate::answer::{Answer, Form};

use super::{data_lines, set, typed_event, Ending};

/// What the event `kind` means for the stream (`None`: not a terminal event).
pub fn terminal(kind: &str) -> Option<Ending> {
    match kind {
        "response.completed" => Some(Ending::Succeeded),
        "response.failed" | "response.incomplete" | "error" => Some(Ending::Failed),
        _ => None,
    }
}

/// Whether a plain answer is a completed response (not queued, failed or incomplete).
fn completed(v: &Value) -> Result<(), &'static str> {
    if v.get("object").and_then(Value::as_str) != Some("response") {
        return Err("not a response object");
    }
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err("response with an error");
    }
    match v.get("status").and_then(Value::as_str) {
        Some("completed") => Ok(()),
        _ => Err("response not completed"),
    }
}

/// `Ok` for a complete success worth storing: a completed response, or a stream that reached
/// `response.completed` (with a completed response) without a failure event.
pub fn check(response: &[u8], read: &Answer) -> Result<(), &'static str> {
    if read.form == Form::Json {
        return completed(read.json.as_ref().ok_or("unparsable JSON")?);
    }
    for data in data_lines(response) {
        let v: Value = crate::json::from_slice(data).map_err(|_| "unparsable event")?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match terminal(kind) {
            Some(Ending::Succeeded) => {
                return completed(v.get("response").unwrap_or(&Value::Null));
            }
            Some(_) => return Err("failed or incomplete response stream"),
            None => {}
        }
    }
    Err("truncated stream")
}

/// The plain answer of a recorded stream: the `response` of its `response.completed`.
pub fn sse_to_json(response: &[u8]) -> Option<Value> {
    data_lines(response)
        .filter_map(|d| crate::json::from_slice::<Value>(d).ok())
        .find(|v| v.get("type").and_then(Value::as_str) == Some("response.completed"))
        .and_then(|mut v| v.get_mut("response").map(Value::take))
}

/// The typed events a streamed request gets for a plain `answer`: `response.created`,
/// `response.in_progress`, each output item with its parts and one delta each, and
/// `response.completed` with the answer itself.
pub fn json_to_sse(answer: &Value) -> Vec<Vec<u8>> {
    let mut events = Events::default();
    let mut shell = answer.clone();
    if let Some(o) = shell.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        o.insert("output".into(), json!([]));
        o.insert("usage".into(), Value::Null);
    }
    events.push(json!({"type": "response.created", "response": shell}));
    events.push(json!({"type": "response.in_progress", "response": shell}));
    let output = answer.get("output").and_then(Value::as_array);
    for (index, item) in output.into_iter().flatten().enumerate() {
        item_events(&mut events, index, item);
    }
    events.push(json!({"type": "response.completed", "response": answer}));
    events.out
}

/// Numbered typed events (`sequence_number` counts from 0, as the API's do).
#[derive(Default)]
struct Events {
    out: Vec<Vec<u8>>,
}

impl Events {
    fn push(&mut self, mut v: Value) {
        if let Some(o) = v.as_object_mut() {
            o.insert("sequence_number".into(), json!(self.out.len()));
        }
        self.out.push(typed_event(&v));
    }
}

fn item_events(events: &mut Events, index: usize, item: &Value) {
    let id = item.get("id").cloned().unwrap_or(Value::Null);
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let mut opened = item.clone();
    if let Some(o) = opened.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        match kind {
            "message" => {
                o.insert("content".into(), json!([]));
            }
            "function_call" => {
                o.insert("arguments".into(), json!(""));
            }
            _ => {}
        }
    }
    events
        .push(json!({"type": "response.output_item.added", "output_index": index, "item": opened}));
    let at = |extra: Value| {
        let mut m: Map<String, Value> = Map::new();
        m.insert("item_id".into(), id.clone());
        m.insert("output_index".into(), json!(index));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m)
    };
    match kind {
        "message" => {
            let parts = item.get("content").and_then(Value::as_array);
            for (part_index, part) in parts.into_iter().flatten().enumerate() {
                part_events(events, &at, part_index, part);
            }
        }
        "function_call" => {
            let args = item.get("arguments").cloned().unwrap_or(json!(""));
            let mut delta = at(json!({"delta": args}));
            set(
                &mut delta,
                "type",
                json!("response.function_call_arguments.delta"),
            );
            events.push(delta);
            let mut done = at(json!({"arguments": args}));
            set(
                &mut done,
                "type",
                json!("response.function_call_arguments.done"),
            );
            events.push(done);
        }
        _ => {}
    }
    events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
}

fn part_events(events: &mut Events, at: &dyn Fn(Value) -> Value, part_index: usize, part: &Value) {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let mut empty = part.clone();
    let typed = |name: &str, extra: Value| {
        let mut v = at(extra);
        set(&mut v, "type", json!(name));
        set(&mut v, "content_index", json!(part_index));
        v
    };
    match kind {
        "output_text" => {
            let text = part.get("text").cloned().unwrap_or(json!(""));
            set(&mut empty, "text", json!(""));
            if empty.get("annotations").is_none() {
                set(&mut empty, "annotations", json!([]));
            }
            events.push(typed("response.content_part.added", json!({"part": empty})));
            events.push(typed(
                "response.output_text.delta",
                json!({"delta": text, "logprobs": []}),
            ));
            events.push(typed(
                "response.output_text.done",
                json!({"text": text, "logprobs": []}),
            ));
        }
        "refusal" => {
            let refusal = part.get("refusal").cloned().unwrap_or(json!(""));
            set(&mut empty, "refusal", json!(""));
            events.push(typed("response.content_part.added", json!({"part": empty})));
            events.push(typed("response.refusal.delta", json!({"delta": refusal})));
            events.push(typed("response.refusal.done", json!({"refusal": refusal})));
        }
        _ => events.push(typed("response.content_part.added", json!({"part": part}))),
    }
    events.push(typed("response.content_part.done", json!({"part": part})));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(body: &[u8]) -> Result<(), &'static str> {
        check(body, &Answer::read(crate::answer::Api::Responses, body))
    }

    fn answer() -> Value {
        json!({
            "id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "error": null, "model": "m",
            "output": [
                {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]},
                {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
                 "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
            ],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        })
    }

    #[test]
    fn a_plain_answer_round_trips_through_its_stream() {
        let a = answer();
        let stream: Vec<u8> = json_to_sse(&a).concat();
        assert_eq!(checked(&stream), Ok(()));
        assert_eq!(sse_to_json(&stream), Some(a));
        let text = String::from_utf8(stream).unwrap();
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        assert!(kinds.contains(&"response.output_text.delta"));
        assert!(kinds.contains(&"response.function_call_arguments.delta"));
    }

    #[test]
    fn only_completed_answers_are_kept() {
        let ok = serde_json::to_vec(&answer()).unwrap();
        let cases: &[(&[u8], bool, bool)] = &[
            (&ok, false, true),
            (br#"{"object":"response","status":"queued"}"#, false, false),
            (
                br#"{"object":"response","status":"incomplete"}"#,
                false,
                false,
            ),
            (br#"{"error":{"message":"no"}}"#, false, false),
            (
                b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
                true,
                false,
            ),
            (
                b"event: response.failed\ndata: {\"type\":\"response.failed\"}\n\n",
                true,
                false,
            ),
            (
                b"event: error\ndata: {\"type\":\"error\",\"message\":\"x\"}\n\n",
                true,
                false,
            ),
        ];
        for (body, stream, want) in cases {
            assert_eq!(Form::of(body) == Form::Sse, *stream);
            let got = checked(body);
            assert_eq!(
                got.is_ok(),
                *want,
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
