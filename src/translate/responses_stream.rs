//! A chat stream as OpenAI Responses stream events, translated chunk by chunk.
//!
//! The sequence is the one the SDKs' stream accumulators expect: `response.created`,
//! `response.in_progress`; per output item `response.output_item.added`, its content
//! (`response.content_part.added` + `response.output_text.delta` for a message,
//! `response.function_call_arguments.delta` for a call, `response.reasoning_text.delta` for
//! reasoning), its closing events (`….done`, `response.output_item.done`) when the next item
//! begins or the stream ends; then `response.completed` (or `response.incomplete`) carrying
//! the whole response. Every event has a `sequence_number`.

use serde_json::{json, Value};

use super::responses_chat::{
    call_item, message_item, reasoning_item, response_object, status, usage, Ids,
};
use super::{named_event, split_chunk, Piece};

/// One output item being streamed.
#[derive(Debug)]
struct Item {
    output_index: usize,
    id: String,
    kind: Kind,
    /// Text, reasoning or arguments so far.
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Message,
    Reasoning,
    /// A function call by its chat tool-call index, with its `call_id` and `name`.
    Call(u64, Value, Value),
}

#[derive(Debug, Default)]
pub struct State {
    seq: u64,
    finished: bool,
    /// The chat chunk fields the response object is built from (`id`, `created`, `model`).
    head: Option<Value>,
    open: Option<Item>,
    /// Finished items, in output order.
    done: Vec<Value>,
    /// Chat tool-call indexes already given an item (later pieces of a closed call are late).
    calls_seen: Vec<u64>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl State {
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut event: Value) {
        if let Some(o) = event.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        named_event(out, kind, &event);
    }

    fn ids(&self) -> Ids {
        Ids::new(
            self.head
                .as_ref()
                .and_then(|h| h.get("id"))
                .and_then(Value::as_str),
        )
    }

    fn response(&self, status: (&str, Value), output: Vec<Value>, usage: Value) -> Value {
        let head = self.head.clone().unwrap_or(Value::Null);
        response_object(&head, &self.ids(), status, output, usage)
    }

    pub fn chunk(&mut self, chunk: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if self.head.is_none() {
            self.head = Some(json!({
                "id": chunk.get("id").cloned().unwrap_or(json!("relay")),
                "created": chunk.get("created").cloned().unwrap_or(json!(0)),
                "model": chunk.get("model").cloned().unwrap_or(json!("")),
            }));
            let response = self.response(("in_progress", Value::Null), vec![], Value::Null);
            self.emit(&mut out, "response.created", json!({"response": response}));
            self.emit(
                &mut out,
                "response.in_progress",
                json!({"response": response}),
            );
        }
        let parts = split_chunk(chunk);
        if let Some(u) = parts.usage {
            self.usage = Some(u.clone());
        }
        for piece in parts.pieces {
            let (kind, text, event) = match piece {
                Piece::Reasoning(r) => (Kind::Reasoning, r, "response.reasoning_text.delta"),
                Piece::Text(t) => (Kind::Message, t, "response.output_text.delta"),
                Piece::Call {
                    index,
                    call,
                    arguments,
                } => {
                    let current = matches!(&self.open, Some(Item { kind: Kind::Call(c, ..), .. }) if *c == index);
                    if !current && self.calls_seen.contains(&index) {
                        continue; // a closed call cannot grow; chat streams send calls one after another
                    }
                    if !current {
                        self.calls_seen.push(index);
                    }
                    let call_id = call
                        .get("id")
                        .cloned()
                        .unwrap_or_else(|| json!(format!("call_{index}")));
                    let name = call.pointer("/function/name").cloned().unwrap_or(json!(""));
                    let kind = Kind::Call(index, call_id, name);
                    (kind, arguments, "response.function_call_arguments.delta")
                }
            };
            let (id, index) = self.ensure(&mut out, kind);
            if text.is_empty() {
                continue;
            }
            self.append(text);
            let data = match event {
                "response.function_call_arguments.delta" => {
                    json!({"item_id": id, "output_index": index, "delta": text})
                }
                "response.output_text.delta" => json!({
                    "item_id": id, "output_index": index, "content_index": 0, "delta": text,
                    "logprobs": [],
                }),
                _ => {
                    json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text})
                }
            };
            self.emit(&mut out, event, data);
        }
        if let Some(f) = parts.finish {
            self.finish = Some(f.to_string());
        }
        out
    }

    fn append(&mut self, piece: &str) {
        if let Some(item) = self.open.as_mut() {
            item.text.push_str(piece);
        }
    }

    /// The open item of `kind` (id, output index), opening it (and closing another) if needed.
    fn ensure(&mut self, out: &mut Vec<u8>, kind: Kind) -> (String, usize) {
        if let Some(item) = &self.open {
            let same = match (&item.kind, &kind) {
                (Kind::Call(a, ..), Kind::Call(b, ..)) => a == b,
                (a, b) => a == b,
            };
            if same {
                return (item.id.clone(), item.output_index);
            }
        }
        self.close(out);
        let output_index = self.done.len();
        let ids = self.ids();
        let (id, item) = match &kind {
            Kind::Message => {
                let id = ids.item("msg", output_index);
                let mut item = message_item(id.clone(), "in_progress", "");
                if let Some(o) = item.as_object_mut() {
                    o.insert("content".into(), json!([]));
                }
                (id, item)
            }
            Kind::Reasoning => {
                let id = ids.item("rs", output_index);
                (
                    id.clone(),
                    json!({"id": id, "type": "reasoning", "summary": [], "content": []}),
                )
            }
            Kind::Call(_, call_id, name) => {
                let id = ids.item("fc", output_index);
                (id.clone(), call_item(id, "in_progress", call_id, name, ""))
            }
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        let part = match kind {
            Kind::Message => Some(json!({"type": "output_text", "text": "", "annotations": []})),
            Kind::Reasoning => Some(json!({"type": "reasoning_text", "text": ""})),
            Kind::Call(..) => None,
        };
        if let Some(part) = part {
            self.emit(
                out,
                "response.content_part.added",
                json!({
                    "item_id": id, "output_index": output_index, "content_index": 0, "part": part,
                }),
            );
        }
        self.open = Some(Item {
            output_index,
            id: id.clone(),
            kind,
            text: String::new(),
        });
        (id, output_index)
    }

    /// Closes the open item: its `.done` events, and it joins the finished output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let (id, index, text) = (item.id.clone(), item.output_index, item.text.as_str());
        let done = match &item.kind {
            Kind::Message => {
                self.emit(out, "response.output_text.done", json!({
                    "item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": [],
                }));
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": {"type": "output_text", "text": text, "annotations": []},
                    }),
                );
                message_item(id.clone(), "completed", text)
            }
            Kind::Reasoning => {
                self.emit(
                    out,
                    "response.reasoning_text.done",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0, "text": text,
                    }),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": {"type": "reasoning_text", "text": text},
                    }),
                );
                reasoning_item(id.clone(), text)
            }
            Kind::Call(_, call_id, name) => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({
                        "item_id": id, "output_index": index, "name": name, "arguments": text,
                    }),
                );
                call_item(id.clone(), "completed", call_id, name, text)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.done.push(done);
    }

    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished || self.head.is_none() {
            return out;
        }
        self.finished = true;
        self.close(&mut out);
        let status = status(self.finish.as_deref());
        let kind = if status.0 == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let response = self.response(status, self.done.clone(), usage(self.usage.as_ref()));
        self.emit(&mut out, kind, json!({"response": response}));
        out
    }

    pub fn fail(&mut self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        self.emit(
            &mut out,
            "error",
            json!({
                "code": "upstream_stream_interrupted", "message": message, "param": null,
            }),
        );
        out
    }

    #[cfg(test)]
    pub fn finished(&self) -> bool {
        self.finished
    }
}
