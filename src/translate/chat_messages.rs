//! A Chat Completions request as an Anthropic Messages request (a chat client on a model only
//! an `anthropic` endpoint serves).
//!
//! `system`/`developer` messages become `system`; consecutive turns of one role merge (Anthropic
//! wants user and assistant to alternate); `tool_calls` become `tool_use` blocks and `tool`
//! messages `tool_result` blocks in a user turn; `image_url` parts become image blocks (a data
//! URL → base64 source, else a url source); `cache_control` on a part is kept. `max_tokens`
//! (or `max_completion_tokens`) defaults to [`DEFAULT_MAX_TOKENS`]; `reasoning_effort` becomes a
//! thinking budget ([`thinking_budget`]). The answer's way back is `messages_answer.rs`.

use serde_json::{json, Map, Value};

use super::chat_blocks::{content_blocks, push, text_blocks, thinking_blocks, tool_use};
use super::{check_types, FieldType, Untranslatable};

/// `max_tokens` when the chat client set neither `max_tokens` nor `max_completion_tokens`
/// (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Chat fields dropped: nothing like them in Messages, and the answer means the same without.
const DROPPED: &[&str] = &[
    "stream_options",
    "store",
    "service_tier",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "prompt_cache_key",
    "metadata",
];

/// Chat fields refused (400) unless harmless (see [`harmless`]).
const REFUSED: &[(&str, &str)] = &[
    (
        "n",
        "Anthropic answers one choice per request; send n requests",
    ),
    ("logprobs", "Anthropic does not return log probabilities"),
    (
        "top_logprobs",
        "Anthropic does not return log probabilities",
    ),
    ("logit_bias", "Anthropic has no logit bias"),
    (
        "response_format",
        "Anthropic has no structured-output mode; describe the format in the prompt or use a tool",
    ),
    ("audio", "Anthropic does not answer with audio"),
    ("modalities", "Anthropic answers text only"),
    ("prediction", "Anthropic has no predicted outputs"),
    (
        "web_search_options",
        "web search is a server tool on Anthropic's side",
    ),
    ("functions", "use `tools`"),
    ("function_call", "use `tool_choice`"),
];

const TYPES: &[FieldType] = &[
    ("model", Value::is_string, "a string"),
    ("max_tokens", Value::is_u64, "a whole number"),
    ("max_completion_tokens", Value::is_u64, "a whole number"),
    ("stream", Value::is_boolean, "true or false"),
    ("temperature", Value::is_number, "a number"),
    ("top_p", Value::is_number, "a number"),
    ("messages", Value::is_array, "a list of messages"),
    ("tools", Value::is_array, "a list of tools"),
    ("reasoning_effort", Value::is_string, "a string"),
];

/// The thinking budget (tokens) for a chat `reasoning_effort` (README documents it):
/// `minimal`/`low` 1024, `medium` 4096, `high` 16384; `none` turns thinking off.
pub fn thinking_budget(effort: &str) -> Option<Option<u64>> {
    match effort {
        "none" => Some(None),
        "minimal" | "low" => Some(Some(1024)),
        "medium" => Some(Some(4096)),
        "high" => Some(Some(16384)),
        _ => None,
    }
}

/// A refused field that holds its default value asks for nothing (`n: 1`, `logprobs: false`,
/// `response_format: {"type": "text"}`).
fn harmless(key: &str, value: &Value) -> bool {
    match key {
        "n" => value == &json!(1),
        "logprobs" => value == &json!(false),
        "response_format" => value.get("type") == Some(&json!("text")),
        _ => value.is_null(),
    }
}

/// The Messages request for a chat request.
pub fn request(body: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
    check_types(body, TYPES)?;
    let mut out = Map::new();
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut max_tokens = None;
    let mut budget = None;
    for (key, value) in body {
        match key.as_str() {
            "model" | "temperature" | "top_p" | "stream" => {
                out.insert(key.clone(), value.clone());
            }
            // `max_completion_tokens` replaces the older `max_tokens` when both are set
            "max_tokens" if !body.contains_key("max_completion_tokens") => {
                max_tokens = value.as_u64();
            }
            "max_tokens" => {}
            "max_completion_tokens" => {
                max_tokens = value.as_u64();
            }
            "stop" => {
                let stops = match value {
                    Value::String(s) => vec![json!(s)],
                    Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
                    Value::Null => Vec::new(),
                    _ => {
                        return Err(Untranslatable::new(
                            "stop",
                            "it must be a string or a list of strings",
                        ))
                    }
                };
                if !stops.is_empty() {
                    out.insert("stop_sequences".into(), Value::Array(stops));
                }
            }
            "messages" => {}
            "tools" => {
                out.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                if let Some(choice) = tool_choice(value)? {
                    out.insert("tool_choice".into(), choice);
                }
            }
            // `false` becomes `tool_choice.disable_parallel_tool_use` below; `true` is the default
            "parallel_tool_calls" => {}
            "user" => {
                if let Some(u) = value.as_str() {
                    out.insert("metadata".into(), json!({"user_id": u}));
                }
            }
            "reasoning_effort" => {
                let effort = value.as_str().unwrap_or("");
                match thinking_budget(effort) {
                    Some(Some(b)) => {
                        budget = Some(b);
                        out.insert(
                            "thinking".into(),
                            json!({"type": "enabled", "budget_tokens": b}),
                        );
                    }
                    Some(None) => {}
                    None => {
                        return Err(Untranslatable::new(
                            "reasoning_effort",
                            "it must be none, minimal, low, medium or high",
                        ))
                    }
                }
            }
            k if DROPPED.contains(&k) => {}
            k => {
                if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == k) {
                    if !harmless(k, value) {
                        return Err(Untranslatable::new(k, *why));
                    }
                } else {
                    return Err(Untranslatable::new(
                        k,
                        "Anthropic Messages has no such field",
                    ));
                }
            }
        }
    }
    let messages = body.get("messages").and_then(Value::as_array);
    for (i, m) in messages.into_iter().flatten().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let at = |f: &str| format!("messages[{i}].{f}");
        match role {
            "system" | "developer" => system.extend(text_blocks(m.get("content"), &at("content"))?),
            "user" => push(
                &mut turns,
                "user",
                content_blocks(m.get("content"), &at("content"))?,
            ),
            "assistant" => {
                // thinking blocks of an earlier answer go back first, signatures intact
                let mut blocks = thinking_blocks(m.get("thinking_blocks"), &at("thinking_blocks"))?;
                blocks.extend(text_blocks(m.get("content"), &at("content"))?);
                let calls = m.get("tool_calls").and_then(Value::as_array);
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    blocks.push(tool_use(call).ok_or_else(|| {
                        Untranslatable::new(
                            at(&format!("tool_calls[{j}]")),
                            "a function call needs an id and a name",
                        )
                    })?);
                }
                push(&mut turns, "assistant", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Untranslatable::new(
                            at("tool_call_id"),
                            "a tool message needs the id of its call",
                        )
                    })?;
                // a tool result takes text and image blocks, as Anthropic's does
                let content = content_blocks(m.get("content"), &at("content"))?;
                push(
                    &mut turns,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            _ => {
                return Err(Untranslatable::new(
                    at("role"),
                    "it must be system, developer, user, assistant or tool",
                ))
            }
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    // Anthropic's thinking takes no sampling changes: temperature 1 only
    let temperature = out.get("temperature").and_then(Value::as_f64);
    if budget.is_some() && temperature.is_some_and(|t| (t - 1.0).abs() > f64::EPSILON) {
        return Err(Untranslatable::new(
            "temperature",
            "Anthropic takes no temperature but 1 with thinking (reasoning_effort)",
        ));
    }
    // thinking counts against max_tokens, which must exceed its budget
    let max_tokens = match (max_tokens, budget) {
        (Some(m), Some(b)) if m <= b => {
            return Err(Untranslatable::new(
                "max_tokens",
                format!("with reasoning_effort it must exceed the thinking budget of {b} tokens"),
            ))
        }
        (Some(m), _) => m,
        (None, b) => DEFAULT_MAX_TOKENS + b.unwrap_or(0),
    };
    out.insert("max_tokens".into(), json!(max_tokens));
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        one_tool_call_at_a_time(&mut out);
    }
    Ok(out)
}

/// Chat `tools` as Anthropic tools.
fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let mut out = Vec::new();
    for (i, tool) in value.as_array().into_iter().flatten().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Untranslatable::new(
                format!("tools[{i}].type"),
                "only function tools can be sent to Anthropic",
            ));
        }
        let f = tool.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
            Untranslatable::new(
                format!("tools[{i}].function.name"),
                "a function tool needs a name",
            )
        })?;
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        if let Some(d) = f.get("description").filter(|d| d.is_string()) {
            t.insert("description".into(), d.clone());
        }
        let schema = f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        t.insert("input_schema".into(), schema);
        if let Some(cc) = tool.get("cache_control") {
            t.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(t));
    }
    Ok(Value::Array(out))
}

/// `parallel_tool_calls: false`: Anthropic's `disable_parallel_tool_use` on the tool choice (an
/// `auto` one when the client named none; `none` calls no tool at all, so it stays as it is).
fn one_tool_call_at_a_time(out: &mut Map<String, Value>) {
    let choice = out
        .entry("tool_choice")
        .or_insert_with(|| json!({"type": "auto"}));
    if let Some(c) = choice.as_object_mut() {
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
}

/// Chat `tool_choice` as Anthropic's (`none` → `{"type": "none"}`).
fn tool_choice(value: &Value) -> Result<Option<Value>, Untranslatable> {
    Ok(Some(match value {
        Value::String(s) if s == "auto" => json!({"type": "auto"}),
        Value::String(s) if s == "required" => json!({"type": "any"}),
        Value::String(s) if s == "none" => json!({"type": "none"}),
        Value::Null => return Ok(None),
        v => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => json!({"type": "tool", "name": name}),
            None => {
                return Err(Untranslatable::new(
                    "tool_choice",
                    "it must be auto, required, none or a function",
                ))
            }
        },
    }))
}
