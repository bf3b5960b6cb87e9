//! A chat stream as Anthropic Messages stream events, translated chunk by chunk.
//!
//! The first chunk opens `message_start`; text, `reasoning_content` and each tool call open a
//! content block (`content_block_start`) whose pieces follow as `text_delta`,
//! `thinking_delta` or `input_json_delta`; a block closes (`content_block_stop`) when the next
//! kind begins. The end (`data: [DONE]`, or the upstream closing after a `finish_reason`)
//! closes the open block and sends `message_delta` (`stop_reason`, usage) and `message_stop`.

use serde_json::{json, Value};

use super::anthropic_chat::{message_id, stop_reason, usage};
use super::{named_event, split_chunk, Piece};

/// The kind of the open content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its chat `index`.
    Tool(u64),
}

#[derive(Debug, Default)]
pub struct State {
    started: bool,
    finished: bool,
    /// The open block and its Anthropic index.
    open: Option<(Block, usize)>,
    /// Blocks opened so far (the next block's index).
    blocks: usize,
    /// Chat tool-call index → Anthropic block index, for every tool block opened.
    tools: Vec<(u64, usize)>,
    finish: Option<String>,
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
        for piece in parts.pieces {
            let (index, delta) = match piece {
                Piece::Reasoning(r) => (
                    self.ensure(&mut out, Block::Thinking, None),
                    json!({"type": "thinking_delta", "thinking": r}),
                ),
                Piece::Text(t) => (
                    self.ensure(&mut out, Block::Text, None),
                    json!({"type": "text_delta", "text": t}),
                ),
                Piece::Call {
                    index,
                    call,
                    arguments,
                } => {
                    let block = match self.tools.iter().find(|(c, _)| *c == index) {
                        Some((_, block)) => *block,
                        None => self.ensure(&mut out, Block::Tool(index), Some(call)),
                    };
                    if arguments.is_empty() {
                        continue;
                    }
                    let delta = json!({"type": "input_json_delta", "partial_json": arguments});
                    (block, delta)
                }
            };
            named_event(
                &mut out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        if let Some(f) = parts.finish {
            self.finish = Some(f.to_string());
        }
        out
    }

    /// The index of the open block of `kind`, opening it (and closing another) if needed.
    fn ensure(&mut self, out: &mut Vec<u8>, kind: Block, call: Option<&Value>) -> usize {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.blocks;
        self.blocks += 1;
        let block = match kind {
            Block::Text => json!({"type": "text", "text": ""}),
            Block::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Tool(chat_index) => {
                self.tools.push((chat_index, index));
                let call = call.unwrap_or(&Value::Null);
                json!({
                    "type": "tool_use",
                    "id": call.get("id").cloned().unwrap_or_else(|| json!(format!("call_{index}"))),
                    "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
                    "input": {},
                })
            }
        };
        named_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some((kind, index));
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            named_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished || !self.started {
            return out;
        }
        self.finished = true;
        self.close(&mut out);
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
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

    #[cfg(test)]
    pub fn finished(&self) -> bool {
        self.finished
    }
}
