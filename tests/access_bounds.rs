//! Bounds a hostile or unlucky client meets (issue 19): whole upstream answers are held within
//! `max_response_bytes` each and `max_response_bytes_in_flight` together. An answer over
//! either is dropped with an error that names the response (502 `response_too_large`, 503
//! `relay_busy` with `Retry-After`), is never cached, and never counts against the endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

/// A chat answer to `req` of about `size` bytes.
fn big_answer(req: &RecordedRequest, size: usize) -> Reply {
    match echo_reply_padded(req, Duration::ZERO, size.saturating_sub(300)) {
        Reply::Delay(_, answer) => *answer,
        answer => answer,
    }
}

/// An upstream whose `handler` gets the gate a test opens to release held answers.
fn gated(
    handler: impl Fn(&RecordedRequest, &Arc<AtomicBool>) -> Reply + Send + Sync + 'static,
) -> (Upstream, Arc<AtomicBool>) {
    let gate = Arc::new(AtomicBool::new(false));
    let g = Arc::clone(&gate);
    (Upstream::start(move |req| handler(req, &g)), gate)
}

/// The content of a chat request's first message.
fn content(req: &RecordedRequest) -> String {
    req.json()["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn answers_over_max_response_bytes_are_a_502_naming_the_response_never_cached_nor_blamed() {
    let up = Upstream::start(|req| {
        let asked = content(req);
        let answer = big_answer(req, if asked.starts_with("big") { 300_000 } else { 0 });
        if asked.contains("chunked") {
            // no Content-Length: found too large while it is read
            let open = Arc::new(AtomicBool::new(true));
            return Reply::stall(answer, 0, true, &open);
        }
        answer
    });
    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"max_response_bytes": 200_000, "fail_threshold": 2}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");
    for (i, asked) in ["big", "big chunked", "big", "big chunked", "big"]
        .iter()
        .enumerate()
    {
        let r = post_json(&url, &ask(asked));
        let msg = r.assert_error(502, "response_too_large");
        assert!(msg.contains("response"), "{msg}");
        assert!(msg.contains("max_response_bytes"), "{msg}");
        assert!(!msg.contains("request"), "{msg}");
        assert_eq!(
            up.requests().len(),
            i + 1,
            "one attempt each, no retry, and never answered from the cache"
        );
    }
    let ready = get(&relay.url("/ready"));
    assert_eq!(
        ready.status, 200,
        "the endpoint's health is untouched: {}",
        ready.body
    );
    let r = post_json(&url, &ask("small"));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn answers_in_flight_share_max_response_bytes_in_flight_503_beyond_it() {
    let (up, gate) = gated(|req, gate| {
        let answer = big_answer(req, 600_000);
        if content(req) == "held" {
            // its head (with Content-Length) and a little of it, then silence until released
            return Reply::stall(answer, 100, false, gate);
        }
        answer
    });
    let cfg = config_json(
        &up.base_url(),
        json!({"max_response_bytes": 1_000_000, "max_response_bytes_in_flight": 1_000_000,
               "fail_threshold": 1}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");
    let hold = || {
        let url = url.clone();
        std::thread::spawn(move || post_json(&url, &ask("held")))
    };
    let mut held = hold();
    // Once the held answer's head is in, its 600 KB are reserved and another cannot fit.
    let until = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        let r = post_json(&url, &ask("other"));
        if r.status == 503 && !held.is_finished() {
            break r;
        }
        assert!(matches!(r.status, 200 | 503), "{}", r.body);
        if held.is_finished() {
            // the other answer took the budget first: the held one was refused instead
            let r = std::mem::replace(&mut held, hold()).join().unwrap();
            r.assert_error(503, "relay_busy");
        }
        assert!(
            Instant::now() < until,
            "the held answer never took the budget"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let msg = busy.assert_error(503, "relay_busy");
    assert!(msg.contains("response"), "{msg}");
    assert!(msg.contains("max_response_bytes_in_flight"), "{msg}");
    assert!(!msg.contains("request"), "{msg}");
    assert_eq!(busy.header("retry-after"), Some("1"), "{:?}", busy.headers);
    assert_eq!(get(&relay.url("/health")).status, 200);
    let ready = get(&relay.url("/ready"));
    assert_eq!(
        ready.status, 200,
        "not the endpoint's fault: {}",
        ready.body
    );

    gate.store(true, Ordering::SeqCst);
    let r = held.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_json(&url, &ask("other"));
    assert_eq!(r.status, 200, "the budget is free again: {}", r.body);
}

/// A body of many short strings costs far more parsed than its size (each string is its own
/// allocation besides its value): eight 12 MiB bodies of `["a","a",…]` at once stay within
/// `max_body_bytes_in_flight`, measured as the relay's peak RSS; the ones that do not fit are
/// refused with 503 `relay_busy`, and at least one is relayed.
#[test]
fn short_string_bodies_in_flight_stay_within_max_body_bytes_in_flight() {
    let (up, gate) = gated(|req, gate| {
        if content(req) == "warm" {
            return openai_reply(req);
        }
        Reply::hold(gate, openai_reply(req))
    });
    // Each body is estimated at ~350 MB now (~250 MB before strings were counted): one fits.
    let budget: u64 = 512 * 1024 * 1024;
    let cfg = config_json(
        &up.base_url(),
        json!({"max_body_bytes": 16 * 1024 * 1024, "max_body_bytes_in_flight": budget}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");
    let warm = json!({"model": "m", "messages": [{"role": "user", "content": "warm"}]});
    assert_eq!(post_json(&url, &warm).status, 200);
    let baseline_kb = relay.memory_kb("VmHWM");

    let strings = "\"a\",".repeat(3 * 1024 * 1024);
    let body = Arc::new(format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"held"}}],"stop":[{strings}"a"]}}"#
    ));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), Arc::clone(&body));
            std::thread::spawn(move || {
                // a refusal sent before the body is read reaches it too (lingering close); a
                // relayed body waits at the gate until all eight settled (up to 120 s below)
                let mut r = agent_waiting(Duration::from_secs(180))
                    .post(&url)
                    .content_type("application/json")
                    .send(&body[..])
                    .expect("an answer, not a reset");
                let status = r.status().as_u16();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.as_bytes().to_vec());
                (
                    status,
                    retry,
                    r.body_mut().read_to_string().unwrap_or_default(),
                )
            })
        })
        .collect();
    // Every body is either held upstream (parsed, sent, waiting) or refused.
    wait_until(Duration::from_secs(120), "all eight bodies settled", || {
        let done = clients.iter().filter(|c| c.is_finished()).count();
        up.requests().len() - 1 + done == 8
    });
    let peak_kb = relay.memory_kb("VmHWM");
    gate.store(true, Ordering::SeqCst);
    let replies: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let relayed = replies.iter().filter(|r| r.0 == 200).count();
    for (status, retry, body) in replies.iter().filter(|r| r.0 != 200) {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("relay_busy"), "{body}");
        assert!(body.contains("max_body_bytes_in_flight"), "{body}");
        assert_eq!(retry.as_deref(), Some(&b"1"[..]));
    }
    let grown = (peak_kb - baseline_kb) * 1024;
    eprintln!(
        "peak grew {} MB for {relayed} of 8 bodies in flight (budget {} MB)",
        grown / 1_000_000,
        budget / 1_000_000
    );
    assert!(relayed >= 1, "at least one body fits the budget");
    assert!(
        grown <= budget,
        "peak RSS grew {grown} bytes, over max_body_bytes_in_flight ({budget})"
    );
}

/// A connection to the relay at `addr` from the local address `source` (e.g. 127.0.0.2).
fn connect_from(source: &str, addr: &str) -> std::net::TcpStream {
    use socket2::{Domain, SockAddr, Socket, Type};
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&SockAddr::from(from)).unwrap();
    socket.connect(&SockAddr::from(target)).unwrap();
    socket.into()
}

/// `GET /health` on `s`, read until the relay closes: the status and the whole answer.
fn health_on(mut s: std::net::TcpStream) -> (Option<u16>, String) {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (status, text)
}

/// A relay with `max_connections` 64, `max_connections_per_ip` 4 and `extra`, and `n` idle
/// connections to it from 127.0.0.1.
fn with_idle(
    up: &Upstream,
    extra: serde_json::Value,
    n: usize,
) -> (Relay, Vec<std::net::TcpStream>) {
    let mut settings = json!({"max_connections": 64, "max_connections_per_ip": 4});
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let relay = Relay::start(&config_json(&up.base_url(), settings));
    let idle = (0..n)
        .map(|_| connect_from("127.0.0.1", relay.addr()))
        .collect();
    (relay, idle)
}

/// One address cannot take every connection slot: past `max_connections_per_ip` its next
/// connection is a 503, while `/health` from another address still answers; an address in
/// `trusted_proxies` has no such limit.
#[test]
fn one_address_cannot_take_every_connection_slot_unless_trusted() {
    let up = Upstream::openai();
    // Four idle connections from 127.0.0.1: accepted in order, so the fifth is counted after.
    let (relay, mut idle) = with_idle(&up, json!({}), 4);
    let (status, text) = health_on(connect_from("127.0.0.1", relay.addr()));
    assert_eq!(status, Some(503), "{text}");
    assert!(text.contains("max_connections_per_ip"), "{text}");
    assert!(
        text.contains("retry-after: 1") || text.contains("Retry-After: 1"),
        "{text}"
    );
    let (status, text) = health_on(connect_from("127.0.0.2", relay.addr()));
    assert_eq!(status, Some(200), "another address is served: {text}");
    // Closing one frees its slot for the same address.
    drop(idle.pop());
    wait_until(Duration::from_secs(30), "a slot freed", || {
        health_on(connect_from("127.0.0.1", relay.addr())).0 == Some(200)
    });
    assert_eq!(idle.len(), 3, "the other three are still open");

    let (trusting, _idle) = with_idle(&up, json!({"trusted_proxies": ["127.0.0.0/30", "::1"]}), 10);
    let (status, text) = health_on(connect_from("127.0.0.1", trusting.addr()));
    assert_eq!(status, Some(200), "a trusted proxy is exempt: {text}");
}

/// Sends `size` bytes of JSON to `port` with Python's `http.client` (which reads the answer only
/// once its whole body is sent) and prints `status retry-after code`, or the exception.
fn python_post(port: &str, size: usize) -> String {
    let script = format!(
        r#"
import http.client, json
body = b'{{"model":"m","messages":[{{"role":"user","content":"' + b'x' * {size} + b'"}}]}}'
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=60)
try:
    c.request("POST", "/v1/chat/completions", body=body, headers={{"Content-Type": "application/json"}})
    r = c.getresponse()
    print(r.status, r.getheader("Retry-After"), json.loads(r.read())["error"]["code"])
except Exception as e:
    print("exception", type(e).__name__, e)
"#
    );
    let out = run_to_end(
        {
            let mut cmd = python_command();
            cmd.args(["-c", &script]);
            cmd
        },
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A refusal sent before the body is read (413 by `Content-Length`, 503 `relay_busy`) reaches
/// a client still writing its body: the relay half-closes and drains (a lingering close)
/// instead of resetting the connection under it.
#[test]
fn refusals_before_the_body_reach_a_client_still_writing_it() {
    let (up, gate) = gated(|req, gate| Reply::hold(gate, openai_reply(req)));
    let cfg = config_json(&up.base_url(), json!({"max_body_bytes": 1024 * 1024}));
    let relay = Relay::start(&cfg);
    let port = relay.addr().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        python_post(&port, 16 * 1024 * 1024),
        "413 None request_too_large"
    );

    // 48 MiB for bodies in flight: one 8 MiB body (32 MiB reserved) held upstream leaves no
    // room for a second.
    let cfg = config_json(
        &up.base_url(),
        json!({"max_body_bytes": 16 * 1024 * 1024, "max_body_bytes_in_flight": 48 * 1024 * 1024}),
    );
    let busy = Relay::start(&cfg);
    let held = {
        let url = busy.url("/v1/chat/completions");
        std::thread::spawn(move || {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": "h".repeat(8 << 20)}]});
            post_json(&url, &body)
        })
    };
    wait_until(Duration::from_secs(60), "the held body upstream", || {
        !up.requests().is_empty()
    });
    let port = busy.addr().rsplit(':').next().unwrap().to_string();
    assert_eq!(python_post(&port, 8 * 1024 * 1024), "503 1 relay_busy");
    gate.store(true, Ordering::SeqCst);
    assert_eq!(held.join().unwrap().status, 200);
}
