//! An Anthropic Messages stream as chat completion chunks, event by event (the reverse of
//! `anthropic_stream.rs`).
//!
//! `message_start` sends the role chunk; `text_delta` and `thinking_delta` become `content`
//! and `reasoning_content` deltas, and a thinking block's stop sends it whole (text and
//! signature) as a `thinking_blocks` delta, as in the plain answer; a `tool_use` block's start sends the call's head (its
//! chat `index`, `id`, name) and each `input_json_delta` an argument delta; `message_stop`
//! sends the finish chunk, the usage chunk when the client asked for it
//! (`stream_options.include_usage`), and `data: [DONE]`.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::messages_answer::{completion_id, finish_reason, now, usage};
use crate::answer::Usage;

#[derive(Debug, Default)]
pub struct State {
    started: bool,
    finished: bool,
    /// The client asked for the usage chunk.
    pub include_usage: bool,
    id: String,
    model: Value,
    created: u64,
    /// Anthropic block index → chat tool call index.
    calls: HashMap<u64, u64>,
    /// Anthropic block index → the thinking block being streamed (its text and signature),
    /// sent whole as a `thinking_blocks` delta when it stops.
    thinking: HashMap<u64, Value>,
    stop: Option<String>,
    /// The usage so far (`message_delta` counts override `message_start`'s).
    usage: Usage,
}

impl State {
    /// One Anthropic event's data.
    pub fn chunk(&mut self, event: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                let m = event.get("message").unwrap_or(&Value::Null);
                self.started = true;
                self.id = completion_id(m.get("id").and_then(Value::as_str));
                self.model = m.get("model").cloned().unwrap_or(json!(""));
                self.created = now();
                if let Some(u) = m.get("usage") {
                    self.usage.messages_onto(u);
                }
                self.send(&mut out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                match block.get("type").and_then(Value::as_str) {
                    Some("thinking") => {
                        self.thinking.insert(at, block.clone());
                    }
                    Some("redacted_thinking") => {
                        self.send(&mut out, json!({"thinking_blocks": [block]}), None);
                    }
                    _ => {}
                }
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let index = self.calls.len() as u64;
                    self.calls.insert(at, index);
                    let head = json!({"index": index, "id": block.get("id").cloned().unwrap_or(json!("")),
                        "type": "function", "function": {"name": block.get("name").cloned().unwrap_or(json!("")), "arguments": ""}});
                    self.send(&mut out, json!({"tool_calls": [head]}), None);
                }
            }
            "content_block_delta" => {
                let d = event.get("delta").unwrap_or(&Value::Null);
                let text = |k: &str| d.get(k).and_then(Value::as_str).filter(|t| !t.is_empty());
                let delta = match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => text("text").map(|t| json!({"content": t})),
                    Some("thinking_delta") => {
                        let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let block = self.thinking.get_mut(&at).and_then(Value::as_object_mut);
                        if let (Some(t), Some(b)) = (text("thinking"), block) {
                            let whole = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                            let whole = format!("{whole}{t}");
                            b.insert("thinking".into(), json!(whole));
                        }
                        text("thinking").map(|t| json!({"reasoning_content": t}))
                    }
                    Some("signature_delta") => {
                        let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let block = self.thinking.get_mut(&at).and_then(Value::as_object_mut);
                        if let (Some(sig), Some(b)) = (text("signature"), block) {
                            b.insert("signature".into(), json!(sig));
                        }
                        None
                    }
                    Some("input_json_delta") => {
                        let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        match (text("partial_json"), self.calls.get(&at)) {
                            (Some(t), Some(i)) => Some(
                                json!({"tool_calls": [{"index": i, "function": {"arguments": t}}]}),
                            ),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some(delta) = delta {
                    self.send(&mut out, delta, None);
                }
            }
            "content_block_stop" => {
                let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(block) = self.thinking.remove(&at) {
                    self.send(&mut out, json!({"thinking_blocks": [block]}), None);
                }
            }
            "message_delta" => {
                if let Some(s) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(s.to_string());
                }
                if let Some(u) = event.get("usage") {
                    self.usage.messages_onto(u);
                }
            }
            "message_stop" => return self.end(),
            _ => {}
        }
        out
    }

    /// One `chat.completion.chunk` with `delta` (and `finish`) for the first choice.
    fn send(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        super::data_event(out, &chunk);
    }

    /// The finish chunk, the usage chunk if asked for, and `[DONE]`.
    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished || !self.started {
            return out;
        }
        self.finished = true;
        let finish = finish_reason(self.stop.as_deref());
        self.send(&mut out, json!({}), Some(finish));
        if self.include_usage {
            let u = &self.usage;
            let messages_usage = json!({"input_tokens": u.input, "output_tokens": u.output,
                "cache_read_input_tokens": u.cache_read, "cache_creation_input_tokens": u.cache_write});
            let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage(&messages_usage)});
            super::data_event(&mut out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }

    /// The error a chat client gets for a stream cut short (no `[DONE]` after it).
    pub fn fail(&mut self, message: &str) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        crate::api::cut_event(crate::answer::Api::Chat, message)
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn started(&self) -> bool {
        self.started
    }
}
