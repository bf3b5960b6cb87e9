//! A chat stream as OpenAI Responses stream events, translated chunk by chunk.
//!
//! The sequence is the one the SDKs' stream accumulators expect: `response.created`,
//! `response.in_progress`; per output item `response.output_item.added`, its content
//! (`response.content_part.added` + `response.output_text.delta` for a message,
//! `response.function_call_arguments.delta` for a call, `response.reasoning_text.delta` for
//! reasoning), its closing events (`….done`, `response.output_item.done`) before the next item
//! begins, in the order `order.rs` gives them (interleaved tool calls wait their turn); then `response.completed` (or `response.incomplete`) carrying
//! the whole response. Every event has a `sequence_number`.

use serde_json::{json, Map, Value};

use super::order::{Block, Key, Order, Step};
use super::responses_answer::{
    call_item, message_item, reasoning_item, response_object, status, usage, Ids,
};
use super::responses_events::{part_json, write_event, Member};
use super::text_chunk::{TextChunk, EVENT_ROOM};
use super::{json_str, split_chunk, Piece};
use crate::util::push_decimal;

/// One output item being streamed.
#[derive(Debug)]
struct Item {
    output_index: usize,
    id: String,
    block: Block,
    /// Text, reasoning or arguments so far.
    text: String,
}

#[derive(Debug, Default)]
pub struct State {
    /// The request fields every `response` object repeats.
    pub echo: Map<String, Value>,
    /// Names the ids when given (a stored response's fresh id), else the chunks' `id` does.
    pub base: Option<String>,
    seq: u64,
    finished: bool,
    /// The chat chunk fields the response object is built from (`id`, `created`, `model`).
    head: Option<Value>,
    /// The items' order (interleaved tool calls wait their turn).
    order: Order,
    open: Option<Item>,
    /// Finished items, in output order.
    done: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl State {
    fn event(&mut self, out: &mut Vec<u8>, kind: &str, members: &[(&str, Member<'_>)]) {
        write_event(out, &mut self.seq, kind, members);
    }

    fn ids(&self) -> Ids {
        Ids::new(self.base.as_deref().or_else(|| {
            self.head
                .as_ref()
                .and_then(|h| h.get("id"))
                .and_then(Value::as_str)
        }))
    }

    fn response(&self, status: (&str, Value), output: Vec<Value>, usage: Value) -> Value {
        let head = self.head.clone().unwrap_or(Value::Null);
        response_object(&head, &self.ids(), status, output, usage, &self.echo)
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
            for kind in ["response.created", "response.in_progress"] {
                self.event(&mut out, kind, &[("response", Member::Json(&response))]);
            }
        }
        let parts = split_chunk(chunk);
        if let Some(u) = parts.usage {
            self.usage = Some(u.clone());
        }
        let mut steps = self.order.pieces(parts.pieces);
        if let Some(f) = parts.finish {
            self.finish = Some(f.to_string());
            self.order.finish(&mut steps);
        }
        self.steps(&mut out, steps);
        out
    }

    /// The events of the items' steps.
    fn steps(&mut self, out: &mut Vec<u8>, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Open(block) => self.open_item(out, block),
                Step::Delta(text) => self.delta(out, &text),
                Step::Close => self.close(out),
            }
        }
    }

    /// The open item's delta event, written straight into `out`: the bytes [`State::emit`]
    /// writes for the same event as a `Value` (keys in order), without building one per piece
    /// of a long answer.
    fn delta(&mut self, out: &mut Vec<u8>, text: &str) {
        let Some(item) = self.open.as_mut() else {
            return;
        };
        item.text.push_str(text);
        // (event, has content_index, has logprobs)
        let (kind, content_index, logprobs) = match item.block.key {
            Key::Call(_) => ("response.function_call_arguments.delta", false, false),
            Key::Text => ("response.output_text.delta", true, true),
            Key::Reasoning => ("response.reasoning_text.delta", true, false),
        };
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {");
        if content_index {
            out.extend_from_slice(b"\"content_index\":0,");
        }
        out.extend_from_slice(b"\"delta\":");
        json_str(out, text);
        out.extend_from_slice(b",\"item_id\":");
        json_str(out, &item.id);
        if logprobs {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        out.extend_from_slice(b",\"output_index\":");
        push_decimal(out, item.output_index as u64);
        out.extend_from_slice(b",\"sequence_number\":");
        push_decimal(out, self.seq);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\"}\n\n");
        self.seq += 1;
    }

    /// Opens an item: `response.output_item.added` (and its content part).
    fn open_item(&mut self, out: &mut Vec<u8>, block: Block) {
        let output_index = self.done.len();
        let ids = self.ids();
        let (id, item) = match block.key {
            Key::Text => {
                let id = ids.item("msg", output_index);
                let mut item = message_item(id.clone(), "in_progress", "");
                if let Some(o) = item.as_object_mut() {
                    o.insert("content".into(), json!([]));
                }
                (id, item)
            }
            Key::Reasoning => {
                let id = ids.item("rs", output_index);
                (
                    id.clone(),
                    json!({"id": id, "type": "reasoning", "summary": [], "content": []}),
                )
            }
            Key::Call(_) => {
                let id = ids.item("fc", output_index);
                let item = call_item(id.clone(), "in_progress", &block.id, &block.name, "");
                (id, item)
            }
        };
        let index = Member::Num(output_index as u64);
        self.event(
            out,
            "response.output_item.added",
            &[("item", Member::Json(&item)), ("output_index", index)],
        );
        if !matches!(block.key, Key::Call(_)) {
            let part = part_json("", block.key == Key::Reasoning);
            self.event(
                out,
                "response.content_part.added",
                &[
                    ("content_index", Member::Num(0)),
                    ("item_id", Member::Str(&id)),
                    ("output_index", Member::Num(output_index as u64)),
                    ("part", Member::Raw(&part)),
                ],
            );
        }
        self.open = Some(Item {
            output_index,
            id,
            block,
            text: String::new(),
        });
    }

    /// Closes the open item: its `.done` events, and it joins the finished output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let (id, text) = (item.id.as_str(), item.text.as_str());
        let index = Member::Num(item.output_index as u64);
        let (item_id, zero) = (Member::Str(id), Member::Num(0));
        let done = match item.block.key {
            Key::Text | Key::Reasoning => {
                let reasoning = item.block.key == Key::Reasoning;
                let members = [
                    ("content_index", Member::Num(0)),
                    ("item_id", Member::Str(id)),
                    ("logprobs", Member::Raw(b"[]")),
                    ("output_index", Member::Num(item.output_index as u64)),
                    ("text", Member::Str(text)),
                ];
                if reasoning {
                    // no `logprobs` on reasoning text
                    let [a, b, _, d, e] = members;
                    self.event(out, "response.reasoning_text.done", &[a, b, d, e]);
                } else {
                    self.event(out, "response.output_text.done", &members);
                }
                let part = part_json(text, reasoning);
                self.event(
                    out,
                    "response.content_part.done",
                    &[
                        ("content_index", zero),
                        ("item_id", item_id),
                        ("output_index", Member::Num(item.output_index as u64)),
                        ("part", Member::Raw(&part)),
                    ],
                );
                if reasoning {
                    reasoning_item(id.to_string(), text)
                } else {
                    message_item(id.to_string(), "completed", text)
                }
            }
            Key::Call(_) => {
                let (call_id, name) = (&item.block.id, &item.block.name);
                self.event(
                    out,
                    "response.function_call_arguments.done",
                    &[
                        ("arguments", Member::Str(text)),
                        ("item_id", item_id),
                        ("name", Member::Json(name)),
                        ("output_index", Member::Num(item.output_index as u64)),
                    ],
                );
                call_item(id.to_string(), "completed", call_id, name, text)
            }
        };
        self.event(
            out,
            "response.output_item.done",
            &[("item", Member::Json(&done)), ("output_index", index)],
        );
        self.done.push(done);
    }

    /// A chunk of text pieces only ([`TextChunk`]) after the first: the events of its pieces.
    pub fn text_chunk(&mut self, chunk: &TextChunk<'_>) -> Vec<u8> {
        // room for the usual one delta event at once, not four growths of it
        let mut out = Vec::with_capacity(EVENT_ROOM + chunk.text_len());
        if !self.finished {
            for piece in chunk.pieces() {
                if self.order.live(&piece) {
                    if let Piece::Text(text) | Piece::Reasoning(text) = piece {
                        if !text.is_empty() {
                            self.delta(&mut out, text);
                        }
                    }
                    continue;
                }
                let mut steps = Vec::new();
                self.order.piece(piece, &mut steps);
                self.steps(&mut out, steps);
            }
        }
        out
    }

    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished || self.head.is_none() {
            return out;
        }
        self.finished = true;
        let mut steps = Vec::new();
        self.order.finish(&mut steps);
        self.steps(&mut out, steps);
        let status = status(self.finish.as_deref());
        let kind = if status.0 == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        // finished: the items are not needed again, so they move into the response
        let done = std::mem::take(&mut self.done);
        let response = self.response(status, done, usage(self.usage.as_ref()));
        self.event(&mut out, kind, &[("response", Member::Json(&response))]);
        out
    }

    pub fn fail(&mut self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        self.event(
            &mut out,
            "error",
            &[
                ("code", Member::Str("upstream_stream_interrupted")),
                ("message", Member::Str(message)),
                ("param", Member::Raw(b"null")),
            ],
        );
        out
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn started(&self) -> bool {
        self.head.is_some()
    }
}
