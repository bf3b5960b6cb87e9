//! OpenAI Responses ↔ Chat Completions, whole requests and answers.
//!
//! Request: `instructions` becomes the first (system) message; `input` (a string, or items:
//! messages, `function_call`, `function_call_output`) becomes chat messages; function `tools`,
//! `tool_choice`, `text.format` (→ `response_format`) and `max_output_tokens` map to their chat
//! fields. Answer: the chat message becomes `output` items (`reasoning`, `message`,
//! `function_call`), `finish_reason` the `status`, usage is renamed.

use serde_json::{json, Map, Value};

use super::{
    chat_text, chat_usage, check_types, first_choice, unknown_field, FieldType, Untranslatable,
};

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
        "the relay keeps no conversation state; send the whole conversation in `input`",
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
            "instructions" => {
                if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                    messages.insert(0, json!({"role": "system", "content": text}));
                }
            }
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
                    return Err(Untranslatable::new(
                        format!("input[{i}].role"),
                        format!("{other:?} is not user, assistant, system or developer"),
                    ))
                }
            };
            let content = message_content(i, role, item.get("content"))?;
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
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(parts @ Value::Array(_)) => chat_text(Some(parts)),
                _ => String::new(),
            };
            out.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or(json!("")),
                "content": output,
            }));
        }
        // Earlier turns' reasoning: chat requests carry none (README: dropped).
        "reasoning" => {}
        other => {
            return Err(Untranslatable::new(
                format!("input[{i}].type"),
                format!("`{other}` items have no Chat Completions equivalent"),
            ))
        }
    }
    Ok(())
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
            Some("input_image") if p.get("image_url").is_some_and(Value::is_string) => {
                let mut image = Map::new();
                image.insert(
                    "url".into(),
                    p.get("image_url").cloned().unwrap_or(json!("")),
                );
                if let Some(d) = p.get("detail") {
                    image.insert("detail".into(), d.clone());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(Untranslatable::new(
                    format!("input[{i}].content[{j}].type"),
                    format!(
                    "{other:?} parts (or images by file_id) have no Chat Completions equivalent"
                ),
                ))
            }
        }
    }
    let only_text = out.iter().all(|p| p.get("type") == Some(&json!("text")));
    if only_text || role != "user" {
        Ok(json!(chat_text(Some(&Value::Array(out)))))
    } else {
        Ok(Value::Array(out))
    }
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
        other => Err(Untranslatable::new(
            "text.format.type",
            format!("{other:?} is not text, json_object or json_schema"),
        )),
    }
}

/// Responses `usage` from a chat `usage`.
pub fn usage(chat: Option<&Value>) -> Value {
    let u = chat_usage(chat);
    json!({
        "input_tokens": u.prompt(),
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.total(),
    })
}

/// `status` and `incomplete_details` for a chat `finish_reason`.
pub fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The ids of one answer's items, derived from the chat completion id so that a replay of the
/// same answer gives the same ids.
pub struct Ids {
    pub base: String,
}

impl Ids {
    pub fn new(chat_id: Option<&str>) -> Ids {
        Ids {
            base: chat_id.unwrap_or("relay").to_string(),
        }
    }
    pub fn response(&self) -> String {
        format!("resp_{}", self.base)
    }
    pub fn item(&self, kind: &str, n: usize) -> String {
        format!("{kind}_{}_{n}", self.base)
    }
}

/// A whole `response` object around `output` (the shape of `response.completed` too).
pub fn response_object(
    chat: &Value,
    ids: &Ids,
    status: (&str, Value),
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": ids.response(),
        "object": "response",
        "created_at": chat.get("created").cloned().unwrap_or(json!(0)),
        "status": status.0,
        "incomplete_details": status.1,
        "error": null,
        "model": chat.get("model").cloned().unwrap_or(json!("")),
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    })
}

pub fn message_item(id: String, status: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

pub fn call_item(
    id: String,
    status: &str,
    call_id: &Value,
    name: &Value,
    arguments: &str,
) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": call_id, "name": name, "arguments": arguments,
    })
}

pub fn reasoning_item(id: String, text: &str) -> Value {
    json!({
        "id": id, "type": "reasoning", "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    })
}

/// The Responses answer for a chat completion.
pub fn answer(chat: &Value) -> Value {
    let (message, finish) = first_choice(chat);
    let ids = Ids::new(chat.get("id").and_then(Value::as_str));
    let mut output = Vec::new();
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(ids.item("rs", output.len()), r));
    }
    let text = chat_text(message.get("content"));
    if !text.is_empty() {
        output.push(message_item(
            ids.item("msg", output.len()),
            "completed",
            &text,
        ));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let call_id = call.get("id").cloned().unwrap_or(json!(""));
        let name = call.pointer("/function/name").cloned().unwrap_or(json!(""));
        output.push(call_item(
            ids.item("fc", output.len()),
            "completed",
            &call_id,
            &name,
            args,
        ));
    }
    response_object(chat, &ids, status(finish), output, usage(chat.get("usage")))
}
