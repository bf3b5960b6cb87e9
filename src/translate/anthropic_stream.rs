//! A chat stream as Anthropic Messages stream events, translated chunk by chunk.
//!
//! The first chunk opens `message_start`; text, `reasoning_content` and each tool call open a
//! content block (`content_block_start`) whose pieces follow as `text_delta`,
//! `thinking_delta` or `input_json_delta`; a block closes (`content_block_stop`) before the
//! next one opens, in the order `order.rs` gives them (interleaved tool calls wait their turn). The end (`data: [DONE]`, or the upstream closing after a `finish_reason`)
//! closes the open block and sends `message_delta` (`stop_reason`, usage) and `message_stop`.

use serde_json::{json, Value};

use super::anthropic_answer::{matched_stop, message_id, stop_reason, usage};
use super::order::{Key, Order, Step};
use super::text_chunk::{TextChunk, EVENT_ROOM};
use super::{json_str, named_event, split_chunk, Piece};
use crate::util::push_decimal;

#[derive(Debug, Default)]
pub struct State {
    started: bool,
    finished: bool,
    /// The blocks' order (interleaved tool calls wait their turn).
    order: Order,
    /// The open block's Anthropic index and kind.
    open: Option<(usize, Key)>,
    /// Blocks opened so far (the next block's index).
    blocks: usize,
    finish: Option<String>,
    /// The stop string the upstream says matched.
    matched: Option<String>,
    usage: Option<Value>,
}

impl State {
    pub fn chunk(&mut self, chunk: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if !self.started {
            self.started = true;
            let message = json!({
                "id": message_id(chunk.get("id").and_then(Value::as_str)),
                "type": "message",
                "role": "assistant",
                "model": chunk.get("model").cloned().unwrap_or(json!("")),
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            });
            named_event(
                &mut out,
                "message_start",
                &json!({"type": "message_start", "message": message}),
            );
        }
        let parts = split_chunk(chunk);
        if let Some(u) = parts.usage {
            self.usage = Some(u.clone());
        }
        let mut steps = self.order.pieces(parts.pieces);
        if let Some(m) = matched_stop(chunk.pointer("/choices/0")) {
            self.matched = Some(m.to_string());
        }
        if let Some(f) = parts.finish {
            self.finish = Some(f.to_string());
            self.order.finish(&mut steps);
        }
        self.steps(&mut out, steps);
        out
    }

    /// The events of the blocks' steps.
    fn steps(&mut self, out: &mut Vec<u8>, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Open(b) => {
                    let index = self.blocks;
                    self.blocks += 1;
                    self.open = Some((index, b.key));
                    let block = match b.key {
                        Key::Text => json!({"type": "text", "text": ""}),
                        Key::Reasoning => {
                            json!({"type": "thinking", "thinking": "", "signature": ""})
                        }
                        Key::Call(_) => {
                            json!({"type": "tool_use", "id": b.id, "name": b.name, "input": {}})
                        }
                    };
                    named_event(
                        out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index, "content_block": block}),
                    );
                }
                Step::Delta(text) => {
                    if let Some((index, key)) = self.open {
                        delta_event(out, index, key, &text);
                    }
                }
                Step::Close => {
                    if let Some((index, _)) = self.open.take() {
                        named_event(
                            out,
                            "content_block_stop",
                            &json!({"type": "content_block_stop", "index": index}),
                        );
                    }
                }
            }
        }
    }

    /// A chunk of text pieces only ([`TextChunk`]) after the first: the events of its pieces.
    pub fn text_chunk(&mut self, chunk: &TextChunk<'_>) -> Vec<u8> {
        // room for the usual one delta event at once, not four growths of it
        let mut out = Vec::with_capacity(EVENT_ROOM + chunk.text_len());
        if !self.finished {
            for piece in chunk.pieces() {
                match (self.order.live(&piece), self.open) {
                    (true, Some((index, key))) => {
                        let (Piece::Text(text) | Piece::Reasoning(text)) = piece else {
                            continue; // `live` is never true for a call's piece
                        };
                        if !text.is_empty() {
                            delta_event(&mut out, index, key, text);
                        }
                    }
                    _ => {
                        let mut steps = Vec::new();
                        self.order.piece(piece, &mut steps);
                        self.steps(&mut out, steps);
                    }
                }
            }
        }
        out
    }

    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished || !self.started {
            return out;
        }
        self.finished = true;
        let mut steps = Vec::new();
        self.order.finish(&mut steps);
        self.steps(&mut out, steps);
        let (reason, sequence) = stop_reason(self.finish.as_deref(), self.matched.as_deref());
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage(self.usage.as_ref()),
        });
        named_event(&mut out, "message_delta", &delta);
        named_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out
    }

    pub fn fail(&mut self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        let error = json!({"type": "error", "error": {"type": "api_error", "message": message}});
        named_event(&mut out, "error", &error);
        out
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn started(&self) -> bool {
        self.started
    }
}

/// `content_block_delta` of the open block `index` (`key`'s kind) carrying `text`, written
/// straight into `out`: the bytes `named_event` writes for the same event as a `Value` (keys
/// in order), without building one per piece of a long answer.
fn delta_event(out: &mut Vec<u8>, index: usize, key: Key, text: &str) {
    let (field, kind) = match key {
        Key::Text => ("text", "text_delta"),
        Key::Reasoning => ("thinking", "thinking_delta"),
        Key::Call(_) => ("partial_json", "input_json_delta"),
    };
    out.extend_from_slice(b"event: content_block_delta\ndata: {\"delta\":{\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(out, text);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\"},\"index\":");
    push_decimal(out, index as u64);
    out.extend_from_slice(b",\"type\":\"content_block_delta\"}\n\n");
}
