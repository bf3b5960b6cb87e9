//! `POST /v1/messages` (issue 12): an `anthropic` endpoint gets its own key as `x-api-key` and
//! an `anthropic-version`; the client's version and beta headers pass, its key never does;
//! relay keys work as `x-api-key` or `Authorization: Bearer`; errors take Anthropic's shape;
//! streams are relayed event by event, complete only at `message_stop`, cached in both modes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn relay_for(up: &Upstream, dir: &TempDir, extra: Value) -> Relay {
    let mut cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "openai", "url": up.base_url(), "api": "responses"},
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Relay::start(&cfg.to_string())
}

fn ask(text: &str) -> Value {
    json!({"model": "claude-fixture", "max_tokens": 64,
           "messages": [{"role": "user", "content": text}]})
}

fn data_of(s: &StreamResp) -> Vec<Value> {
    s.event_texts()
        .iter()
        .map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

/// Accumulates a Messages stream the way the `anthropic` SDK does.
fn accumulate(events: &[Value]) -> Value {
    let mut msg = events[0]["message"].clone();
    assert_eq!(
        events.last().unwrap()["type"],
        "message_stop",
        "{events:#?}"
    );
    let mut json_parts: Vec<String> = Vec::new();
    for e in events {
        let i = e["index"].as_u64().unwrap_or(0) as usize;
        match e["type"].as_str().unwrap() {
            "content_block_start" => {
                msg["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(e["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => match e["delta"]["type"].as_str().unwrap() {
                "text_delta" => {
                    let t = msg["content"][i]["text"].as_str().unwrap().to_string();
                    msg["content"][i]["text"] = json!(t + e["delta"]["text"].as_str().unwrap());
                }
                "input_json_delta" => {
                    json_parts[i].push_str(e["delta"]["partial_json"].as_str().unwrap())
                }
                other => panic!("unexpected delta {other}"),
            },
            "content_block_stop" if !json_parts[i].is_empty() => {
                msg["content"][i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
            }
            "message_delta" => {
                msg["stop_reason"] = e["delta"]["stop_reason"].clone();
                msg["usage"]["output_tokens"] = e["usage"]["output_tokens"].clone();
            }
            _ => {}
        }
    }
    msg
}

#[test]
fn headers_keys_and_errors_speak_anthropic() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({"auth": {"keys": ["relay-client-key"]}}));
    let url = relay.url("/v1/messages");
    let r = post_json_with(&url, &ask("a"), &[("x-api-key", "relay-client-key")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), anthropic_message(&ask("a")));
    let seen = up.only_request();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(
        seen.header("x-api-key"),
        Some(ANTHROPIC_KEY),
        "the endpoint's key, not the client's"
    );
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(
        seen.header("anthropic-version"),
        Some("2023-06-01"),
        "the default version"
    );

    let headers = [
        ("authorization", "Bearer relay-client-key"),
        ("anthropic-version", "2023-01-01"),
        ("anthropic-beta", "tools-2024-04-04"),
    ];
    let r = post_json_with(&url, &ask("b"), &headers);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.header("anthropic-version"), Some("2023-01-01"));
    assert_eq!(seen.header("anthropic-beta"), Some("tools-2024-04-04"));
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert!(
        !format!("{seen:?}").contains("relay-client-key"),
        "client key went upstream: {seen:?}"
    );

    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], u16, &'a str);
    let cases: &[Case] = &[
        (
            &[],
            br#"{"model":"m","max_tokens":1,"messages":[]}"#,
            401,
            "authentication_error",
        ),
        (
            &[("x-api-key", "wrong")],
            b"{}",
            401,
            "authentication_error",
        ),
        (
            &[("x-api-key", "relay-client-key")],
            b"{not json",
            400,
            "invalid_request_error",
        ),
        (
            &[("x-api-key", "relay-client-key")],
            br#"{"max_tokens":1}"#,
            400,
            "invalid_request_error",
        ),
    ];
    for (headers, body, status, kind) in cases {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        let r = post_raw(&url, body, &h);
        assert_eq!(r.status, *status, "{}", r.body);
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], *kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    // the upstream's own errors pass through as it sent them
    let r = post_json_with(
        &url,
        &json!({"model": "m", "messages": []}),
        &[("x-api-key", "relay-client-key")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "max_tokens: Field required");
}

#[test]
fn streams_are_relayed_and_cached_in_both_modes() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let mut body = ask("weather?");
    body["tools"] = tools;
    body["stream"] = json!(true);
    let s = stream_events(relay.addr(), "/v1/messages", &body);
    assert_eq!((s.status, s.header("x-cache")), (200, Some("MISS")));
    assert_eq!(
        s.events.len(),
        anthropic_events(&body).len(),
        "one client event per upstream event"
    );
    assert!(s.event_texts().iter().all(|e| e.starts_with("event: ")));
    let streamed = accumulate(&data_of(&s));
    body["stream"] = json!(false);
    let plain_answer = anthropic_message(&body);
    assert_eq!(streamed, plain_answer);
    let hit = post_json(&relay.url("/v1/messages"), &body);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(
        hit.json(),
        plain_answer,
        "a plain hit from a recorded stream"
    );

    let plain = post_json(&relay.url("/v1/messages"), &ask("plain first"));
    assert_eq!(plain.header("x-cache"), Some("MISS"));
    let mut again = ask("plain first");
    again["stream"] = json!(true);
    let s = stream_events(relay.addr(), "/v1/messages", &again);
    assert_eq!(s.header("x-cache"), Some("HIT"));
    assert_eq!(
        accumulate(&data_of(&s)),
        plain.json(),
        "a streamed hit from a plain answer"
    );
    // a different anthropic-beta is a different request
    let r = post_json_with(
        &relay.url("/v1/messages"),
        &ask("plain first"),
        &[("anthropic-beta", "x")],
    );
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn a_cut_or_failed_stream_ends_with_an_anthropic_error_and_is_not_cached() {
    let tick = Duration::from_millis(5);
    let up = Upstream::start(move |req| {
        let body = req.json();
        let all = anthropic_events(&body);
        let events = |list: &[String]| list.iter().map(|e| (tick, e.clone())).collect();
        if body["messages"][0]["content"] == "cut" {
            Reply::sse_then_die(events(&all[..4]))
        } else {
            let mut list = all[..4].to_vec();
            list.push(typed(&json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
            Reply::sse(events(&list))
        }
    });
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));
    for (text, kind) in [("cut", "api_error"), ("overloaded", "overloaded_error")] {
        for _ in 0..2 {
            let mut body = ask(text);
            body["stream"] = json!(true);
            let s = stream_events(relay.addr(), "/v1/messages", &body);
            assert_eq!(s.header("x-cache"), Some("MISS"));
            let last = data_of(&s).pop().unwrap();
            assert_eq!(last["type"], "error", "{last}");
            assert_eq!(last["error"]["type"], kind, "{last}");
        }
    }
    assert_eq!(up.requests().len(), 4);
}
