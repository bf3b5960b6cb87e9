//! Translation exact enough for agents, checked with the official Python SDKs
//! (`tests/e2e/translate_exact.py`) through the relay to the chat-only fixture
//! (`tests/common/chat_model.rs`): parallel tool calls streamed interleaved, images in tool
//! results, matched stop sequences, Response objects that repeat the request.
//! Needs `bash scripts/test-deps.sh`; fails (not skips) without it.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// Runs the script's `checks` against a relay in front of `up`; panics with its output on a
/// failure.
fn run_checks(relay: &Relay, checks: &[&str]) {
    require_python_module("anthropic");
    let mut args = vec![relay.url("")];
    args.extend(checks.iter().map(|c| c.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_e2e_script("translate_exact.py", &args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "translate_exact.py {checks:?} failed: {}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for c in checks {
        assert!(stdout.contains(&format!("check {c} passed")), "{stdout}");
    }
}

#[test]
fn interleaved_parallel_tool_calls_stream_whole_and_equal_the_plain_answer() {
    let up = Upstream::chat_model();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    run_checks(&relay, &["parallel"]);
    // one plain and one streamed request per API, all chat
    let requests = up.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.path == "/v1/chat/completions"));
}

#[test]
fn images_in_tool_results_reach_the_chat_model_after_the_tool_messages() {
    let up = Upstream::chat_model();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    run_checks(&relay, &["images"]);
    let requests = up.requests();
    assert_eq!(requests.len(), 3);
    let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
    let png = |m: &serde_json::Value| {
        m["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // Messages: both tool messages, then one user message with the image
    let sent = requests[1].json();
    let messages = sent["messages"].as_array().expect("messages");
    let n = messages.len();
    assert_eq!(
        (&messages[n - 3]["role"], &messages[n - 3]["content"]),
        (&json!("tool"), &json!("Temperature: 12 C\n\nWind: 3 m/s")),
        "{sent}"
    );
    assert_eq!(messages[n - 2]["role"], "tool", "{sent}");
    let user = &messages[n - 1];
    assert_eq!(user["role"], "user");
    assert_eq!(
        user["content"][0]["text"],
        "Image(s) from the result of tool call call_fixture_1:"
    );
    assert!(
        png(user).starts_with("data:image/png;base64,iVBOR"),
        "{user}"
    );
    assert_eq!(user["content"][1], image(&png(user)));
    // Responses: the tool message, then the user message with the image
    let sent = requests[2].json();
    let messages = sent["messages"].as_array().expect("messages");
    let n = messages.len();
    assert_eq!(messages[n - 2]["content"], "chart.png", "{sent}");
    assert_eq!(messages[n - 1]["role"], "user", "{sent}");
    assert!(png(&messages[n - 1]).starts_with("data:image/png;base64,iVBOR"));
}

#[test]
fn a_stop_sequence_the_upstream_names_is_reported_plain_and_streamed() {
    let up = Upstream::chat_model();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    run_checks(&relay, &["stop"]);
    assert_eq!(
        up.requests()[0].json()["stop"],
        json!(["nothing", "fixture"])
    );
}

#[test]
fn a_translated_response_repeats_the_request_plain_streamed_and_from_the_cache() {
    let up = Upstream::chat_model();
    let (_dir, relay) = cached_relay(&up);
    run_checks(&relay, &["echo"]);
    // the first request, the streamed one and the bare one; the second plain one and the bare
    // one with `store: false` (dropped upstream: the same chat request) were hits
    assert_eq!(up.requests().len(), 3);
}

/// A Messages request asking for thinking, after a turn whose thinking came back.
fn thinking_request(model: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 50,
           "thinking": {"type": "enabled", "budget_tokens": 10000},
           "messages": [
               {"role": "user", "content": "hi"},
               {"role": "assistant", "content": [
                   {"type": "thinking", "thinking": "they greet me", "signature": "sig"},
                   {"type": "text", "text": "Hello"}]},
               {"role": "user", "content": "again"}]})
}

#[test]
fn thinking_is_sent_in_each_endpoints_terms_at_send_time() {
    let (effort, qwen, deep) = (
        Upstream::chat_model(),
        Upstream::chat_model(),
        Upstream::chat_model(),
    );
    let broken = Upstream::start(|_| {
        Reply::json(
            500,
            json!({"error": {"message": "down", "type": "server_error"}}),
        )
    });
    let standby = Upstream::chat_model();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "plain", "url": effort.base_url(), "models": ["m-effort"]},
            {"name": "qwen", "url": qwen.base_url(), "models": ["m-qwen"], "thinking": "enable_thinking"},
            {"name": "deep", "url": deep.base_url(), "models": ["m-deep"], "thinking": "drop",
             "reasoning_content": true},
            {"name": "broken", "url": broken.base_url(), "models": ["m-fail"],
             "thinking": "enable_thinking"},
            {"name": "standby", "url": standby.base_url(), "models": ["m-fail"], "weight": 0},
        ]),
        json!({}),
    ));
    for model in ["m-effort", "m-qwen", "m-deep", "m-fail"] {
        let r = post_json(&relay.url("/v1/messages"), &thinking_request(model));
        assert_eq!(r.status, 200, "{model}: {}", r.body);
        assert_eq!(r.json()["type"], "message");
    }
    let sent = |up: &Upstream| up.only_request().json();
    let thinking = |b: &serde_json::Value| {
        (
            b.get("reasoning_effort").cloned(),
            b.get("enable_thinking").cloned(),
            b["messages"][1].get("reasoning_content").cloned(),
        )
    };
    // an endpoint with only a url: reasoning_effort, earlier reasoning left out
    assert_eq!(
        thinking(&sent(&effort)),
        (Some(json!("medium")), None, None)
    );
    assert_eq!(
        thinking(&sent(&qwen)),
        (None, Some(json!(true)), None),
        "enable_thinking"
    );
    // the Messages budget: DashScope's `thinking_budget`, only where `enable_thinking` is sent
    assert_eq!(sent(&qwen)["thinking_budget"], 10000);
    for up in [&effort, &deep, &standby] {
        let body = sent(up);
        assert_eq!(body.get("thinking_budget"), None, "{body}");
        assert_eq!(body.get("relay_thinking_budget"), None, "{body}");
    }
    assert_eq!(
        thinking(&sent(&deep)),
        (None, None, Some(json!("they greet me"))),
        "drop, with reasoning_content"
    );
    // failover from an enable_thinking endpoint to a reasoning_effort one sends the latter's terms
    assert_eq!(thinking(&broken.only_request().json()).1, Some(json!(true)));
    assert_eq!(
        thinking(&sent(&standby)),
        (Some(json!("medium")), None, None)
    );
}

#[test]
fn count_tokens_is_estimated_for_a_chat_model_and_passed_on_for_an_anthropic_one() {
    let chat = Upstream::chat_model();
    let anthropic = Upstream::apis();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "anthropic", "url": anthropic.base_url(), "api": "anthropic",
             "api_key": ANTHROPIC_KEY, "models": ["claude-*"]},
            {"name": "chat", "url": chat.base_url(), "models": ["deepseek-*"]},
        ]),
        json!({"model_rules": [{"match_model": "sonnet-on-chat", "set": {"model": "deepseek-chat"}}]}),
    ));
    let url = relay.url("/v1/messages/count_tokens");
    let count = |model: &str, text: &str| {
        post_json(
            &url,
            &json!({"model": model, "system": "Be brief",
                    "tools": [{"name": "get_time", "input_schema": {"type": "object"}}],
                    "messages": [{"role": "user", "content": text}]}),
        )
    };
    // a chat model (also through a model rule): the estimate, marked as one, never upstream
    let short = count("deepseek-chat", "hi");
    assert_eq!(short.status, 200, "{}", short.body);
    assert_eq!(short.header("x-relay-token-count"), Some("estimate"));
    let long = count("sonnet-on-chat", &"word ".repeat(400));
    assert_eq!(long.status, 200, "{}", long.body);
    let (s, l) = (
        short.json()["input_tokens"].as_u64().unwrap_or(0),
        long.json()["input_tokens"].as_u64().unwrap_or(0),
    );
    // 2 000 ASCII characters instead of 2 are ~500 tokens more by the estimate (¼ token each)
    assert!(s > 0 && (490..=510).contains(&(l - s)), "{s} {l}");
    assert!(chat.requests().is_empty());
    // an Anthropic model: the endpoint counts, with the body as sent
    let counted = count("claude-x", "hi");
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(counted.json(), json!({"input_tokens": 12}));
    assert_eq!(counted.header("x-relay-token-count"), None);
    let seen = anthropic.only_request();
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_eq!(seen.json()["messages"][0]["content"], "hi");
    // a model nobody serves: a 404 naming it, in Anthropic's shape
    let unknown = count("mystery-model", "hi");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.json()["type"], "error");
    assert!(unknown.body.contains("mystery-model"), "{}", unknown.body);
}

/// The event names of a translated stream.
fn event_names(r: &StreamResp) -> Vec<String> {
    r.event_texts()
        .iter()
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("event: ")))
        .map(str::to_string)
        .collect()
}

fn stream_bodies() -> [(&'static str, serde_json::Value); 2] {
    [
        (
            "/v1/messages",
            json!({"model": "claude-x", "max_tokens": 50, "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-x", "stream": true, "input": "hi"}),
        ),
    ]
}

#[test]
fn a_translated_stream_is_sent_again_without_stream_options_when_refused() {
    let up = Upstream::start(|req| {
        if req.json().get("stream_options").is_some() {
            return Reply::json(
                400,
                json!({"error": {"message": "Unrecognized request argument supplied: stream_options",
                                 "type": "invalid_request_error"}}),
            );
        }
        chat_model::chat_model_reply(req)
    });
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    for (path, body) in stream_bodies() {
        let r = stream_events(relay.addr(), path, &body);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let names = event_names(&r);
        let last = names.last().map(String::as_str);
        assert!(
            matches!(last, Some("message_stop" | "response.completed")),
            "{path}: {names:?}"
        );
        assert!(r.body.contains("Hello"), "{path}: {}", r.body);
    }
    let sent: Vec<bool> = up
        .requests()
        .iter()
        .map(|r| r.json().get("stream_options").is_some())
        .collect();
    assert_eq!(sent, [true, false, true, false]);
}

#[test]
fn an_upstream_stream_of_only_done_ends_with_an_error_event_and_is_not_kept() {
    let up = Upstream::start(|_| Reply::sse(vec![(Duration::ZERO, sse_done())]));
    let (_dir, relay) = cached_relay(&up);
    for (path, body) in stream_bodies() {
        for _ in 0..2 {
            let r = stream_events(relay.addr(), path, &body);
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            assert_eq!(event_names(&r), ["error"], "{path}: {}", r.body);
            assert!(r.body.contains("without any chunk"), "{}", r.body);
        }
    }
    assert_eq!(up.requests().len(), 4, "nothing was kept");
}

#[test]
fn responses_reasoning_goes_back_to_the_endpoint_that_wants_it() {
    let (qwen, deep) = (Upstream::chat_model(), Upstream::chat_model());
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "qwen", "url": qwen.base_url(), "models": ["m-qwen"], "provider": "dashscope",
             "api_key": "k"},
            {"name": "deep", "url": deep.base_url(), "models": ["m-deep"], "provider": "deepseek",
             "api_key": "k"},
        ]),
        json!({}),
    ));
    for model in ["m-qwen", "m-deep"] {
        let body = json!({"model": model, "reasoning": {"effort": "high"}, "input": [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "content": [{"type": "reasoning_text", "text": "a tool knows"}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]});
        let r = post_json(&relay.url("/v1/responses"), &body);
        assert_eq!(r.status, 200, "{model}: {}", r.body);
        assert_eq!(
            r.json()["output"][0]["content"][0]["text"],
            "TOOL SAID: sunny"
        );
    }
    // the presets' defaults: DashScope takes enable_thinking, DeepSeek the earlier reasoning
    let q = qwen.only_request().json();
    assert_eq!(
        (q.get("reasoning_effort"), &q["enable_thinking"]),
        (None, &json!(true))
    );
    assert_eq!(q["messages"][1].get("reasoning_content"), None, "{q}");
    let d = deep.only_request().json();
    assert_eq!(d.get("reasoning_effort"), None);
    assert_eq!(d["messages"][1]["reasoning_content"], "a tool knows", "{d}");
    assert_eq!(d["messages"][1]["tool_calls"][0]["id"], "call_1");
}
