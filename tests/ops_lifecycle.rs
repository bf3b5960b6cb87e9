//! Lifecycle (issue #6): `/ready`, graceful drain on SIGTERM/SIGINT (a stream in flight runs to
//! `[DONE]`, new requests get 503, exit code 0), the shutdown timeout, and SIGHUP reload (a
//! new rule takes effect; a broken config is refused and the old one stays).

use std::sync::{mpsc, Mutex};
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

/// An upstream whose streamed answers (12 quick chunks, then `[DONE]`) start only once the test
/// sends on (or drops) the returned sender: until then the relay's call is in flight for as
/// long as the test needs, however busy the machine. Other requests get the usual answer.
fn gated_upstream() -> (Upstream, mpsc::Sender<()>) {
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let up = Upstream::start(move |req| {
        if req.json()["stream"] == json!(true) {
            let _ = gate.lock().unwrap().recv();
            slow_stream(12, Duration::from_millis(20))
        } else {
            openai_reply(req)
        }
    });
    (up, open)
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
    wait_until(Duration::from_secs(30), "/ready back to 200", || {
        get(&relay.url("/ready")).status == 200
    });
    let r = get(&relay.url("/ready"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["upstreams"][0]["healthy"], true);
}

/// One keep-alive connection to the relay, driven by hand: a request out, one response in.
struct KeepAlive {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    fn open(addr: &str) -> KeepAlive {
        let stream = std::net::TcpStream::connect(addr).expect("connect relay");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        KeepAlive {
            stream: std::io::BufReader::new(stream),
        }
    }

    /// Sends `method path` (with a JSON `body` if given); returns status, lowercased headers and
    /// body. A reset or a close instead of an answer fails the test.
    fn ask(&mut self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        use std::io::{BufRead, Read, Write};
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(head.as_bytes()).unwrap();
        let mut line = String::new();
        self.stream
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"));
        assert!(
            !line.is_empty(),
            "{method} {path}: closed without an answer"
        );
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).unwrap();
            let Some((k, v)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = find_header(&headers, "content-length")
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

/// Issue 10: on SIGTERM the listener closes at once — a new connection is refused, so a load
/// balancer moves on — while connections already accepted are served: their probes answer,
/// their new requests get 503 `shutting_down` (never a reset), the stream in flight runs to
/// `[DONE]`, and the relay exits 0.
#[test]
fn sigterm_lets_a_stream_in_flight_finish_then_exits_0_and_refuses_new_requests() {
    let (up, open) = gated_upstream();
    let mut relay = Relay::start(&config_json(&up.base_url(), json!({"workers": 4})));
    let addr = relay.addr().to_string();
    let stream_addr = addr.clone();
    let streaming = thread::spawn(move || {
        let body = json!({"model": "m", "stream": true, "messages": []});
        stream_events_timeout(
            &stream_addr,
            "/v1/chat/completions",
            &body,
            Duration::from_secs(60),
        )
    });
    // the call is in flight once the upstream has its request; its stream waits for the gate
    wait_until(Duration::from_secs(30), "the upstream call", || {
        !up.requests().is_empty()
    });
    // a client that has used its connection, and one that connected but sent nothing yet
    let mut used = KeepAlive::open(&addr);
    assert_eq!(used.ask("GET", "/health", None).status, 200);
    let mut quiet = KeepAlive::open(&addr);

    relay.signal("TERM");
    relay
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains("draining"))
        .expect("a `draining` log line after SIGTERM");
    wait_until(
        Duration::from_secs(30),
        "new connections to be refused",
        || std::net::TcpStream::connect(&addr).is_err(),
    );

    let ready = used.ask("GET", "/ready", None);
    assert_eq!(ready.status, 503, "/ready during drain: {}", ready.body);
    assert_eq!(ready.json()["status"], "draining");
    assert_eq!(
        used.ask("GET", "/health", None).status,
        200,
        "liveness stays 200"
    );
    let refused = used.ask("POST", "/v1/chat/completions", Some(&chat("m")));
    refused.assert_error(503, "shutting_down");
    assert_eq!(refused.header("connection"), Some("close"));
    let late = quiet.ask("POST", "/v1/chat/completions", Some(&chat("m")));
    late.assert_error(503, "shutting_down");
    assert_eq!(
        relay.wait_exit(Duration::ZERO),
        None,
        "must wait for the stream"
    );

    open.send(()).unwrap();
    let r = streaming.join().expect("stream thread");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.clean_end, "stream must end properly: {}", r.body);
    assert_eq!(r.event_texts().last().copied(), Some("data: [DONE]"));
    assert_eq!(r.events.len(), 14, "all events arrive: {}", r.body);
    assert_eq!(
        relay.wait_exit(Duration::from_secs(30)),
        Some(Some(0)),
        "exit code 0 after the drain"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "the refused requests never went upstream"
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
    assert_eq!(relay.wait_exit(Duration::from_secs(30)), Some(Some(0)));
}

#[test]
fn shutdown_timeout_ends_a_drain_that_takes_too_long() {
    // the gate stays shut until the relay has exited: only the timeout can end this drain
    let (up, _open) = gated_upstream();
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
    wait_until(Duration::from_secs(30), "the upstream call", || {
        !up.requests().is_empty()
    });
    let t = Instant::now();
    relay.signal("TERM");
    assert_eq!(relay.wait_exit(Duration::from_secs(30)), Some(Some(0)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited the timeout"
    );
    // the log reader may take the last line a moment after the exit
    assert!(relay
        .wait_for_log_line(Duration::from_secs(10), |l| l
            .contains("shutdown_timeout_s (1 s) reached"))
        .is_some());
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
        .wait_for_log_line(Duration::from_secs(30), |l| {
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
    let (up, open) = gated_upstream();
    let relay = Relay::start(&rule_config(&up, "model-a"));
    let addr = relay.addr().to_string();
    let streaming = thread::spawn(move || {
        let body = json!({"model": "alias", "stream": true, "messages": []});
        stream_events_timeout(
            &addr,
            "/v1/chat/completions",
            &body,
            Duration::from_secs(60),
        )
    });
    wait_until(Duration::from_secs(30), "the upstream call", || {
        !up.requests().is_empty()
    });
    reload_with(&relay, &rule_config(&up, "model-b"));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("alias")).status,
        200
    );
    assert_eq!(last_upstream_model(&up), "model-b");

    open.send(()).unwrap();
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
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains("config reloaded"))
        .expect("a `config reloaded` log line");
}
