//! An OpenAI Responses request as a Chat Completions request.
//!
//! `instructions` becomes the first (system) message; `input` (a string, or items: messages,
//! `function_call`, `function_call_output` (`tool_results.rs`)) becomes chat messages; function
//! `tools`, `tool_choice`, `text.format` (→ `response_format`) and `max_output_tokens` map to
//! their chat fields. The answer's way back is `responses_answer.rs`.

use serde_json::{json, Map, Value};

use super::{chat_text, check_types, tool_results, unknown_field, FieldType, Untranslatable};

/// Top-level request fields dropped: no chat equivalent, and leaving them out does not change
/// the answer's meaning (README lists them).
const DROPPED: &[&str] = &[
    "store",
    "metadata",
    "include",
    "truncation",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "stream_options",
    "client_metadata",
];

/// Top-level request fields refused (400): the relay cannot honour them.
const REFUSED: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "the relay puts the conversation of a response it stored in front of `input` before \
         translating; this one names none",
    ),
    (
        "conversation",
        "the relay keeps no conversation state; send the whole conversation in `input`",
    ),
    (
        "background",
        "background responses need server-side state the relay does not keep",
    ),
    (
        "prompt",
        "stored prompts live on OpenAI's side; send the text in `input`",
    ),
];

/// The JSON types of the fields copied as they are (a wrong one would reach the upstream as
/// a chat request it does not expect).
const TYPES: &[FieldType] = &[
    ("model", Value::is_string, "a string"),
    ("stream", is_bool_or_null, "true, false or null"),
    ("max_output_tokens", is_u64_or_null, "a whole number"),
    ("temperature", is_number_or_null, "a number"),
    ("top_p", is_number_or_null, "a number"),
    ("parallel_tool_calls", is_bool_or_null, "true or false"),
];

fn is_bool_or_null(v: &Value) -> bool {
    v.is_boolean() || v.is_null()
}

fn is_u64_or_null(v: &Value) -> bool {
    v.is_u64() || v.is_null()
}

fn is_number_or_null(v: &Value) -> bool {
    v.is_number() || v.is_null()
}

/// The chat request for a Responses request.
pub fn request(body: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
    check_types(body, TYPES)?;
    let mut chat = Map::new();
    let mut messages = Vec::new();
    for (key, value) in body {
        match key.as_str() {
            "model" | "temperature" | "top_p" | "stream" | "parallel_tool_calls" | "user" => {
                chat.insert(key.clone(), value.clone());
            }
            "max_output_tokens" => {
                chat.insert("max_tokens".into(), value.clone());
            }
            "instructions" => match value {
                Value::String(text) if !text.is_empty() => {
                    messages.insert(0, json!({"role": "system", "content": text}));
                }
                Value::String(_) | Value::Null => {}
                _ => {
                    return Err(Untranslatable::new(
                        "instructions",
                        "only a string translates; send earlier messages in `input`",
                    ))
                }
            },
            "input" => {}
            "tools" => {
                chat.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                chat.insert("tool_choice".into(), tool_choice(value)?);
            }
            "text" => {
                if let Some(format) = text_format(value)? {
                    chat.insert("response_format".into(), format);
                }
            }
            // `reasoning.summary` has no chat equivalent (README: dropped)
            "reasoning" => {
                if let Some(effort) = value.get("effort").filter(|e| e.is_string()) {
                    chat.insert("reasoning_effort".into(), effort.clone());
                }
            }
            k if DROPPED.contains(&k) => {}
            // `"background": false` and the like ask for nothing
            _ if value.is_null() || *value == Value::Bool(false) => {}
            k => return Err(unknown_field(k, REFUSED)),
        }
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
        _ => {
            return Err(Untranslatable::new(
                "input",
                "must be a string or an array of items",
            ))
        }
    }
    // reasoning that no assistant message or call followed has nothing to go with
    messages.retain(|m| {
        !(m.get("reasoning_content").is_some()
            && m.get("content").is_some_and(Value::is_null)
            && m.get("tool_calls").is_none())
    });
    tool_results::place_images(&mut messages);
    chat.insert("messages".into(), Value::Array(messages));
    Ok(chat)
}

/// Appends the chat message(s) for input item `i`.
fn input_item(i: usize, item: &Value, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("developer" | "system") => "system",
                Some(r @ ("user" | "assistant")) => r,
                other => {
                    let other = super::shown(other);
                    return Err(Untranslatable::new(
                        format!("input[{i}].role"),
                        format!("{other} is not user, assistant, system or developer"),
                    ));
                }
            };
            let content = message_content(i, role, item.get("content"))?;
            // an assistant message right after a reasoning item carries that reasoning
            if let Some(last) = reasoning_only(out).filter(|_| role == "assistant") {
                last.insert("content".into(), content);
                return Ok(());
            }
            out.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(json!("")),
                    "arguments": item.get("arguments").cloned().unwrap_or(json!("{}")),
                },
            });
            // Consecutive calls (and a preceding assistant text) form one assistant message.
            if let Some(Value::Object(last)) = out.last_mut() {
                if last.get("role") == Some(&json!("assistant")) {
                    match last.get_mut("tool_calls") {
                        Some(Value::Array(calls)) => calls.push(call),
                        _ => {
                            last.insert("tool_calls".into(), json!([call]));
                        }
                    }
                    return Ok(());
                }
            }
            out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        }
        "function_call_output" => {
            out.push(tool_results::responses(item, &format!("input[{i}]"))?);
        }
        // Earlier turns' reasoning: `reasoning_content` of the assistant message that follows
        // (sent only where an endpoint wants it: `upstream::thinking`).
        "reasoning" => {
            let texts: Vec<&str> = item
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect();
            if !texts.is_empty() {
                let text = texts.join("\n\n");
                out.push(json!({"role": "assistant", "content": null, "reasoning_content": text}));
            }
        }
        other => {
            return Err(Untranslatable::new(
                format!("input[{i}].type"),
                format!("`{other}` items have no Chat Completions equivalent"),
            ))
        }
    }
    Ok(())
}

/// The last message when it is an assistant message holding only reasoning so far.
fn reasoning_only(out: &mut [Value]) -> Option<&mut Map<String, Value>> {
    let last = out.last_mut()?.as_object_mut()?;
    let only = last.get("role") == Some(&json!("assistant"))
        && last.get("reasoning_content").is_some()
        && last.get("content").is_some_and(Value::is_null)
        && last.get("tool_calls").is_none();
    only.then_some(last)
}

fn message_content(i: usize, role: &str, content: Option<&Value>) -> Result<Value, Untranslatable> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(json!(s)),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(Untranslatable::new(
                format!("input[{i}].content"),
                "must be a string or an array of parts",
            ))
        }
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                );
            }
            Some("refusal") => {
                out.push(
                    json!({"type": "text", "text": p.get("refusal").cloned().unwrap_or(json!(""))}),
                );
            }
            Some("input_image") if role == "user" => {
                out.push(image(p, &format!("input[{i}].content[{j}].type"))?);
            }
            Some("input_image") => {
                return Err(Untranslatable::new(
                    format!("input[{i}].content[{j}].type"),
                    format!("chat {role} messages carry text only, not images"),
                ))
            }
            other => {
                let other = super::shown(other);
                return Err(Untranslatable::new(
                    format!("input[{i}].content[{j}].type"),
                    format!(
                        "{other} parts (or images by file_id) have no Chat Completions equivalent"
                    ),
                ));
            }
        }
    }
    let only_text = out.iter().all(|p| p.get("type") == Some(&json!("text")));
    if only_text {
        Ok(json!(chat_text(Some(&Value::Array(out)))))
    } else {
        Ok(Value::Array(out))
    }
}

/// An `input_image` part as a chat `image_url` part (`at`: the path named when it is refused).
pub(super) fn image(part: &Value, at: &str) -> Result<Value, Untranslatable> {
    let Some(url) = part.get("image_url").filter(|u| u.is_string()) else {
        return Err(Untranslatable::new(
            at,
            "images by file_id have no Chat Completions equivalent; send an image_url",
        ));
    };
    let mut image = Map::new();
    image.insert("url".into(), url.clone());
    if let Some(d) = part.get("detail").filter(|d| !d.is_null()) {
        image.insert("detail".into(), d.clone());
    }
    Ok(json!({"type": "image_url", "image_url": image}))
}

fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let Some(list) = value.as_array() else {
        return Err(Untranslatable::new("tools", "must be an array"));
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            return Err(Untranslatable::new(
                format!("tools[{i}].type"),
                format!(
                    "`{kind}` tools run on OpenAI's side; only function tools translate \
                     (Codex CLI: set `web_search = \"disabled\"` and `[features] multi_agent = false` \
                     in config.toml)"
                ),
            ));
        }
        let mut function = Map::new();
        for k in ["name", "description", "parameters", "strict"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                function.insert(k.to_string(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

fn tool_choice(value: &Value) -> Result<Value, Untranslatable> {
    match value {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(value.clone()),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => Ok(
            json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(json!(""))}}),
        ),
        _ => Err(Untranslatable::new(
            "tool_choice",
            "only auto, none, required or a function choice translate",
        )),
    }
}

/// `text.format` as a chat `response_format` (`None` for plain text).
fn text_format(text: &Value) -> Result<Option<Value>, Untranslatable> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.to_string(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        other => {
            let other = super::shown(other);
            Err(Untranslatable::new(
                "text.format.type",
                format!("{other} is not text, json_object or json_schema"),
            ))
        }
    }
}
