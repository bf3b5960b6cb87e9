//! An Anthropic Messages request as a Chat Completions request.
//!
//! `system` becomes the first (system) message; content blocks become chat parts
//! (`image` → `image_url`), `tool_use` blocks an assistant's `tool_calls`, `tool_result`
//! blocks `tool` messages (`tool_results.rs`); `tools`, `tool_choice`, `stop_sequences`,
//! `metadata.user_id` map to their chat fields. The answer's way back is `anthropic_answer.rs`.

use serde_json::{json, Map, Value};

use super::effort::{output_effort, thinking_effort};
use super::{check_types, tool_results, unknown_field, FieldType, Untranslatable};

/// Top-level request fields dropped because Chat Completions has nothing like them and
/// leaving them out does not change the answer's meaning (README lists them).
const DROPPED: &[&str] = &[
    "top_k",
    "service_tier",
    "cache_control",
    "context_management",
];

/// Top-level request fields refused (400): dropping them would answer something else.
const REFUSED: &[(&str, &str)] = &[
    (
        "mcp_servers",
        "MCP servers run on Anthropic's side; define the tools as client tools",
    ),
    (
        "container",
        "code-execution containers exist only on Anthropic's side",
    ),
];

/// The JSON types of the fields copied as they are (a wrong one would reach the upstream as
/// a chat request it does not expect).
const TYPES: &[FieldType] = &[
    ("model", Value::is_string, "a string"),
    ("max_tokens", Value::is_u64, "a whole number"),
    ("stream", Value::is_boolean, "true or false"),
    ("temperature", Value::is_number, "a number"),
    ("top_p", Value::is_number, "a number"),
    ("top_k", Value::is_u64, "a whole number"),
    ("stop_sequences", Value::is_array, "a list of strings"),
    ("messages", Value::is_array, "a list of messages"),
];

/// The chat request for an Anthropic Messages request.
pub fn request(body: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
    check_types(body, TYPES)?;
    let mut chat = Map::new();
    let mut messages = Vec::new();
    let mut effort = None;
    for (key, value) in body {
        match key.as_str() {
            "model" | "temperature" | "top_p" | "stream" => {
                chat.insert(key.clone(), value.clone());
            }
            "max_tokens" => {
                chat.insert("max_tokens".into(), value.clone());
            }
            "stop_sequences" => {
                chat.insert("stop".into(), value.clone());
            }
            "system" => {
                let text = system_text(value)?;
                if !text.is_empty() {
                    messages.insert(0, json!({"role": "system", "content": text}));
                }
            }
            "messages" => {}
            "thinking" => {
                if let Some(effort) = thinking_effort(value)? {
                    chat.insert("reasoning_effort".into(), json!(effort));
                }
                if let Some(budget) = value
                    .get("budget_tokens")
                    .filter(|_| value.get("type").and_then(Value::as_str) == Some("enabled"))
                {
                    chat.insert(super::THINKING_BUDGET.into(), budget.clone());
                }
            }
            "output_config" => effort = output_effort(value)?,
            "metadata" => {
                if let Some(user) = value.get("user_id").filter(|u| !u.is_null()) {
                    chat.insert("user".into(), user.clone());
                }
            }
            "tools" => {
                chat.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                let (choice, parallel) = tool_choice(value)?;
                if let Some(choice) = choice {
                    chat.insert("tool_choice".into(), choice);
                }
                if parallel == Some(false) {
                    chat.insert("parallel_tool_calls".into(), Value::Bool(false));
                }
            }
            k if DROPPED.contains(&k) => {}
            k => return Err(unknown_field(k, REFUSED)),
        }
    }
    let Some(list) = body.get("messages").and_then(Value::as_array) else {
        return Err(Untranslatable::new(
            "messages",
            "`messages` must be an array of messages",
        ));
    };
    for (i, m) in list.iter().enumerate() {
        message(i, m, &mut messages)?;
    }
    tool_results::place_images(&mut messages);
    chat.insert("messages".into(), Value::Array(messages));
    // the explicit effort wins over the one a thinking budget implies; thinking `disabled`
    // stays `none` (an effort does not turn thinking on)
    if let Some(effort) = effort {
        if chat.get("reasoning_effort") != Some(&json!("none")) {
            chat.insert("reasoning_effort".into(), json!(effort));
        }
    }
    if chat.contains_key("tools") && !chat.contains_key("tool_choice") {
        // Anthropic's default; stated so the chat model behaves the same
        chat.insert("tool_choice".into(), json!("auto"));
    }
    Ok(chat)
}

fn system_text(value: &Value) -> Result<String, Untranslatable> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => parts.push(b.get("text").and_then(Value::as_str).unwrap_or("")),
                    other => {
                        let other = super::shown(other);
                        return Err(Untranslatable::new(
                            format!("system[{i}].type"),
                            format!("system blocks must be text, not {other}"),
                        ));
                    }
                }
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(Untranslatable::new(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

/// Appends the chat messages for Anthropic message `i`.
fn message(i: usize, m: &Value, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
    if role == "system" {
        // mid-conversation system messages (Claude Code sends them)
        let text = system_text(m.get("content").unwrap_or(&Value::Null))
            .map_err(|e| Untranslatable::new(format!("messages[{i}].content"), e.why))?;
        out.push(json!({"role": "system", "content": text}));
        return Ok(());
    }
    if role != "user" && role != "assistant" {
        return Err(Untranslatable::new(
            format!("messages[{i}].role"),
            "must be `user`, `assistant` or `system`",
        ));
    }
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(Untranslatable::new(
                format!("messages[{i}].content"),
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut reasoning = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].content[{j}].{f}");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts
                .push(json!({"type": "text", "text": b.get("text").cloned().unwrap_or(json!(""))})),
            Some("image") if role == "user" => parts.push(image(b, &at("source"))?),
            Some("tool_use") if role == "assistant" => {
                let input = b.get("input").cloned().unwrap_or(json!({}));
                calls.push(json!({
                    "id": b.get("id").cloned().unwrap_or(json!("")),
                    "type": "function",
                    "function": {"name": b.get("name").cloned().unwrap_or(json!("")), "arguments": input.to_string()},
                }));
            }
            Some("tool_result") if role == "user" => results.push(tool_results::anthropic(
                b,
                &format!("messages[{i}].content[{j}]"),
            )?),
            // Earlier turns' reasoning goes as `reasoning_content` (sent only where an endpoint
            // wants it: `upstream::thinking`); redacted reasoning is Anthropic's ciphertext.
            Some("thinking") if role == "assistant" => {
                if let Some(t) = b.get("thinking").and_then(Value::as_str) {
                    reasoning.push(t);
                }
            }
            Some("redacted_thinking") if role == "assistant" => {}
            other => {
                let other = super::shown(other);
                return Err(Untranslatable::new(
                    at("type"),
                    format!("a {role} block of type {other} has no Chat Completions equivalent"),
                ));
            }
        }
    }
    // Tool results answer the previous assistant turn, so they come first.
    out.extend(results);
    if role == "assistant" {
        if parts.is_empty() && calls.is_empty() && reasoning.is_empty() {
            return Ok(());
        }
        let text = joined_text(&parts);
        let mut msg = Map::new();
        msg.insert("role".into(), json!("assistant"));
        let content = if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
        msg.insert("content".into(), content);
        if !reasoning.is_empty() {
            msg.insert("reasoning_content".into(), json!(reasoning.join("\n\n")));
        }
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(msg));
    } else if !parts.is_empty() {
        let only_text = parts.iter().all(|p| p.get("type") == Some(&json!("text")));
        let content = if only_text {
            json!(joined_text(&parts))
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

/// The text of chat text parts, joined by a blank line (separate blocks stay separate).
fn joined_text(parts: &[Value]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    texts.join("\n\n")
}

/// A Messages `image` block as a chat `image_url` part (`at`: its `source`'s path).
pub(super) fn image(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        other => {
            let other = super::shown(other);
            return Err(Untranslatable::new(
                at,
                format!(
                    "an image source of type {other} cannot be sent as a URL; use base64 or url"
                ),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let Some(list) = value.as_array() else {
        return Err(Untranslatable::new("tools", "must be an array"));
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(Untranslatable::new(
                    format!("tools[{i}].type"),
                    format!("`{other}` is a tool that runs on Anthropic's side; only client tools translate"),
                ))
            }
        }
        let mut function = Map::new();
        function.insert("name".into(), t.get("name").cloned().unwrap_or(json!("")));
        if let Some(d) = t.get("description") {
            function.insert("description".into(), d.clone());
        }
        function.insert(
            "parameters".into(),
            t.get("input_schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        );
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// Chat `tool_choice` and whether parallel calls are allowed (`disable_parallel_tool_use`).
fn tool_choice(value: &Value) -> Result<(Option<Value>, Option<bool>), Untranslatable> {
    let parallel = value
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let choice = match value.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            json!({"type": "function", "function": {"name": value.get("name").cloned().unwrap_or(json!(""))}})
        }
        other => {
            let other = super::shown(other);
            return Err(Untranslatable::new(
                "tool_choice.type",
                format!("{other} is not one of auto, any, tool, none"),
            ));
        }
    };
    Ok((Some(choice), parallel))
}
