//! The content of a Chat Completions request's messages as Anthropic content blocks, for
//! `chat_messages.rs`: turns merged by role, `tool_calls` as `tool_use` blocks, text, thinking
//! and image parts as their blocks (`cache_control` on a part kept).

use serde_json::{json, Value};

use super::Untranslatable;

/// Adds a turn, merged into the previous one when it has the same role. Tool results lead a
/// user turn (Anthropic wants them first).
pub(super) fn push(turns: &mut Vec<(String, Vec<Value>)>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, content)) if r == role => {
            let results = blocks.iter().all(|b| b["type"] == "tool_result");
            if results {
                let at = content
                    .iter()
                    .take_while(|b| b["type"] == "tool_result")
                    .count();
                content.splice(at..at, blocks);
            } else {
                content.extend(blocks);
            }
        }
        _ => turns.push((role.to_string(), blocks)),
    }
}

/// A chat tool call as a `tool_use` block (`arguments` parsed; not JSON: kept as a string field).
pub(super) fn tool_use(call: &Value) -> Option<Value> {
    let id = call.get("id")?.as_str()?;
    let name = call.pointer("/function/name")?.as_str()?;
    let args = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    let input = super::anthropic_answer::tool_input(args);
    Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// Text blocks of a content that may hold only text (system, assistant, tool).
pub(super) fn text_blocks(
    content: Option<&Value>,
    field: &str,
) -> Result<Vec<Value>, Untranslatable> {
    let blocks = content_blocks(content, field)?;
    if blocks.iter().any(|b| b["type"] != "text") {
        return Err(Untranslatable::new(
            field,
            "only text parts can be sent here",
        ));
    }
    Ok(blocks)
}

/// An assistant message's `thinking_blocks` (as the answer gives them, LiteLLM's name): Anthropic
/// `thinking` blocks with their `signature`, or `redacted_thinking` blocks with their `data`.
pub(super) fn thinking_blocks(
    blocks: Option<&Value>,
    field: &str,
) -> Result<Vec<Value>, Untranslatable> {
    let blocks = match blocks {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(blocks)) => blocks,
        Some(_) => return Err(Untranslatable::new(field, "it must be a list of blocks")),
    };
    let text = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    blocks
        .iter()
        .map(|b| match b.get("type").and_then(Value::as_str) {
            Some("thinking") => match (text(b, "thinking"), text(b, "signature")) {
                (Some(t), Some(sig)) => {
                    Ok(json!({"type": "thinking", "thinking": t, "signature": sig}))
                }
                _ => Err(Untranslatable::new(
                    field,
                    "a thinking block needs its `thinking` text and its `signature`",
                )),
            },
            Some("redacted_thinking") => match text(b, "data") {
                Some(d) => Ok(json!({"type": "redacted_thinking", "data": d})),
                None => Err(Untranslatable::new(
                    field,
                    "a redacted_thinking block needs its `data`",
                )),
            },
            _ => Err(Untranslatable::new(
                field,
                "each block must be of type thinking or redacted_thinking",
            )),
        })
        .collect()
}

/// Content blocks of a chat message content (a string or a list of parts).
pub(super) fn content_blocks(
    content: Option<&Value>,
    field: &str,
) -> Result<Vec<Value>, Untranslatable> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(Untranslatable::new(
                field,
                "it must be a string or a list of parts",
            ))
        }
    };
    let mut blocks = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let here = format!("{field}[{i}]");
        let mut block = match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                json!({"type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or("")})
            }
            Some("image_url") => {
                let url = part
                    .pointer("/image_url/url")
                    .or_else(|| part.get("image_url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Untranslatable::new(&here, "an image part needs image_url.url")
                    })?;
                image(url).ok_or_else(|| {
                    Untranslatable::new(&here, "a data URL must be data:<type>;base64,<data>")
                })?
            }
            _ => {
                return Err(Untranslatable::new(
                    format!("{here}.type"),
                    "only text and image_url parts can be sent to Anthropic",
                ))
            }
        };
        if let (Some(cc), Some(b)) = (part.get("cache_control"), block.as_object_mut()) {
            b.insert("cache_control".into(), cc.clone());
        }
        blocks.push(block);
    }
    Ok(blocks)
}

/// An image block: a data URL as a base64 source, any other URL as a url source.
fn image(url: &str) -> Option<Value> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    };
    let (media, data) = rest.split_once(";base64,")?;
    Some(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}))
}
