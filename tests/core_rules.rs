//! Model rules: selection (match by model, `default` fallback, first match
//! wins, none) and rewriting (`unset` → `set` → `extra` deep merge), on chat,
//! completions and embeddings. Every case asserts on the body the upstream
//! fixture received.

use serde_json::{json, Value};

use crate::common::*;

/// Starts a relay with `rules`, POSTs `sent` to `path` and asserts the
/// upstream received exactly `expected` on the `/v1` version of that path.
fn check(rules: Value, path: &str, sent: Value, expected: Value) {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({"model_rules": rules})));
    let r = post_json(&relay.url(path), &sent);
    assert_eq!(r.status, 200, "relay answered {}: {}", r.status, r.body);
    let seen = up.only_request();
    let up_path = format!("/v1{}", path.trim_start_matches("/v1"));
    assert_eq!(seen.path, up_path);
    let got = seen.json();
    assert_eq!(
        got,
        expected,
        "\nupstream got:  {}\nexpected:      {}",
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
}

fn msgs() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

const CHAT: &str = "/v1/chat/completions";

#[test]
fn rule_matched_by_model_rewrites_body() {
    check(
        json!([{"match_model": "fast", "set": {"model": "real-model-x", "temperature": 0}}]),
        CHAT,
        json!({"model": "fast", "messages": msgs()}),
        json!({"model": "real-model-x", "messages": msgs(), "temperature": 0}),
    );
}

#[test]
fn unmatched_model_falls_back_to_default_rule() {
    check(
        json!([
            {"match_model": "fast", "set": {"tag": "fast"}},
            {"match_model": "default", "set": {"max_tokens": 64}},
        ]),
        CHAT,
        json!({"model": "other", "messages": msgs()}),
        json!({"model": "other", "messages": msgs(), "max_tokens": 64}),
    );
}

#[test]
fn no_matching_rule_and_no_default_leaves_body_unchanged() {
    let body = json!({"model": "other", "messages": msgs(), "temperature": 0.7, "n": 1});
    check(
        json!([{"match_model": "fast", "set": {"temperature": 0}, "unset": ["n"]}]),
        CHAT,
        body.clone(),
        body,
    );
}

#[test]
fn no_rules_at_all_leaves_body_unchanged() {
    let body = json!({"model": "m", "messages": msgs(), "metadata": {"a": {"b": [1, 2]}}});
    check(json!([]), CHAT, body.clone(), body);
}

#[test]
fn unset_removes_only_top_level_keys() {
    check(
        json!([{"match_model": "m", "unset": ["logprobs", "user", "not_present"]}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "logprobs": true, "user": "u1", "metadata": {"user": "kept"}}),
        json!({"model": "m", "messages": msgs(), "metadata": {"user": "kept"}}),
    );
}

#[test]
fn set_overwrites_and_adds_top_level_keys() {
    check(
        json!([{"match_model": "m", "set": {"temperature": 0.2, "max_tokens": 100}}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "temperature": 0.9}),
        json!({"model": "m", "messages": msgs(), "temperature": 0.2, "max_tokens": 100}),
    );
}

#[test]
fn set_replaces_objects_wholesale_without_merging() {
    check(
        json!([{"match_model": "m", "set": {"generation_config": {"top_k": 5}}}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "generation_config": {"temperature": 0.5}}),
        json!({"model": "m", "messages": msgs(), "generation_config": {"top_k": 5}}),
    );
}

#[test]
fn extra_deep_merge_keeps_client_nested_fields() {
    check(
        json!([{"match_model": "m", "extra": {"generation_config": {"top_k": 5}}}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "generation_config": {"temperature": 0.5}}),
        json!({"model": "m", "messages": msgs(), "generation_config": {"temperature": 0.5, "top_k": 5}}),
    );
}

#[test]
fn extra_merges_recursively_at_depth() {
    check(
        json!([{"match_model": "m", "extra": {"a": {"b": {"d": 2, "c": {"y": 2}}, "e": 3}}}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "a": {"b": {"c": {"x": 1}, "keep": true}}}),
        json!({"model": "m", "messages": msgs(), "a": {"b": {"c": {"x": 1, "y": 2}, "d": 2, "keep": true}, "e": 3}}),
    );
}

#[test]
fn extra_adds_missing_keys() {
    check(
        json!([{"match_model": "m", "extra": {"chat_template_kwargs": {"enable_thinking": false}}}]),
        CHAT,
        json!({"model": "m", "messages": msgs()}),
        json!({"model": "m", "messages": msgs(), "chat_template_kwargs": {"enable_thinking": false}}),
    );
}

#[test]
fn extra_replaces_non_object_values() {
    check(
        json!([{"match_model": "m", "extra": {
            "stop": ["y"],
            "scalar_to_obj": {"k": 1},
            "obj_to_scalar": "text",
            "nested": {"list": [3]},
        }}]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "stop": ["x", "z"], "scalar_to_obj": 5,
               "obj_to_scalar": {"type": "json_object"}, "nested": {"list": [1, 2], "other": 1}}),
        json!({"model": "m", "messages": msgs(), "stop": ["y"], "scalar_to_obj": {"k": 1},
               "obj_to_scalar": "text", "nested": {"list": [3], "other": 1}}),
    );
}

#[test]
fn rule_steps_run_in_order_unset_set_extra() {
    check(
        json!([{
            "match_model": "m",
            "unset": ["temperature", "cfg2"],
            "set": {"temperature": 0.1, "cfg": {"a": 1}},
            "extra": {"cfg": {"b": 2}, "cfg2": {"z": 1}},
        }]),
        CHAT,
        json!({"model": "m", "messages": msgs(), "temperature": 0.9, "cfg": {"old": 0}, "cfg2": {"y": 1}}),
        // set after unset: temperature present; extra after set: cfg merged;
        // extra after unset: cfg2 has only the rule's fields.
        json!({"model": "m", "messages": msgs(), "temperature": 0.1, "cfg": {"a": 1, "b": 2}, "cfg2": {"z": 1}}),
    );
}

#[test]
fn first_matching_rule_wins() {
    check(
        json!([
            {"match_model": "fast", "set": {"tag": "first"}},
            {"match_model": "fast", "set": {"tag": "second", "extra_key": 1}},
        ]),
        CHAT,
        json!({"model": "fast", "messages": msgs()}),
        json!({"model": "fast", "messages": msgs(), "tag": "first"}),
    );
}

#[test]
fn specific_rule_beats_default_listed_before_it() {
    check(
        json!([
            {"match_model": "default", "set": {"tag": "default"}},
            {"match_model": "fast", "set": {"tag": "fast"}},
        ]),
        CHAT,
        json!({"model": "fast", "messages": msgs()}),
        json!({"model": "fast", "messages": msgs(), "tag": "fast"}),
    );
}

#[test]
fn rules_apply_to_chat_without_v1_prefix() {
    check(
        json!([{"match_model": "alias", "set": {"model": "real"}}]),
        "/chat/completions",
        json!({"model": "alias", "messages": msgs()}),
        json!({"model": "real", "messages": msgs()}),
    );
}

#[test]
fn rules_apply_to_embeddings() {
    check(
        json!([{"match_model": "embed-alias", "set": {"model": "text-embedding-3-small"},
                "unset": ["user"], "extra": {"dimensions": 256}}]),
        "/v1/embeddings",
        json!({"model": "embed-alias", "input": ["a", "b"], "user": "u"}),
        json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 256}),
    );
}

#[test]
fn rules_apply_to_completions() {
    check(
        json!([{"match_model": "default", "set": {"max_tokens": 7},
                "extra": {"logit_bias": {"50256": -100}}}]),
        "/completions",
        json!({"model": "davinci", "prompt": "Say hi", "logit_bias": {"11": 1}}),
        json!({"model": "davinci", "prompt": "Say hi", "max_tokens": 7,
               "logit_bias": {"11": 1, "50256": -100}}),
    );
}

/// One pattern means one thing wherever the config takes it: `?` is any one character in a
/// rule's `match_model`, an endpoint's `models`, a key's `models` allow-list and `prices` alike
/// (the endpoints once read it as a literal `?`, and served no such model).
#[test]
fn one_glob_syntax_for_rules_endpoints_allow_lists_and_prices() {
    let up = Upstream::openai();
    let key = "sk-glob-test-key-1";
    let admin = "sk-glob-test-admin-1";
    let cfg = json!({
        "upstreams": [{"url": up.base_url(), "models": ["gpt-4?-mini"]}],
        "model_rules": [{"match_model": "gpt-4?-mini", "set": {"temperature": 0}}],
        "auth": {"keys": [{"key": key, "models": ["gpt-4?-mini"]}], "admin_key": admin},
        "prices": [{"match_model": "gpt-4?-mini", "input_per_million": 1e6, "output_per_million": 0}],
    });
    let mut text: Value = serde_json::from_str(&config_json(&up.base_url(), cfg)).unwrap();
    text.as_object_mut().unwrap().remove("upstream");
    let relay = Relay::start(&text.to_string());
    let auth = format!("Bearer {key}");
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat_body("gpt-4o-mini"),
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.only_request().json()["temperature"], json!(0));
    let refused = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat_body("gpt-4-mini"),
        &[("Authorization", &auth)],
    );
    refused.assert_error(403, "model_not_allowed");
    // priced by the same pattern: the fixture's prompt tokens at one dollar each
    let list = request(
        "GET",
        &relay.url("/admin/stats"),
        &[("Authorization", &format!("Bearer {admin}"))],
        None,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let cost = &list.json()["data"][0];
    assert!(
        cost.to_string().contains("\"cost_usd\"") && cost["cost_usd"].as_f64().unwrap() > 0.0,
        "{cost}"
    );
}
