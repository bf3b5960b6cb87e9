//! `POST /v1/responses` (issue 12): relayed plain and streamed with model rules, typed events
//! relayed one by one, complete only at `response.completed`; cached plain and streamed from
//! one entry in both directions; cut, failed and background responses never cached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// A relay with the cache on in front of `up`, whose endpoint speaks the Responses API.
fn relay_for(up: &Upstream, dir: &TempDir, extra: Value) -> Relay {
    let mut cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
        "model_rules": [{"match_model": "relay-alias", "set": {"model": "fixture-model-a"}}],
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Relay::start(&cfg.to_string())
}

fn ask(text: &str) -> Value {
    json!({"model": "relay-alias", "input": text})
}

/// The `data:` JSON of each event, checking every event names its type in `event:` too.
fn typed_events(s: &StreamResp) -> Vec<Value> {
    s.event_texts()
        .iter()
        .map(|e| {
            let mut lines = e.lines();
            let kind = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event line: {e}"));
            let data: Value =
                serde_json::from_str(lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            assert_eq!(data["type"], kind, "{e}");
            data
        })
        .collect()
}

/// What the SDKs' stream helpers do: the final response is the one `response.completed` carries,
/// and the text deltas add up to its text.
fn accumulate(events: &[Value]) -> Value {
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{events:#?}");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let final_text = done["response"]["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert_eq!(text, final_text);
    done["response"].clone()
}

#[test]
fn plain_and_streamed_responses_are_relayed_with_rules_applied() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));
    let r = post_json(&relay.url("/v1/responses"), &ask("plain"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        responses_answer(&json!({"model": "fixture-model-a", "input": "plain"}))
    );
    assert_eq!(up.only_request().json()["model"], "fixture-model-a");

    let mut body = ask("streamed");
    body["stream"] = json!(true);
    let s = stream_events(relay.addr(), "/v1/responses", &body);
    assert_eq!(s.status, 200);
    assert!(s.clean_end);
    let events = typed_events(&s);
    let upstream_events =
        responses_events(&json!({"model": "fixture-model-a", "input": "streamed", "stream": true}));
    assert_eq!(
        s.events.len(),
        upstream_events.len(),
        "one client event per upstream event"
    );
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(
        accumulate(&events)["output"][0]["content"][0]["text"],
        RESPONSES_TEXT
    );
}

#[test]
fn one_entry_answers_both_modes_in_both_directions() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));
    // plain first: a streamed repeat is built from the stored answer
    let plain = post_json(&relay.url("/v1/responses"), &ask("one"));
    assert_eq!(plain.header("x-cache"), Some("MISS"));
    let mut streamed = ask("one");
    streamed["stream"] = json!(true);
    let s = stream_events(relay.addr(), "/v1/responses", &streamed);
    assert_eq!(s.header("x-cache"), Some("HIT"));
    assert_eq!(accumulate(&typed_events(&s)), plain.json());
    // streamed first: a plain repeat is the response of response.completed
    let mut tool = json!({"model": "relay-alias", "input": "weather?", "stream": true,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]});
    let s = stream_events(relay.addr(), "/v1/responses", &tool);
    assert_eq!(s.header("x-cache"), Some("MISS"));
    let from_stream = accumulate(&typed_events(&s));
    assert_eq!(from_stream["output"][0]["type"], "function_call");
    tool["stream"] = json!(false);
    let hit = post_json(&relay.url("/v1/responses"), &tool);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.json(), from_stream);
    assert_eq!(up.requests().len(), 2, "two misses, two hits");
}

#[test]
fn cut_failed_and_background_responses_are_never_cached() {
    let full = responses_events(&json!({"model": "m", "input": "x"}));
    let failed = {
        let mut e = full[..3].to_vec();
        e.push(typed(
            &json!({"type": "response.failed", "sequence_number": 3,
            "response": {"id": "resp_f", "object": "response", "status": "failed",
                         "error": {"code": "server_error", "message": "boom"}}}),
        ));
        e
    };
    let tick = Duration::from_millis(5);
    let up = Upstream::start(move |req| {
        let body = req.json();
        let events = |list: &[String]| list.iter().map(|e| (tick, e.clone())).collect();
        match body["input"].as_str().unwrap_or("") {
            "cut" => Reply::sse_then_die(events(&full[..4])),
            "failed" => Reply::sse(events(&failed)),
            _ => Reply::json(200, responses_answer(&body)),
        }
    });
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));
    for input in ["cut", "failed"] {
        for _ in 0..2 {
            let s = stream_events(
                relay.addr(),
                "/v1/responses",
                &json!({"model": "m", "input": input, "stream": true}),
            );
            assert_eq!(s.header("x-cache"), Some("MISS"), "{input}");
            let events = typed_events(&s);
            let last = events.last().unwrap();
            match input {
                "cut" => {
                    assert_eq!(
                        last["type"], "error",
                        "a cut stream ends with an error event"
                    );
                    assert_eq!(last["code"], "upstream_stream_interrupted");
                }
                _ => assert_eq!(last["type"], "response.failed"),
            }
        }
    }
    for _ in 0..2 {
        let r = post_json(
            &relay.url("/v1/responses"),
            &json!({"model": "m", "input": "bg", "background": true}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-cache"),
            None,
            "background requests bypass the cache"
        );
    }
    assert_eq!(
        up.requests().len(),
        6,
        "nothing was answered from the cache"
    );
    assert!(
        files_ending(dir.path(), ".txt").is_empty(),
        "no entry stored"
    );
}

#[test]
fn each_typed_event_reaches_the_client_before_the_upstream_sends_the_next() {
    // Responses and Messages alike: the fixture sends the first event, then waits until the
    // client has received it; had the relay held it back, the fixture would cut the stream
    // after 15 s and the client would see an error event.
    let responses = responses_events(&json!({"model": "m", "input": "x"}));
    let messages = anthropic_events(&json!({"model": "m"}));
    let go = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&go);
    let up = Upstream::start(move |req| {
        let list = if req.path.starts_with("/v1/messages") {
            &messages
        } else {
            &responses
        };
        Reply::SseGated {
            first: list[..1].to_vec(),
            gate: Arc::clone(&gate),
            rest: list[1..].to_vec(),
        }
    });
    let cfg = json!({"listen": "127.0.0.1:0", "upstreams": [
        {"url": up.base_url(), "api": "responses"},
        {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": "k"}]});
    let relay = Relay::start(&cfg.to_string());
    let cases = [
        (
            "/v1/responses",
            json!({"model": "m", "input": "x", "stream": true}),
            "event: response.created",
            "event: response.completed",
        ),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 5, "stream": true, "messages": []}),
            "event: message_start",
            "event: message_stop",
        ),
    ];
    for (path, body, first, last) in cases {
        go.store(false, Ordering::SeqCst);
        let raw = read_until_then(relay.addr(), path, &body, first, &go);
        assert!(raw.contains(last), "{raw}");
        assert!(!raw.contains("event: error"), "{raw}");
    }
}
