//! The reasoning effort a Messages request asks for, as a chat `reasoning_effort`: from its
//! `thinking` setting and its `output_config.effort` (`anthropic_chat.rs` decides which wins).

use serde_json::Value;

use super::Untranslatable;

/// The `reasoning_effort` for a Messages `thinking` setting: `enabled` by its
/// `budget_tokens` (under 4096 `low`, under 16384 `medium`, else `high`), `disabled` → `none`;
/// `adaptive` leaves it to the model (none sent).
pub(super) fn thinking_effort(value: &Value) -> Result<Option<&'static str>, Untranslatable> {
    match value.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let Some(budget) = value.get("budget_tokens").and_then(Value::as_u64) else {
                return Err(Untranslatable::new(
                    "thinking.budget_tokens",
                    "`enabled` thinking needs a whole number of tokens",
                ));
            };
            Ok(Some(match budget {
                0..=4095 => "low",
                4096..=16383 => "medium",
                _ => "high",
            }))
        }
        Some("disabled") => Ok(Some("none")),
        Some("adaptive") => Ok(None),
        other => {
            let other = super::shown(other);
            Err(Untranslatable::new(
                "thinking.type",
                format!("{other} is not enabled, disabled or adaptive"),
            ))
        }
    }
}

/// Anthropic's `output_config`: its `effort` as a `reasoning_effort` (`max` → `high`, the
/// highest every chat endpoint takes); `task_budget` dropped; `format` (structured outputs) and
/// any other key are refused by name rather than dropped.
pub(super) fn output_effort(value: &Value) -> Result<Option<&'static str>, Untranslatable> {
    let Some(config) = value.as_object() else {
        return Err(Untranslatable::new(
            "output_config",
            "`output_config` must be an object",
        ));
    };
    let mut effort = None;
    for (key, v) in config {
        match (key.as_str(), v.as_str()) {
            ("effort", _) if v.is_null() => {}
            ("effort", Some("low")) => effort = Some("low"),
            ("effort", Some("medium")) => effort = Some("medium"),
            ("effort", Some("high" | "max")) => effort = Some("high"),
            ("effort", _) => {
                return Err(Untranslatable::new(
                    "output_config.effort",
                    format!("{v} is not low, medium, high or max"),
                ))
            }
            // advisory (the model paces itself); leaving it out does not change the answer
            ("task_budget", _) => {}
            ("format", _) => {
                return Err(Untranslatable::new(
                    "output_config.format",
                    "structured outputs are not translated to a chat `response_format`",
                ))
            }
            (other, _) => {
                return Err(Untranslatable::new(
                    format!("output_config.{other}"),
                    "Chat Completions has no such setting",
                ))
            }
        }
    }
    Ok(effort)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::{to_chat, Dialect};

    fn sent(extra: Value) -> Result<Value, String> {
        let mut body = json!({"model": "m", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let Value::Object(body) = body else {
            return Err("not an object".into());
        };
        to_chat(Dialect::Anthropic, &body)
            .map(|chat| chat.get("reasoning_effort").cloned().unwrap_or(Value::Null))
            .map_err(|e| e.field)
    }

    #[test]
    fn output_config_effort_is_the_reasoning_effort_unless_thinking_is_disabled() {
        let effort = |e: &str| json!({"output_config": {"effort": e}});
        assert_eq!(sent(effort("low")), Ok(json!("low")));
        assert_eq!(sent(effort("max")), Ok(json!("high")));
        let mut off = effort("high");
        off["thinking"] = json!({"type": "disabled"});
        assert_eq!(sent(off), Ok(json!("none")));
        let mut adaptive = effort("medium");
        adaptive["thinking"] = json!({"type": "adaptive"});
        assert_eq!(sent(adaptive), Ok(json!("medium")));
        assert_eq!(
            sent(json!({"output_config": {"effort": null}})),
            Ok(Value::Null)
        );
    }

    #[test]
    fn what_output_config_cannot_say_is_refused_by_name() {
        let cases = [
            (json!({"effort": "extreme"}), "output_config.effort"),
            (json!({"effort": 3}), "output_config.effort"),
            (
                json!({"format": {"type": "json_schema"}}),
                "output_config.format",
            ),
            (json!({"verbosity": "low"}), "output_config.verbosity"),
            (json!("high"), "output_config"),
        ];
        for (config, field) in cases {
            assert_eq!(
                sent(json!({ "output_config": config })),
                Err(field.to_string())
            );
        }
    }
}
