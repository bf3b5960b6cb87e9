//! Kept connections (issue 19): the worker that answers a request serves the connection's next
//! request itself when it has arrived whole (no thread hand-off either way), and never waits
//! on part of one, nor while other clients' requests wait for a worker.
//!
//! Each test makes the next request arrive first — pipelined on the same write as the one
//! before — so what the worker finds does not depend on timing; the verdicts are answers and
//! orderings, with bounds far from the ones a broken relay would hit.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// An upstream answering [`echo_text`] of the prompt after `delay`: long enough that the
/// connection's thread has handed the request to a worker before the answer's end.
fn echoing(delay: Duration) -> Upstream {
    Upstream::start(move |req| echo_reply(req, delay))
}

fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

fn connect(relay: &Relay) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(relay.addr()).expect("connect relay");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn kept(relay: &Relay) -> f64 {
    metric(relay, "llm_relay_kept_requests_total").unwrap_or(-1.0)
}

#[test]
fn pipelined_requests_are_answered_in_order_by_the_worker_that_kept_the_connection() {
    let up = echoing(Duration::from_millis(300));
    let relay = Relay::start(&config_json(&up.base_url(), json!({"workers": 2})));
    assert_eq!(kept(&relay), 0.0);
    // the second request is larger than the first look at the socket (2 KiB), the third
    // small: both arrive whole before the first answer's end
    let big = "b".repeat(5000);
    let (mut s, mut r) = connect(&relay);
    let mut bytes = chat_request_bytes("first");
    bytes.extend(chat_request_bytes(&big));
    bytes.extend(chat_request_bytes("third"));
    s.write_all(&bytes).unwrap();
    for expected in ["first", big.as_str(), "third"] {
        let (status, body) = read_json_answer(&mut r);
        assert_eq!(status, 200, "{body}");
        assert_eq!(content(&body), echo_text(expected));
    }
    assert_eq!(up.requests().len(), 3);
    assert_eq!(
        kept(&relay),
        2.0,
        "the second and third were read by the worker"
    );
    // a next request long after the window still finds the connection open: it waited with
    // the relay's own read timeout again, not the window's
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&chat_request_bytes("later")).unwrap();
    let (status, body) = read_json_answer(&mut r);
    assert_eq!((status, content(&body)), (200, echo_text("later").as_str()));
}

#[test]
fn a_kept_connection_with_part_of_a_request_goes_back_without_holding_the_worker() {
    // one worker; the clients' own reads may take 30 s
    let up = echoing(Duration::from_millis(300));
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"workers": 1, "client_timeout_ms": 30_000}),
    ));
    let (mut a, mut ar) = connect(&relay);
    // a whole request, then half of the next one's head, in one write: the worker that
    // answers the first finds only part of the second
    let mut bytes = chat_request_bytes("whole");
    bytes.extend_from_slice(b"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n");
    a.write_all(&bytes).unwrap();
    let (status, body) = read_json_answer(&mut ar);
    assert_eq!((status, content(&body)), (200, echo_text("whole").as_str()));
    // another client's request gets the one worker, now
    let started = Instant::now();
    let reply = post_json(&relay.url("/v1/chat/completions"), &ask("other"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?}: the worker waited for the stalled head",
        started.elapsed()
    );
    // the stalled client may still finish its request
    let rest = chat_request_bytes("late");
    let head_end = b"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n".len();
    a.write_all(&rest[head_end..]).unwrap();
    let (status, body) = read_json_answer(&mut ar);
    assert_eq!((status, content(&body)), (200, echo_text("late").as_str()));
}

#[test]
fn a_connection_that_always_has_a_next_request_yields_its_worker_to_queued_work() {
    // one worker, kept busy by a client that always has its next request ready
    let up = echoing(Duration::from_millis(20));
    let relay = Relay::start(&config_json(&up.base_url(), json!({"workers": 1})));
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (stop, addr) = (Arc::clone(&stop), relay.addr().to_string());
        std::thread::spawn(move || {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let (mut s, mut r) = (s.try_clone().unwrap(), BufReader::new(s));
            let deadline = Instant::now() + Duration::from_secs(40);
            // two requests in flight: when an answer ends, the next request is there
            s.write_all(&chat_request_bytes("busy 0")).unwrap();
            let mut n = 1;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                s.write_all(&chat_request_bytes(&format!("busy {n}")))
                    .unwrap();
                let (status, _) = read_json_answer(&mut r);
                assert_eq!(status, 200);
                n += 1;
            }
            n
        })
    };
    wait_until(Duration::from_secs(30), "the busy client kept", || {
        kept(&relay) >= 3.0
    });
    let started = Instant::now();
    let reply = post_json(&relay.url("/v1/chat/completions"), &ask("queued"));
    let waited = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(content(&reply.json()), echo_text("queued"));
    assert!(busy.join().unwrap() > 3);
    assert!(
        waited < Duration::from_secs(20),
        "the queued request waited {waited:?}: the kept connection never let go of the worker"
    );
}

#[test]
fn a_kept_connection_yielded_to_queued_work_waits_for_its_next_request_with_the_relay_timeout() {
    // one worker; the request "held" is answered only once the test opens the gate
    let gate = Arc::new(AtomicBool::new(false));
    let up = {
        let gate = Arc::clone(&gate);
        Upstream::start(move |req| {
            if String::from_utf8_lossy(&req.body).contains("held") {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !gate.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            echo_reply(req, Duration::ZERO)
        })
    };
    let relay = Relay::start(&config_json(&up.base_url(), json!({"workers": 1})));
    let (mut s, mut r) = connect(&relay);
    // "held" arrives whole behind "first": the worker reads it on the kept connection, with
    // the window as the socket's read timeout
    let mut bytes = chat_request_bytes("first");
    bytes.extend(chat_request_bytes("held"));
    s.write_all(&bytes).unwrap();
    let (status, body) = read_json_answer(&mut r);
    assert_eq!((status, content(&body)), (200, echo_text("first").as_str()));
    wait_until(
        Duration::from_secs(30),
        "\"held\" read by the worker",
        || kept(&relay) >= 1.0,
    );
    // another client's request waits for the one worker: when "held" ends, the worker yields
    // the kept connection to the pool (`go_on` is false) and takes the queued request
    let other = {
        let url = relay.url("/v1/chat/completions");
        std::thread::spawn(move || post_json(&url, &ask("other")))
    };
    wait_until(Duration::from_secs(30), "the other request queued", || {
        // "held", "other" and this /metrics request
        metric(&relay, "llm_relay_in_flight_requests").unwrap_or(0.0) >= 3.0
    });
    gate.store(true, Ordering::SeqCst);
    let (status, body) = read_json_answer(&mut r);
    assert_eq!((status, content(&body)), (200, echo_text("held").as_str()));
    let reply = other.join().unwrap();
    assert_eq!(
        (reply.status, content(&reply.json())),
        (200, echo_text("other").as_str())
    );
    // far longer than the window: the pool's thread waits with the relay's own read timeout
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&chat_request_bytes("later")).unwrap();
    let (status, body) = read_json_answer(&mut r);
    assert_eq!((status, content(&body)), (200, echo_text("later").as_str()));
}
