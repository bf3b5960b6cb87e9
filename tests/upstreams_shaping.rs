//! Request shaping (issue #4): the `enable_thinking` switch and `context_trim`.

use serde_json::{json, Value};

use crate::common::*;

fn sent_body(config_extra: Value, body: &Value, path: &str) -> Value {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), config_extra));
    let r = post_json(&relay.url(path), body);
    assert_eq!(r.status, 200, "body: {}", r.body);
    up.only_request().json()
}

#[test]
fn enable_thinking_sets_overrides_or_leaves_the_field() {
    let with = |v: Value| json!({"model": "qwen3", "enable_thinking": v, "messages": [{"role": "user", "content": "hi"}]});
    let path = "/v1/chat/completions";
    let b = sent_body(json!({"enable_thinking": false}), &with(json!(true)), path);
    assert_eq!(
        b["enable_thinking"], false,
        "config false overrides the client's true"
    );
    let b = sent_body(json!({"enable_thinking": true}), &chat("qwen3"), path);
    assert_eq!(b["enable_thinking"], true, "config true is added");
    let b = sent_body(json!({"enable_thinking": null}), &with(json!(true)), path);
    assert_eq!(b["enable_thinking"], true, "null leaves the client's value");
    let b = sent_body(json!({}), &chat("qwen3"), path);
    assert!(
        b.get("enable_thinking").is_none(),
        "absent adds nothing: {b}"
    );
    let emb = json!({"model": "e", "input": "hello"});
    let b = sent_body(json!({"enable_thinking": false}), &emb, "/v1/embeddings");
    assert!(
        b.get("enable_thinking").is_none(),
        "chat requests only: {b}"
    );
}

fn trimmed(max: u64, messages: Value) -> Vec<Value> {
    let body = json!({"model": "m", "messages": messages});
    let cfg = json!({"context_trim": {"enabled": true, "max_context_tokens": max}});
    let sent = sent_body(cfg, &body, "/v1/chat/completions");
    sent["messages"].as_array().unwrap().clone()
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m["content"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(8)
                .collect()
        })
        .collect()
}

#[test]
fn trim_drops_oldest_turns_keeps_system_and_latest() {
    let long = "word ".repeat(80); // 400 ASCII characters ≈ 104 tokens with framing
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": format!("old-q {long}")},
        {"role": "assistant", "content": format!("old-a {long}")},
        {"role": "user", "content": format!("mid-q {long}")},
        {"role": "assistant", "content": format!("mid-a {long}")},
        {"role": "user", "content": format!("new-q {long}")},
    ]);
    let kept = trimmed(350, messages.clone());
    assert_eq!(
        contents(&kept),
        ["You are ", "mid-q wo", "mid-a wo", "new-q wo"],
        "the oldest turn (question and answer) goes first"
    );
    let untouched = trimmed(100_000, messages.clone());
    assert_eq!(untouched, messages.as_array().unwrap().clone());
    // The latest message stays even when it alone exceeds the budget.
    let kept = trimmed(10, messages);
    assert_eq!(contents(&kept), ["You are ", "new-q wo"]);
}

#[test]
fn trim_keeps_tool_calls_and_their_results_together() {
    let long = "data ".repeat(80);
    let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}});
    let messages = json!([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": format!("q1 {long}")},
        {"role": "assistant", "content": null, "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c1", "content": format!("r1 {long}")},
        {"role": "tool", "tool_call_id": "c2", "content": format!("r2 {long}")},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]);
    let kept = trimmed(150, messages.clone());
    let roles: Vec<&str> = kept.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user"], "{kept:?}");
    for budget in [150, 250, 300, 400, 1000] {
        assert_pairs_intact(&trimmed(budget, messages.clone()));
    }
    // The latest message is a tool result: its call, the other result and the question that
    // led to them stay, although they alone are over the budget.
    let messages = json!([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": format!("q1 {long}")},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": null, "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c1", "content": format!("r1 {long}")},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"},
    ]);
    let kept = trimmed(50, messages.clone());
    let roles: Vec<&str> = kept.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool"],
        "{kept:?}"
    );
    assert_eq!(kept[1]["content"], "q2");
    assert_pairs_intact(&kept);
}

/// Every tool result still has its call, every call its results.
fn assert_pairs_intact(kept: &[Value]) {
    let calls: Vec<&str> = kept
        .iter()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let results: Vec<&str> = kept
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(calls, results, "{kept:?}");
}

#[test]
fn trim_counts_cjk_text_heavier_than_english() {
    let with = |text: String| {
        json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "latest"},
        ])
    };
    // 200 ASCII characters ≈ 54 tokens: fits in 120. 200 CJK characters ≈ 204: does not.
    let en = trimmed(120, with("a".repeat(200)));
    assert_eq!(en.len(), 4, "English text of 200 chars fits");
    let zh = trimmed(120, with("中".repeat(200)));
    assert_eq!(
        contents(&zh),
        ["sys", "latest"],
        "CJK text of 200 chars does not"
    );
}
