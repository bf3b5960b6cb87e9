//! Model rules: rewrite a request body before it is cached or sent upstream.
//!
//! The first rule whose `match_model` equals the request's `model` applies, else the first whose
//! glob matches it (`claude-sonnet-*`, see `glob.rs`), else the rule named `default`, else none. A rule removes keys (`unset`), overwrites top-level keys (`set`), then
//! deep-merges `extra` (objects merge key by key, anything else replaces).

use serde_json::{Map, Value};

use crate::glob::Glob;

/// The `match_model` value that applies when no other rule matches.
pub const DEFAULT_RULE: &str = "default";

/// One checked model rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub match_model: Glob,
    pub unset: Vec<String>,
    pub set: Map<String, Value>,
    pub extra: Map<String, Value>,
}

impl Rule {
    /// One line for `--check`.
    pub fn describe(&self) -> String {
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>().join(",");
        format!(
            "{}: unset [{}] set [{}] extra [{}]",
            self.match_model,
            self.unset.join(","),
            keys(&self.set),
            keys(&self.extra)
        )
    }
}

/// The rule that applies to `model`, if any.
pub fn select<'a>(rules: &'a [Rule], model: &str) -> Option<&'a Rule> {
    rules
        .iter()
        .find(|r| r.match_model.as_str() == model && r.match_model.as_str() != DEFAULT_RULE)
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.match_model.is_pattern() && r.match_model.matches(model))
        })
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.match_model.as_str() == DEFAULT_RULE)
        })
}

/// Applies the matching rule (if any) to `body` in place: unset, then set, then extra.
pub fn apply(rules: &[Rule], body: &mut Map<String, Value>) {
    let model = match body.get("model") {
        Some(Value::String(m)) => m.as_str(),
        _ => "",
    };
    let Some(rule) = select(rules, model) else {
        return;
    };
    for key in &rule.unset {
        body.remove(key);
    }
    for (k, v) in &rule.set {
        body.insert(k.clone(), v.clone());
    }
    for (k, v) in &rule.extra {
        match body.get_mut(k) {
            Some(existing) => merge(existing, v),
            None => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Recursive merge: objects merge key by key; anything else in `src` replaces `dst`.
pub fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// The aliases a rule set adds to `/v1/models` (every `match_model` but `default`).
pub fn aliases(rules: &[Rule]) -> impl Iterator<Item = &str> {
    rules
        .iter()
        .map(|r| r.match_model.as_str())
        .filter(|m| *m != DEFAULT_RULE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(model: &str, spec: Value) -> Rule {
        let obj = |k: &str| spec.get(k).and_then(Value::as_object).cloned();
        Rule {
            match_model: Glob::new(model).unwrap(),
            unset: spec
                .get("unset")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            set: obj("set").unwrap_or_default(),
            extra: obj("extra").unwrap_or_default(),
        }
    }

    fn check(rules: &[Rule], input: Value, expected: Value) {
        let mut body = input.as_object().cloned().unwrap();
        apply(rules, &mut body);
        assert_eq!(Value::Object(body), expected);
    }

    #[test]
    fn rules_table() {
        let rules = vec![
            rule(
                "a",
                json!({"unset": ["x"], "set": {"y": 1}, "extra": {"g": {"k": 5}}}),
            ),
            rule("a", json!({"set": {"never": true}})),
            rule("default", json!({"set": {"d": true}})),
        ];
        // first match wins; unset, set, nested merge keeps the client's other fields
        check(
            &rules,
            json!({"model": "a", "x": 1, "y": 0, "g": {"t": 0.5}}),
            json!({"model": "a", "y": 1, "g": {"t": 0.5, "k": 5}}),
        );
        // default applies when nothing matches
        check(
            &rules,
            json!({"model": "b"}),
            json!({"model": "b", "d": true}),
        );
        // no rule at all: unchanged
        check(
            &[],
            json!({"model": "b", "x": 1}),
            json!({"model": "b", "x": 1}),
        );
        // extra replaces a non-object
        check(
            &rules,
            json!({"model": "a", "g": 3}),
            json!({"model": "a", "y": 1, "g": {"k": 5}}),
        );
    }

    #[test]
    fn globs_match_after_exact_names() {
        let rules = vec![
            rule(
                "claude-sonnet-*",
                json!({"set": {"model": "deepseek-chat"}}),
            ),
            rule("claude-sonnet-4-5", json!({"set": {"exact": true}})),
            rule("default", json!({"set": {"d": true}})),
        ];
        check(
            &rules,
            json!({"model": "claude-sonnet-4-6"}),
            json!({"model": "deepseek-chat"}),
        );
        check(
            &rules,
            json!({"model": "claude-sonnet-4-5"}),
            json!({"model": "claude-sonnet-4-5", "exact": true}),
        );
        check(
            &rules,
            json!({"model": "claude-opus-4"}),
            json!({"model": "claude-opus-4", "d": true}),
        );
    }

    #[test]
    fn order_is_unset_then_set_then_extra() {
        let rules = vec![rule(
            "m",
            json!({"unset": ["k"], "set": {"k": {"a": 1}}, "extra": {"k": {"b": 2}}}),
        )];
        check(
            &rules,
            json!({"model": "m", "k": {"z": 0}}),
            json!({"model": "m", "k": {"a": 1, "b": 2}}),
        );
    }
}
