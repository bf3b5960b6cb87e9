//! Upstreams (issue #4): failover past refused ports, 5xx/429 and timeouts with no client
//! errors; no retry once a stream has begun; passive health (cooldown and recovery);
//! `Retry-After`; the all-failed error; `max_concurrent_requests`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// How long a request whose timeout (300 ms here) should end it may take on a loaded machine
/// before the test calls it a hang; the waits it must not sit out are 20 s or longer.
const HANG_GUARD: Duration = Duration::from_secs(10);

fn error_reply(status: u16) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": format!("fixture {status}"), "type": "server_error"}}),
    )
}

#[test]
fn failover_past_refused_port_500_and_429_gives_no_client_errors() {
    let five = Upstream::start(|_| error_reply(500));
    let rate = Upstream::start(|_| error_reply(429));
    let ok = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "refused", "url": closed_port_url()},
            {"name": "five", "url": five.base_url()},
            {"name": "rate", "url": rate.base_url()},
            {"name": "ok", "url": ok.base_url()},
        ]),
        // Every request may need all four endpoints; no cooldown so each is really tried.
        json!({"retries": 3, "fail_threshold": 1000}),
    ));
    for i in 0..20 {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.json()["object"], "chat.completion");
    }
    assert_eq!(ok.requests().len(), 20);
    assert!(!five.requests().is_empty() && !rate.requests().is_empty());
}

#[test]
fn other_4xx_passes_through_without_failover() {
    let bad = Upstream::start(|_| error_reply(400));
    let spare = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "bad", "url": bad.base_url(), "weight": 1},
            {"name": "spare", "url": spare.base_url(), "weight": 0},
        ]),
        json!({}),
    ));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 400, "body: {}", r.body);
    assert_eq!(r.json()["error"]["message"], "fixture 400");
    assert!(spare.requests().is_empty(), "a 400 is the client's problem");
}

#[test]
fn all_endpoints_failing_names_each_and_why() {
    let five = Upstream::start(|_| error_reply(503));
    let refused = closed_port_url();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "busy-one", "url": five.base_url()},
            {"name": "dead-one", "url": refused},
        ]),
        json!({}),
    ));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert!(r.status == 502 || r.status == 503, "status {}", r.status);
    let msg = r.assert_error(r.status, "all_upstreams_failed");
    for want in ["busy-one", "HTTP 503", "dead-one", &refused] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
}

#[test]
fn retries_bounds_the_number_of_endpoints_tried() {
    let ups: Vec<Upstream> = (0..4)
        .map(|_| Upstream::start(|_| error_reply(502)))
        .collect();
    let list: Vec<Value> = ups
        .iter()
        .enumerate()
        .map(|(i, u)| json!({"name": format!("e{i}"), "url": u.base_url()}))
        .collect();
    let relay = Relay::start(&upstreams_config(json!(list), json!({"retries": 1})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    r.assert_error(502, "all_upstreams_failed");
    let total: usize = ups.iter().map(|u| u.requests().len()).sum();
    assert_eq!(total, 2, "retries 1 = two endpoints tried");
}

#[test]
fn first_byte_timeout_fails_over_to_next_endpoint() {
    // Silent for 60 s: only the 300 ms first-byte timeout can bring the answer from `fast`.
    let slow = Upstream::start(|req| Reply::delay(Duration::from_secs(60), openai_reply(req)));
    let fast = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "slow", "url": slow.base_url(), "weight": 1},
            {"name": "fast", "url": fast.base_url(), "weight": 0},
        ]),
        json!({"first_byte_timeout_ms": 300}),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(t0.elapsed() < HANG_GUARD, "{:?}", t0.elapsed());
    assert_eq!(slow.requests().len(), 1);
    assert_eq!(fast.requests().len(), 1);
}

#[test]
fn stream_fails_over_on_status_before_the_first_byte() {
    let down = Upstream::start(|_| error_reply(503));
    let ok = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "down", "url": down.base_url(), "weight": 1},
            {"name": "ok", "url": ok.base_url(), "weight": 0},
        ]),
        json!({}),
    ));
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(r.clean_end);
    assert_eq!(r.event_texts().last().copied(), Some("data: [DONE]"));
    assert_eq!((down.requests().len(), ok.requests().len()), (1, 1));
}

#[test]
fn no_retry_once_streaming_has_begun() {
    let first = chat_chunk("m", json!({"content": "partial"}), None);
    let events = vec![(Duration::from_millis(10), first.clone())];
    let dying = Upstream::start(move |_| Reply::sse_then_die(events.clone()));
    let spare = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "dying", "url": dying.base_url(), "weight": 1},
            {"name": "spare", "url": spare.base_url(), "weight": 0},
        ]),
        json!({"fail_threshold": 1}),
    ));
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.event_texts()[0], first.trim_end());
    assert!(
        r.body.contains("error"),
        "a cut stream ends with an error event: {}",
        r.body
    );
    assert!(
        spare.requests().is_empty(),
        "the client already had bytes: no second endpoint"
    );
    // The cut stream counts against the endpoint's health: with fail_threshold 1 it cools
    // down, and the next request goes to the standby.
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!((dying.requests().len(), spare.requests().len()), (1, 1));
}

#[test]
fn failing_endpoint_cools_down_then_recovers() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let flaky = Upstream::start(move |req| {
        if flag.load(Ordering::SeqCst) {
            openai_reply(req)
        } else {
            error_reply(500)
        }
    });
    let spare = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "flaky", "url": flaky.base_url(), "weight": 1},
            {"name": "spare", "url": spare.base_url(), "weight": 0},
        ]),
        json!({"fail_threshold": 2, "cooldown_ms": 3000}),
    ));
    let url = relay.url("/v1/chat/completions");
    let mut cooling_since = Instant::now();
    for i in 0..4 {
        assert_eq!(post_json(&url, &chat("m")).status, 200);
        if i == 1 {
            // the second failure in a row has been answered: the cooldown runs from before now
            cooling_since = Instant::now();
        }
    }
    assert_eq!(
        flaky.requests().len(),
        2,
        "after 2 failures in a row the endpoint is skipped during its cooldown"
    );
    assert_eq!(spare.requests().len(), 4);
    healthy.store(true, Ordering::SeqCst);
    let until = cooling_since + Duration::from_millis(3200);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    for _ in 0..3 {
        assert_eq!(post_json(&url, &chat("m")).status, 200);
    }
    assert_eq!(flaky.requests().len(), 5, "tried again after the cooldown");
    assert_eq!(
        spare.requests().len(),
        4,
        "and preferred again once it answers"
    );
}

#[test]
fn retry_after_on_429_keeps_endpoint_out_for_that_long() {
    let limited = Upstream::start(|_| {
        Reply::raw(
            429,
            &[("Content-Type", "application/json"), ("Retry-After", "30")],
            r#"{"error":{"message":"slow down"}}"#,
        )
    });
    let spare = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "limited", "url": limited.base_url(), "weight": 1},
            {"name": "spare", "url": spare.base_url(), "weight": 0},
        ]),
        json!({"fail_threshold": 100}),
    ));
    for _ in 0..3 {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
        assert_eq!(r.status, 200, "body: {}", r.body);
    }
    assert_eq!(
        limited.requests().len(),
        1,
        "Retry-After: 30 must be honoured"
    );
}

#[test]
fn max_concurrent_requests_answers_503_with_retry_after() {
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&release);
    let slow = Upstream::start(move |req| Reply::hold(&gate, openai_reply(req)));
    let relay = Relay::start(&upstreams_config(
        json!([{"url": slow.base_url()}]),
        json!({"max_concurrent_requests": 1}),
    ));
    let url = relay.url("/v1/chat/completions");
    let url2 = url.clone();
    let first = std::thread::spawn(move || post_json(&url2, &chat("m")));
    // Wait until the first call is at the upstream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        slow.requests().len(),
        1,
        "the first call reached the upstream"
    );
    // The upstream holds the first call until `release`: the refusal cannot wait for the slot.
    let r = post_json(&url, &chat("m"));
    assert!(!first.is_finished(), "the first call still holds the slot");
    r.assert_error(503, "relay_busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        slow.requests().len(),
        1,
        "the refused call never went upstream"
    );
    release.store(true, Ordering::SeqCst);
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(
        post_json(&url, &chat("m")).status,
        200,
        "the slot is free again"
    );
}

#[test]
fn connect_timeout_bounds_a_silent_proxy_handshake_and_fails_over() {
    // A listener nobody accepts on: TCP connects, the proxy's CONNECT answer never comes, so
    // the connect phase times out (a loopback stand-in for an unreachable host).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let never = Upstream::openai();
    let ok = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "black-hole", "url": never.base_url(), "proxy": silent_url, "weight": 1},
            {"name": "ok", "url": ok.base_url(), "weight": 0},
        ]),
        json!({"connect_timeout_ms": 300, "first_byte_timeout_ms": 20000}),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(t0.elapsed() < HANG_GUARD, "{:?}", t0.elapsed());
    assert!(never.requests().is_empty());
    assert_eq!(ok.requests().len(), 1);

    // Alone, the same endpoint is a quick 504 that says which phase timed out.
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "black-hole", "url": never.base_url(), "proxy": silent_url}]),
        json!({"connect_timeout_ms": 300, "first_byte_timeout_ms": 20000}),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    let took = t0.elapsed();
    let msg = r.assert_error(504, "upstream_timeout");
    assert!(msg.contains("connect"), "{msg}");
    assert!(r.body.contains(&never.base_url()), "{}", r.body);
    assert!(took < HANG_GUARD, "{took:?}");
}

#[test]
fn stream_first_byte_timeout_fails_over() {
    let slow = Upstream::start(|req| Reply::delay(Duration::from_secs(60), openai_reply(req)));
    let ok = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "slow", "url": slow.base_url(), "weight": 1},
            {"name": "ok", "url": ok.base_url(), "weight": 0},
        ]),
        json!({"first_byte_timeout_ms": 300}),
    ));
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let t0 = Instant::now();
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(r.clean_end);
    assert!(t0.elapsed() < HANG_GUARD, "{:?}", t0.elapsed());
    assert_eq!((slow.requests().len(), ok.requests().len()), (1, 1));
}

/// An upstream that answers a chat completion with its head and the first 20 bytes of the body,
/// then goes silent with the connection open (until `gate` is set or the relay hangs up).
fn stalling(gate: &Arc<AtomicBool>) -> Upstream {
    let gate = Arc::clone(gate);
    Upstream::start(move |req| Reply::stall(openai_reply(req), 20, false, &gate))
}

#[test]
fn whole_answer_stalled_after_its_head_fails_over_to_next_endpoint() {
    let gate = Arc::new(AtomicBool::new(false));
    let stall = stalling(&gate);
    let ok = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "stall", "url": stall.base_url(), "weight": 1},
            {"name": "ok", "url": ok.base_url(), "weight": 0},
        ]),
        // the first-byte timeout is long: only the idle timeout can end the stalled body
        json!({"idle_timeout_ms": 500, "first_byte_timeout_ms": 60000}),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    gate.store(true, Ordering::SeqCst);
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(t0.elapsed() < HANG_GUARD, "{:?}", t0.elapsed());
    assert_eq!(r.json()["object"], "chat.completion", "{}", r.body);
    assert_eq!((stall.requests().len(), ok.requests().len()), (1, 1));
    let metrics = get(&relay.url("/metrics")).body;
    assert!(
        metrics.contains("llm_relay_upstream_errors_total{endpoint=\"stall\"} 1"),
        "{metrics}"
    );
}

#[test]
fn whole_answer_stalled_after_its_head_alone_is_504_naming_the_phase() {
    let gate = Arc::new(AtomicBool::new(false));
    let stall = stalling(&gate);
    let cache = TempDir::new();
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "stall", "url": stall.base_url()}]),
        json!({
            "idle_timeout_ms": 500,
            "first_byte_timeout_ms": 60000,
            "cache": {"dir": cache.path().to_str().unwrap()},
        }),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    gate.store(true, Ordering::SeqCst);
    assert!(t0.elapsed() < HANG_GUARD, "{:?}", t0.elapsed());
    assert_eq!(r.status, 504, "body: {}", r.body);
    let err = &r.json()["error"];
    assert_eq!(err["code"], "upstream_timeout", "{}", r.body);
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no byte of the answer body for 500 ms"),
        "{message}"
    );
    assert!(message.contains(&stall.base_url()), "{message}");
    assert_eq!(stall.requests().len(), 1);
    // nothing was cached: the same request goes upstream again (and, the gate open now, gets
    // the whole answer)
    let again = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(again.status, 200, "body: {}", again.body);
    assert_eq!(again.json()["object"], "chat.completion", "{}", again.body);
    assert_eq!(stall.requests().len(), 2);
}

#[test]
fn stream_silent_after_its_first_event_ends_with_an_error_naming_the_phase() {
    let gate = Arc::new(AtomicBool::new(false));
    let held = Arc::clone(&gate);
    let silent = Upstream::start(move |_| Reply::SseGated {
        first: vec![
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\n".into(),
        ],
        gate: Arc::clone(&held),
        rest: vec!["data: [DONE]\n\n".into()],
    });
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "silent", "url": silent.base_url()}]),
        json!({"idle_timeout_ms": 500}),
    ));
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    gate.store(true, Ordering::SeqCst);
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(r.body.contains("\"id\":\"c1\""), "{}", r.body);
    assert!(
        r.body.contains("no byte of the answer body for 500 ms"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("[DONE]"), "{}", r.body);
    assert_eq!(silent.requests().len(), 1);
    let metrics = get(&relay.url("/metrics")).body;
    assert!(
        metrics.contains("llm_relay_upstream_errors_total{endpoint=\"silent\"} 1"),
        "{metrics}"
    );
}
