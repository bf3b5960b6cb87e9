//! A stored Response object replayed as the Responses stream events that carry it
//! (`GET /v1/responses/{id}?stream=true`): `response.created` and `response.in_progress`, per
//! output item `response.output_item.added`, its content (the whole text, reasoning or
//! arguments as one delta) and its `….done` events, then `response.completed` (or
//! `response.incomplete` / `response.failed`) carrying the object as stored. Every event has a
//! `sequence_number`; `starting_after` leaves out the events up to that number, as OpenAI's does.

use serde_json::{json, Value};

use super::named_event;

struct Replay {
    out: Vec<u8>,
    seq: u64,
    after: Option<u64>,
}

impl Replay {
    fn emit(&mut self, kind: &str, mut event: Value) {
        let seq = self.seq;
        self.seq += 1;
        if self.after.is_some_and(|after| seq <= after) {
            return;
        }
        if let Some(o) = event.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(seq));
        }
        named_event(&mut self.out, kind, &event);
    }

    fn item(&mut self, index: usize, item: &Value) {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        let mut opened = item.clone();
        if let Some(o) = opened.as_object_mut() {
            match kind {
                "message" | "reasoning" => {
                    o.insert("content".into(), json!([]));
                }
                "function_call" => {
                    o.insert("arguments".into(), json!(""));
                }
                _ => {}
            }
            if o.contains_key("status") {
                o.insert("status".into(), json!("in_progress"));
            }
        }
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": opened}),
        );
        if kind == "function_call" {
            let args = item.get("arguments").cloned().unwrap_or(json!(""));
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": args}),
            );
            self.emit(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "name": item.get("name"),
                       "arguments": args}),
            );
        }
        let parts = item.get("content").and_then(Value::as_array);
        for (c, part) in parts.into_iter().flatten().enumerate() {
            let text = part.get("text").cloned().unwrap_or(json!(""));
            let (delta, done, mut empty) = match part.get("type").and_then(Value::as_str) {
                Some("output_text") => (
                    "response.output_text.delta",
                    "response.output_text.done",
                    json!({"type": "output_text", "text": "", "annotations": []}),
                ),
                Some("reasoning_text") => (
                    "response.reasoning_text.delta",
                    "response.reasoning_text.done",
                    json!({"type": "reasoning_text", "text": ""}),
                ),
                _ => ("", "", part.clone()),
            };
            if delta.is_empty() {
                empty = part.clone();
            }
            let at = json!({"item_id": id, "output_index": index, "content_index": c});
            let with = |extra: Value| {
                let mut event = at.clone();
                if let (Some(e), Value::Object(x)) = (event.as_object_mut(), extra) {
                    e.extend(x);
                }
                event
            };
            self.emit("response.content_part.added", with(json!({"part": empty})));
            if !delta.is_empty() {
                // output text events carry `logprobs`, reasoning text events do not
                let (d, t) = if kind == "message" {
                    (
                        json!({"delta": text, "logprobs": []}),
                        json!({"text": text, "logprobs": []}),
                    )
                } else {
                    (json!({"delta": text}), json!({"text": text}))
                };
                self.emit(delta, with(d));
                self.emit(done, with(t));
            }
            self.emit("response.content_part.done", with(json!({"part": part})));
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
}

/// The events of a stored `response`, from after `starting_after` when given.
pub fn replay(response: &Value, starting_after: Option<u64>) -> Vec<u8> {
    let mut r = Replay {
        out: Vec::new(),
        seq: 0,
        after: starting_after,
    };
    let mut begun = response.clone();
    if let Some(o) = begun.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        o.insert("output".into(), json!([]));
        o.insert("usage".into(), Value::Null);
        o.insert("incomplete_details".into(), Value::Null);
    }
    r.emit("response.created", json!({"response": begun}));
    r.emit("response.in_progress", json!({"response": begun}));
    let output = response.get("output").and_then(Value::as_array);
    for (index, item) in output.into_iter().flatten().enumerate() {
        r.item(index, item);
    }
    let end = match response.get("status").and_then(Value::as_str) {
        Some("incomplete") => "response.incomplete",
        Some("failed") => "response.failed",
        _ => "response.completed",
    };
    r.emit(end, json!({"response": response}));
    r.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn a_stored_response_replays_as_its_events_from_any_point() {
        let response = json!({"id": "resp_1", "object": "response", "status": "completed",
            "output": [
                {"id": "rs_1", "type": "reasoning", "summary": [],
                 "content": [{"type": "reasoning_text", "text": "hmm"}]},
                {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
                {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c",
                 "name": "f", "arguments": "{\"a\":1}"}],
            "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}});
        let all = events(&replay(&response, None));
        let kinds: Vec<&str> = all.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(all[0]["response"]["output"], json!([]));
        assert_eq!(all.last().map(|e| &e["response"]), Some(&response));
        assert!(kinds.contains(&"response.reasoning_text.delta"));
        let text: String = all
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(text, "Hi");
        let args = all
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .map(|e| e["arguments"].clone());
        assert_eq!(args, Some(json!("{\"a\":1}")));
        for (n, e) in all.iter().enumerate() {
            assert_eq!(e["sequence_number"], json!(n), "{e}");
        }
        let later = events(&replay(&response, Some(3)));
        assert_eq!(later.len(), all.len() - 4);
        assert_eq!(later[0]["sequence_number"], 4);
        let mut cut = response.clone();
        cut["status"] = json!("incomplete");
        let last = events(&replay(&cut, None)).pop().unwrap_or_default();
        assert_eq!(last["type"], "response.incomplete");
    }
}
