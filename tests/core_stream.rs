//! Streaming: SSE events are forwarded one by one as they arrive (in lock step with an upstream
//! that sends the next event only once the client has the last), with the SSE headers; an upstream dying mid-stream ends the
//! client stream with an error event; non-200 answers to stream requests
//! pass through as JSON; `stream` is decided on the body after rules; an upstream event past
//! `max_event_bytes` (a line that never ends) cuts the stream, and the relay reads no further.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn stream_chat(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_sse_headers(r: &StreamResp) {
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/event-stream"),
        "content-type {ct:?}; {:?}",
        r.headers
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-accel-buffering"), Some("no"), "{:?}", r.headers);
}

/// The event texts as the client splits them (no trailing blank line).
fn trimmed(events: &[String]) -> Vec<String> {
    events.iter().map(|e| e.trim_end().to_string()).collect()
}

#[test]
fn events_pass_unchanged_and_in_order_with_the_sse_headers() {
    let gap = Duration::from_millis(20);
    let mut sent: Vec<String> = (0..5)
        .map(|i| chat_chunk("m", json!({"content": format!("part{i} ")}), None))
        .collect();
    sent.push(sse_done());
    let events: Vec<(Duration, String)> = sent
        .iter()
        .enumerate()
        .map(|(i, e)| (if i < 5 { gap } else { Duration::ZERO }, e.clone()))
        .collect();
    let up = Upstream::start(move |_| Reply::sse(events.clone()));
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));

    let r = stream_events(relay.addr(), "/v1/chat/completions", &stream_chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_sse_headers(&r);
    assert_eq!(
        r.event_texts(),
        trimmed(&sent),
        "events must pass unchanged and in order"
    );
    assert!(r.clean_end, "stream must end properly after [DONE]");
}

/// Each event reaches the client before the upstream sends the next: the upstream writes event
/// `i` only once the client has received `i` events (else it cuts the stream after 15 s), so a
/// relay that buffered even one event would end this stream cut. Shown by order, not by time.
#[test]
fn each_event_reaches_the_client_before_the_upstream_sends_the_next() {
    let mut sent: Vec<String> = (0..5)
        .map(|i| chat_chunk("m", json!({"content": format!("part{i} ")}), None))
        .collect();
    sent.push(sse_done());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (events, counter) = (sent.clone(), std::sync::Arc::clone(&seen));
    let up = Upstream::start(move |_| Reply::SseLockstep {
        events: events.clone(),
        seen: std::sync::Arc::clone(&counter),
    });
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let raw = read_counting_events(
        relay.addr(),
        "/v1/chat/completions",
        &stream_chat("m"),
        &seen,
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    for (i, event) in sent.iter().enumerate() {
        assert!(raw.contains(event.trim_end()), "event {i} missing: {raw}");
    }
    assert!(raw.ends_with("0\r\n\r\n"), "the stream was cut: {raw}");
}

#[test]
fn openai_stream_through_routes_without_v1() {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let cases = [
        (
            "/chat/completions",
            stream_chat("m"),
            "/v1/chat/completions",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "p", "stream": true}),
            "/v1/completions",
        ),
        (
            "/completions",
            json!({"model": "m", "prompt": "p", "stream": true}),
            "/v1/completions",
        ),
    ];
    for (path, body, up_path) in cases {
        let r = stream_events(relay.addr(), path, &body);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_sse_headers(&r);
        assert_eq!(
            r.event_texts().last().copied(),
            Some("data: [DONE]"),
            "{path}: {:?}",
            r.events
        );
        let mut text = String::new();
        for ev in r.event_texts() {
            let Some(data) = ev.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            let c = &v["choices"][0];
            text.push_str(
                c["delta"]["content"]
                    .as_str()
                    .or(c["text"].as_str())
                    .unwrap_or(""),
            );
        }
        assert_eq!(text, FIXTURE_TEXT, "{path}: joined deltas");
        assert_eq!(up.requests().last().unwrap().path, up_path);
    }
}

#[test]
fn upstream_dying_mid_stream_ends_with_error_event() {
    let sent = vec![
        chat_chunk("m", json!({"role": "assistant", "content": ""}), None),
        chat_chunk("m", json!({"content": "partial"}), None),
    ];
    let events: Vec<_> = sent
        .iter()
        .map(|e| (Duration::from_millis(50), e.clone()))
        .collect();
    let up = Upstream::start(move |_| Reply::sse_then_die(events.clone()));
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"idle_timeout_ms": 30000}),
    ));

    let r = stream_events_timeout(
        relay.addr(),
        "/v1/chat/completions",
        &stream_chat("m"),
        Duration::from_secs(40),
    );
    assert_eq!(r.status, 200, "the stream had started: {}", r.body);
    let texts = r.event_texts();
    assert_eq!(
        texts.len(),
        3,
        "expected 2 events + one error event, got {texts:?}"
    );
    assert_eq!(
        texts[..2].to_vec(),
        trimmed(&sent),
        "events sent before the failure"
    );
    let last = *texts.last().unwrap();
    assert!(
        !last.contains("[DONE]"),
        "must not pretend success: {texts:?}"
    );
    let data = last
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("not a data event: {last:?}"));
    let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {v}"));
    assert!(
        msg.to_lowercase().contains("upstream") || msg.contains(&up.base_url()),
        "error message should mention the upstream: {msg}"
    );
    assert!(
        r.started.elapsed() < Duration::from_secs(15),
        "the stream ended with the upstream's death, not by the 30 s idle timeout"
    );
}

#[test]
fn stream_request_answered_with_429_json_passes_through() {
    let body = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#;
    let up =
        Upstream::start(move |_| Reply::raw(429, &[("Content-Type", "application/json")], body));
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = stream_events(relay.addr(), "/v1/chat/completions", &stream_chat("m"));
    assert_eq!(r.status, 429, "body: {}", r.body);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    assert_eq!(r.body, body);
    assert!(r.clean_end);
}

#[test]
fn rule_setting_stream_true_makes_response_stream() {
    let up = Upstream::openai();
    let rules = json!({"model_rules": [{"match_model": "always-stream", "set": {"stream": true}}]});
    let relay = Relay::start(&config_json(&up.base_url(), rules));
    let body = json!({"model": "always-stream", "messages": [{"role": "user", "content": "hi"}]});
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_sse_headers(&r);
    assert_eq!(up.only_request().json()["stream"], true);
    assert_eq!(r.event_texts().last().copied(), Some("data: [DONE]"));
}

#[test]
fn rule_unsetting_stream_gives_json_response() {
    let up = Upstream::openai();
    let rules = json!({"model_rules": [{"match_model": "never-stream", "unset": ["stream"]}]});
    let relay = Relay::start(&config_json(&up.base_url(), rules));
    let r = stream_events(
        relay.addr(),
        "/v1/chat/completions",
        &stream_chat("never-stream"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let v: Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(v["choices"][0]["message"]["content"], FIXTURE_TEXT);
    assert!(up.only_request().json().get("stream").is_none());
}

/// An upstream that sends one event and then a `data:` line without end (up to 128 MiB, see
/// `Reply::SseEndless`), to a relay allowing 256 KiB per event: the client gets the first
/// event, then the error event of its API and a clean end of the response; the relay closes
/// the upstream connection (the fixture's writes fail) instead of reading on, its peak memory
/// stays far below what an unbounded read would take, the upstream's failure is counted, and
/// nothing is cached. A translated stream (client on `/v1/messages`) ends with Anthropic's
/// error event.
#[test]
fn an_endless_upstream_event_cuts_the_stream_and_is_read_no_further() {
    let (report, reports) = mpsc::channel();
    let up = Upstream::start(move |req| {
        if req.json()["messages"][0]["content"] == "warm" {
            return openai_reply(req);
        }
        let first = chat_chunk("m", json!({"role": "assistant", "content": "first"}), None);
        Reply::sse_endless(vec![first], &report)
    });
    let dir = TempDir::new();
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"max_event_bytes": 256 * 1024, "idle_timeout_ms": 30000, "fail_threshold": 100}),
    ));
    let ask = |text: &str| json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": text}]});
    let warm = stream_events(relay.addr(), "/v1/chat/completions", &ask("warm"));
    assert!(
        warm.clean_end && warm.body.contains("[DONE]"),
        "{}",
        warm.body
    );
    let baseline_kb = relay.memory_kb("VmHWM");
    let cut_by_relay = || {
        let (sent, cut) = reports
            .recv_timeout(Duration::from_secs(120))
            .expect("the endless fixture reports how it ended");
        assert!(
            cut,
            "the relay kept reading the endless line: {sent} bytes went out"
        );
        sent
    };

    let mut sent = Vec::new();
    for round in 0..2 {
        let r = stream_events_timeout(
            relay.addr(),
            "/v1/chat/completions",
            &ask("endless"),
            Duration::from_secs(60),
        );
        sent.push(cut_by_relay());
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("x-cache"),
            Some("MISS"),
            "round {round}: not cached"
        );
        assert!(r.clean_end, "the response ends properly: {}", r.body);
        let texts = r.event_texts();
        assert_eq!(texts.len(), 2, "the first event and the error: {texts:?}");
        assert!(texts[0].contains("\"first\""), "{texts:?}");
        let error: Value = serde_json::from_str(texts[1].strip_prefix("data: ").unwrap())
            .unwrap_or_else(|e| panic!("{e}: {texts:?}"));
        assert_eq!(
            error["error"]["code"], "upstream_stream_interrupted",
            "{error}"
        );
        let msg = error["error"]["message"].as_str().unwrap();
        assert!(msg.contains("max_event_bytes (262144 bytes)"), "{msg}");
        assert!(msg.contains(&up.base_url()), "names the upstream: {msg}");
    }

    let r = stream_events_timeout(
        relay.addr(),
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "endless"}]}),
        Duration::from_secs(60),
    );
    sent.push(cut_by_relay());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.clean_end, "{}", r.body);
    let texts = r.event_texts();
    assert!(
        texts[0].starts_with("event: message_start"),
        "translated: {texts:?}"
    );
    let last = texts.last().unwrap();
    let data = last
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{texts:?}"));
    let error: Value = serde_json::from_str(data).unwrap();
    assert!(last.starts_with("event: error\n"), "{texts:?}");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "api_error", "{error}");
    let msg = error["error"]["message"].as_str().unwrap();
    assert!(msg.contains("max_event_bytes"), "{msg}");

    let peak_kb = relay.memory_kb("VmHWM");
    assert!(
        peak_kb < baseline_kb + 24 * 1024,
        "peak RSS grew from {baseline_kb} kB to {peak_kb} kB while the fixture sent {sent:?} \
         bytes (an unbounded read takes up to 128 MiB per stream)"
    );
    assert_eq!(
        up.requests().len(),
        4,
        "every endless request went upstream"
    );
    let metrics = get(&relay.url("/metrics")).body;
    assert!(
        metrics.contains("llm_relay_upstream_errors_total{endpoint=\"default\"} 3"),
        "each cut stream counts against the upstream:\n{metrics}"
    );
}

/// An HTTP/1.0 client asking for `Connection: keep-alive` reads a stream until the connection
/// closes (HTTP/1.0 has no chunked framing): the relay closes it right after the last event, of
/// a relayed stream, a cached one and a pass-through event stream alike, rather than after
/// `client_timeout_ms` waiting for a next request.
#[test]
fn an_http10_keep_alive_stream_ends_with_the_connection_closed_after_its_last_event() {
    let up = Upstream::start(|req| {
        if req.path == "/v1/events" {
            return Reply::sse(vec![
                (Duration::ZERO, "data: one\n\n".to_string()),
                (Duration::ZERO, "data: two\n\n".to_string()),
            ]);
        }
        openai_reply(req)
    });
    let dir = TempDir::new();
    // a client timeout far past the hang guard below: waiting for it fails the test
    let extra = json!({"client_timeout_ms": 600_000});
    let relay = Relay::start(&cache_config(&up.base_url(), dir.path(), json!({}), extra));
    let body = serde_json::to_string(&stream_chat("m")).unwrap();
    let chat = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let events = "GET /v1/events HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_string();
    for (what, request, last) in [
        ("relayed", &chat, "data: [DONE]"),
        ("cached", &chat, "data: [DONE]"),
        ("pass-through", &events, "data: two"),
    ] {
        let r = raw_exchange(
            relay.addr(),
            &[request.as_bytes()],
            Duration::ZERO,
            Duration::from_secs(120),
        );
        assert!(
            r.closed,
            "{what}: the connection stays open after the stream: {r:?}"
        );
        assert_eq!(r.status, Some(200), "{what}: {}", r.text);
        assert!(
            r.text.trim_end().ends_with(last),
            "{what}: the stream ends with its last event: {}",
            r.text
        );
        assert!(r.text.starts_with("HTTP/1.0 200"), "{what}: {}", r.text);
        let cache = if what == "cached" { "HIT" } else { "MISS" };
        if what != "pass-through" {
            assert!(
                r.text
                    .to_ascii_lowercase()
                    .contains(&format!("x-cache: {}", cache.to_ascii_lowercase())),
                "{what}: {}",
                r.text
            );
        }
    }
}
