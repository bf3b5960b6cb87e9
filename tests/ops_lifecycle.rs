//! Lifecycle (issue #6): `/ready`, graceful drain on SIGTERM/SIGINT (a stream in flight runs to
//! `[DONE]`, new requests get 503, exit code 0), the shutdown timeout, and SIGHUP reload (a
//! new rule takes effect; a broken config is refused and the old one stays).

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// A stream of `n` chunks, one every `gap`, then `[DONE]`.
fn slow_stream(n: usize, gap: Duration) -> Reply {
    let mut events: Vec<(Duration, String)> = (0..n)
        .map(|i| {
            (
                gap,
                chat_chunk("m", json!({"content": format!("p{i} ")}), None),
            )
        })
        .collect();
    events.push((Duration::ZERO, chat_chunk("m", json!({}), Some("stop"))));
    events.push((Duration::ZERO, sse_done()));
    Reply::sse(events)
}

fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_is_200_with_a_reason_body_while_serving() {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = get(&relay.url("/ready"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ready");
    assert_eq!(get(&relay.url("/health")).status, 200);
    post_json(&relay.url("/ready"), &json!({})).assert_error(405, "method_not_allowed");
}

#[test]
fn ready_is_503_while_every_upstream_cools_down_and_recovers_by_the_clock() {
    let cfg = json!({"fail_threshold": 1, "cooldown_ms": 1500});
    let relay = Relay::start(&config_json(&closed_port_url(), cfg));
    assert_eq!(get(&relay.url("/ready")).status, 200);
    let chat = json!({"model": "m", "messages": []});
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat).status,
        502
    );
    let r = get(&relay.url("/ready"));
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["upstreams"][0]["name"], "default");
    assert_eq!(v["upstreams"][0]["healthy"], false);
    assert_eq!(
        get(&relay.url("/health")).status,
        200,
        "liveness is unaffected"
    );
    // no traffic needed: the cooldown ends by the clock
    thread::sleep(Duration::from_millis(1800));
    let r = get(&relay.url("/ready"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["upstreams"][0]["healthy"], true);
}

#[test]
fn sigterm_lets_a_three_second_stream_finish_then_exits_0_and_refuses_new_requests() {
    let up = Upstream::start(|req| {
        if req.path.ends_with("/chat/completions") {
            slow_stream(12, Duration::from_millis(250))
        } else {
            openai_reply(req)
        }
    });
    let mut relay = Relay::start(&config_json(&up.base_url(), json!({"workers": 4})));
    let addr = relay.addr().to_string();
    let streaming = thread::spawn(move || {
        let body = json!({"model": "m", "stream": true, "messages": []});
        stream_events(&addr, "/v1/chat/completions", &body)
    });
    // the stream is running once the upstream has its request
    wait_until(Duration::from_secs(5), "the upstream call", || {
        !up.requests().is_empty()
    });
    thread::sleep(Duration::from_millis(300));
    relay.signal("TERM");
    relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains("draining"))
        .expect("a `draining` log line after SIGTERM");

    let ready = get(&relay.url("/ready"));
    assert_eq!(ready.status, 503, "/ready during drain: {}", ready.body);
    assert_eq!(ready.json()["status"], "draining");
    assert_eq!(get(&relay.url("/health")).status, 200, "liveness stays 200");
    let refused = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    refused.assert_error(503, "shutting_down");
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(
        relay.wait_exit(Duration::ZERO),
        None,
        "must wait for the stream"
    );

    let r = streaming.join().expect("stream thread");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.clean_end, "stream must end properly: {}", r.body);
    assert_eq!(r.event_texts().last().copied(), Some("data: [DONE]"));
    assert_eq!(r.events.len(), 14, "all events arrive: {}", r.body);
    assert!(
        r.started.elapsed() >= Duration::from_millis(2900),
        "the stream ran its full 3 s"
    );
    assert_eq!(
        relay.wait_exit(Duration::from_secs(10)),
        Some(Some(0)),
        "exit code 0 after the drain"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "the refused request never went upstream"
    );
}

#[test]
fn sigint_with_nothing_in_flight_exits_0_at_once() {
    let up = Upstream::openai();
    let mut relay = Relay::start(&config_json(&up.base_url(), json!({})));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    relay.signal("INT");
    assert_eq!(relay.wait_exit(Duration::from_secs(5)), Some(Some(0)));
}

#[test]
fn shutdown_timeout_ends_a_drain_that_takes_too_long() {
    let up = Upstream::start(|_| slow_stream(40, Duration::from_millis(250)));
    let mut relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"shutdown_timeout_s": 1}),
    ));
    let addr = relay.addr().to_string();
    let _streaming = thread::spawn(move || {
        let body = json!({"model": "m", "stream": true, "messages": []});
        stream_events_timeout(
            &addr,
            "/v1/chat/completions",
            &body,
            Duration::from_secs(20),
        )
    });
    wait_until(Duration::from_secs(5), "the upstream call", || {
        !up.requests().is_empty()
    });
    let t = Instant::now();
    relay.signal("TERM");
    assert_eq!(relay.wait_exit(Duration::from_secs(8)), Some(Some(0)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited the timeout"
    );
    assert!(relay
        .stderr_text()
        .contains("shutdown_timeout_s (1 s) reached"));
}

fn rule_config(up: &Upstream, target: &str) -> String {
    config_json(
        &up.base_url(),
        json!({"model_rules": [{"match_model": "alias", "set": {"model": target}}]}),
    )
}

/// The model the upstream saw for the last request.
fn last_upstream_model(up: &Upstream) -> Value {
    up.requests().last().expect("an upstream request").json()["model"].clone()
}

#[test]
fn sighup_reload_changes_a_rules_effect_on_the_next_request() {
    let up = Upstream::openai();
    let relay = Relay::start(&rule_config(&up, "model-a"));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("alias")).status,
        200
    );
    assert_eq!(last_upstream_model(&up), "model-a");

    reload_with(&relay, &rule_config(&up, "model-b"));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("alias")).status,
        200
    );
    assert_eq!(last_upstream_model(&up), "model-b");
    assert_eq!(get(&relay.url("/ready")).status, 200);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one_and_logs_why() {
    let up = Upstream::openai();
    let relay = Relay::start(&rule_config(&up, "model-a"));
    std::fs::write(
        relay.config_path(),
        "{\n  \"model_rules\": [\n    {\"match_model\": \"alias\", \"set\": {\"model\": \"model-b\"}}\n  ],\n  \"wokers\": 2\n}\n",
    )
    .unwrap();
    relay.signal("HUP");
    let line = relay
        .wait_for_log_line(Duration::from_secs(5), |l| {
            l.contains("config reload failed")
        })
        .expect("a `config reload failed` log line");
    assert!(line.contains("keeping the running config"), "{line}");
    assert!(
        line.contains("line 5"),
        "names the line of the bad key: {line}"
    );
    assert!(line.contains("wokers"), "{line}");
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("alias")).status,
        200
    );
    assert_eq!(
        last_upstream_model(&up),
        "model-a",
        "the old rule still applies"
    );
}

#[test]
fn sighup_during_a_stream_keeps_the_stream_running_to_done() {
    let up = Upstream::start(|req| {
        if req.json()["stream"] == json!(true) {
            slow_stream(6, Duration::from_millis(200))
        } else {
            openai_reply(req)
        }
    });
    let relay = Relay::start(&rule_config(&up, "model-a"));
    let addr = relay.addr().to_string();
    let streaming = thread::spawn(move || {
        let body = json!({"model": "alias", "stream": true, "messages": []});
        stream_events(&addr, "/v1/chat/completions", &body)
    });
    wait_until(Duration::from_secs(5), "the upstream call", || {
        !up.requests().is_empty()
    });
    reload_with(&relay, &rule_config(&up, "model-b"));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("alias")).status,
        200
    );
    assert_eq!(last_upstream_model(&up), "model-b");

    let r = streaming.join().expect("stream thread");
    assert!(r.clean_end, "{}", r.body);
    assert_eq!(r.event_texts().last().copied(), Some("data: [DONE]"));
    assert_eq!(
        up.requests()[0].json()["model"],
        "model-a",
        "started with the old rule"
    );
}

/// Writes `config` over the relay's config file, sends SIGHUP and waits for the reload's log line.
fn reload_with(relay: &Relay, config: &str) {
    std::fs::write(relay.config_path(), config).unwrap();
    relay.signal("HUP");
    relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains("config reloaded"))
        .expect("a `config reloaded` log line");
}
