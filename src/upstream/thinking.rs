//! How an endpoint is asked to think: its `thinking` setting, applied to a chat request when it
//! is sent there (like the endpoint's `model` override: after the cache key, so a request that
//! fails over to another provider is sent in that provider's terms).
//!
//! A chat request states its reasoning as `reasoning_effort` (`none`, `minimal`, `low`,
//! `medium`, `high`: what a chat client sends, and what a translated Messages `thinking` or
//! Responses `reasoning.effort` becomes). Per endpoint:
//! - `reasoning_effort` sends it as it is (OpenAI, Gemini, OpenRouter, Ollama, vLLM);
//! - `enable_thinking` sends `enable_thinking: false` for `none`, else `true` (Qwen on
//!   DashScope; a value the request already has is kept), and a translated Messages request's
//!   `thinking.budget_tokens` as `thinking_budget` (the cap DashScope takes);
//! - `drop` sends nothing (the model's name decides, as with DeepSeek).
//!
//! Earlier assistant turns' reasoning (`reasoning_content` on assistant messages, e.g. from
//! Messages `thinking` blocks) goes only to an endpoint with `reasoning_content: true` (DeepSeek,
//! whose thinking mode wants it back after tool calls); others get the messages without it.

use serde_json::{Map, Value};

use crate::translate::THINKING_BUDGET;

/// What an endpoint understands of a request's `reasoning_effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingStyle {
    ReasoningEffort,
    EnableThinking,
    Drop,
}

impl ThinkingStyle {
    /// The setting's name in the config.
    pub fn name(self) -> &'static str {
        match self {
            ThinkingStyle::ReasoningEffort => "reasoning_effort",
            ThinkingStyle::EnableThinking => "enable_thinking",
            ThinkingStyle::Drop => "drop",
        }
    }

    /// The setting as written in the config.
    pub fn parse(value: &str) -> Result<ThinkingStyle, String> {
        match value {
            "reasoning_effort" => Ok(ThinkingStyle::ReasoningEffort),
            "enable_thinking" => Ok(ThinkingStyle::EnableThinking),
            "drop" => Ok(ThinkingStyle::Drop),
            other => Err(format!(
                "`thinking` \"{other}\" is not one of \"reasoning_effort\", \"enable_thinking\", \"drop\""
            )),
        }
    }
}

/// The defaults of a provider preset (`None`: an endpoint with only a `url`): its `thinking`,
/// and whether it takes earlier turns' `reasoning_content`.
pub fn preset_default(provider: Option<&str>) -> (ThinkingStyle, bool) {
    match provider {
        Some("deepseek") => (ThinkingStyle::Drop, true),
        Some("dashscope") => (ThinkingStyle::EnableThinking, false),
        _ => (ThinkingStyle::ReasoningEffort, false),
    }
}

/// Applies an endpoint's settings to the chat request `body` it is sent: a changed copy in
/// `own` (made from `body` when needed; it may already hold the endpoint's `model`).
pub fn apply(
    thinking: ThinkingStyle,
    reasoning_content: bool,
    body: &Map<String, Value>,
    own: &mut Option<Map<String, Value>>,
) {
    let effort = body.get("reasoning_effort").and_then(Value::as_str);
    // the budget is the relay's note, never sent under its own name
    let budget = body.get(THINKING_BUDGET).cloned();
    if budget.is_some() {
        own.get_or_insert_with(|| body.clone())
            .remove(THINKING_BUDGET);
    }
    match (thinking, effort) {
        (ThinkingStyle::ReasoningEffort, _) | (_, None) => {}
        (ThinkingStyle::EnableThinking, Some(effort)) => {
            let o = own.get_or_insert_with(|| body.clone());
            o.remove("reasoning_effort");
            o.entry("enable_thinking")
                .or_insert(Value::Bool(effort != "none"));
            if let Some(budget) = budget.filter(|_| effort != "none") {
                o.entry("thinking_budget").or_insert(budget);
            }
        }
        (ThinkingStyle::Drop, Some(_)) => {
            own.get_or_insert_with(|| body.clone())
                .remove("reasoning_effort");
        }
    }
    if reasoning_content || !carries_reasoning(body) {
        return;
    }
    let o = own.get_or_insert_with(|| body.clone());
    if let Some(Value::Array(messages)) = o.get_mut("messages") {
        for m in messages.iter_mut().filter_map(Value::as_object_mut) {
            m.remove("reasoning_content");
        }
    }
}

/// Whether an assistant message of `body` carries earlier reasoning.
fn carries_reasoning(body: &Map<String, Value>) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .is_some_and(|ms| ms.iter().any(|m| m.get("reasoning_content").is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Map<String, Value> {
        match json!({"model": "m", "reasoning_effort": "none", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo", "reasoning_content": "hmm"}]})
        {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    fn sent(thinking: ThinkingStyle, reasoning: bool) -> Value {
        let b = body();
        let mut own = None;
        apply(thinking, reasoning, &b, &mut own);
        Value::Object(own.unwrap_or(b))
    }

    #[test]
    fn each_setting_sends_its_own_field() {
        let r = sent(ThinkingStyle::ReasoningEffort, false);
        assert_eq!(r["reasoning_effort"], "none");
        assert!(r["messages"][1].get("reasoning_content").is_none());
        let e = sent(ThinkingStyle::EnableThinking, false);
        assert_eq!(
            (e.get("reasoning_effort"), &e["enable_thinking"]),
            (None, &json!(false))
        );
        let d = sent(ThinkingStyle::Drop, true);
        assert_eq!(d.get("reasoning_effort"), None);
        assert_eq!(d["messages"][1]["reasoning_content"], "hmm");
        assert!(ThinkingStyle::parse("think_hard").is_err());
    }

    #[test]
    fn a_translated_budget_goes_only_to_enable_thinking_endpoints_as_thinking_budget() {
        let mut b = body();
        b.insert("reasoning_effort".into(), json!("medium"));
        b.insert(THINKING_BUDGET.into(), json!(10000));
        let send = |style, b: &Map<String, Value>| {
            let mut own = None;
            apply(style, false, b, &mut own);
            Value::Object(own.unwrap_or_else(|| b.clone()))
        };
        let qwen = send(ThinkingStyle::EnableThinking, &b);
        assert_eq!(
            (&qwen["enable_thinking"], &qwen["thinking_budget"]),
            (&json!(true), &json!(10000))
        );
        for style in [ThinkingStyle::ReasoningEffort, ThinkingStyle::Drop] {
            let other = send(style, &b);
            assert_eq!(other.get("thinking_budget"), None, "{style:?}");
            assert_eq!(other.get(THINKING_BUDGET), None, "{style:?}");
        }
        assert_eq!(qwen.get(THINKING_BUDGET), None);
        // thinking off: no budget
        b.insert("reasoning_effort".into(), json!("none"));
        let off = send(ThinkingStyle::EnableThinking, &b);
        assert_eq!(off.get("thinking_budget"), None);
    }
}
