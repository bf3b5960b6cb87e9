//! Fixes the benchmark led to, guarded: the upstream connection buffers were shrunk from
//! ureq's 128 KiB each (RSS with 1,000 open streams went from ~340 MB to ~115 MB), and are now
//! sized per phase (`upstream/slim.rs`), so a response head must fit 16 KiB; a bigger one is
//! refused with a 502 that says so, and a request header line of up to 16 KiB still goes
//! through. A stream's upstream call runs on a thread that ends with the response head, so
//! the worker relaying the stream keeps a shallow stack (issue 19). And a burst
//! of keep-alive clients is served at once (tiny_http's task pool starved all but 4 of them).
//! And an open stream holds its worker only: its connection's thread goes back to the pool
//! while the worker streams, and the connection serves its next request once the stream ends
//! (issue 19: two threads per open stream were most of the relay's memory).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

fn chat() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

/// An upstream answer whose head carries one header of `size` bytes.
fn answer_with_header_of(size: usize) -> Upstream {
    let big = "x".repeat(size);
    Upstream::start(move |_| {
        Reply::raw(
            200,
            &[
                ("Content-Type", "application/json"),
                ("X-Big", big.as_str()),
            ],
            br#"{"ok":true}"#.to_vec(),
        )
    })
}

#[test]
fn upstream_response_head_of_12_kib_passes_through_smaller_buffers() {
    let up = answer_with_header_of(12 * 1024);
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-big").map(str::len), Some(12 * 1024));
    assert_eq!(r.json(), json!({"ok": true}));
}

#[test]
fn upstream_response_head_over_16_kib_is_a_502_naming_the_upstream() {
    let up = answer_with_header_of(20 * 1024);
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    let msg = r.assert_error(502, "upstream_error");
    assert!(msg.contains(&up.addr()), "{msg}");
    assert!(msg.contains("response headers larger than"), "{msg}");
}

/// The benchmark's wrk runs sometimes served 4 of 50 keep-alive connections for the whole run:
/// tiny_http's task pool queued new connections behind busy threads when several arrived at
/// once, and a queued connection waited until another client hung up.
#[test]
fn a_burst_of_keep_alive_connections_is_served_at_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    let up = Upstream::start(|_| Reply::json(200, json!({"ok": true})));
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let body = chat().to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for round in 0..10 {
        // connect all, then send on all: every connection stays open until the end of the round
        let mut conns: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(relay.addr()).expect("connect"))
            .collect();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(request.as_bytes()).expect("send");
        }
        for (i, c) in conns.iter().enumerate() {
            let mut status = String::new();
            let read = BufReader::new(c).read_line(&mut status);
            assert!(
                read.is_ok() && status.starts_with("HTTP/1.1 200"),
                "round {round}: connection {i} of 40 got no answer within 10 s while the others \
                 stayed open ({read:?}, {status:?})"
            );
        }
    }
}

/// The 16 KiB buffers still carry any request head tiny_http accepts: each header line must fit
/// ureq's output buffer (a 4 KiB one refused a 10 KiB line), and tiny_http caps lines at 16 KiB.
#[test]
fn client_headers_of_35_kib_with_a_15_kib_line_still_reach_the_upstream() {
    let up = Upstream::start(|_| Reply::json(200, json!({"ok": true})));
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let (long, big) = ("z".repeat(15 * 1024), "y".repeat(10 * 1024));
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat(),
        &[
            ("X-Long", long.as_str()),
            ("X-Big-1", big.as_str()),
            ("X-Big-2", big.as_str()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let lengths: Vec<_> = ["x-long", "x-big-1", "x-big-2"]
        .iter()
        .map(|n| seen[0].header(n).map(str::len))
        .collect();
    assert_eq!(lengths, [Some(15 * 1024), Some(10 * 1024), Some(10 * 1024)]);
}

/// The threads of a process named `name`, from /proc.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.unwrap_or_default().trim() == name
        })
        .count()
}

/// tiny_http's connection threads (`http-conn`) of a process.
fn connection_threads(pid: u32) -> usize {
    threads_named(pid, "http-conn")
}

/// Waits (60 s at most) until `pid` has `n` threads named `name`; false if it never did.
fn wait_threads_named(pid: u32, name: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while threads_named(pid, name) != n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Reads from `conn` into `seen` until it holds `pattern` (60 s at most).
fn read_until(conn: &mut TcpStream, seen: &mut Vec<u8>, pattern: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(pattern) {
        assert!(
            Instant::now() < deadline,
            "no {pattern:?} in {:?}",
            String::from_utf8_lossy(seen)
        );
        match conn.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {pattern:?}: {:?}",
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn open_streams_hold_no_connection_thread_and_their_connections_serve_on() {
    const STREAMS: usize = 24;
    let first = chat_chunk("m", json!({"role": "assistant", "content": "one"}), None);
    let body = [
        first.clone(),
        chat_chunk("m", json!({"content": " two"}), Some("stop")),
        sse_done(),
    ]
    .concat();
    let gate = Arc::new(AtomicBool::new(false));
    let g = Arc::clone(&gate);
    let up = Upstream::start(move |_| {
        let answer = Reply::raw(200, &[("Content-Type", "text/event-stream")], body.clone());
        Reply::stall(answer, first.len(), false, &g)
    });
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"workers": STREAMS + 4}),
    ));
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{}",
        ask_stream("count").to_string().len(),
        ask_stream("count")
    );
    // every stream open, each client holding its first event
    let mut streams: Vec<(TcpStream, Vec<u8>)> = (0..STREAMS)
        .map(|_| {
            let mut conn = TcpStream::connect(relay.addr()).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            conn.write_all(request.as_bytes()).unwrap();
            (conn, Vec::new())
        })
        .collect();
    for (conn, seen) in &mut streams {
        read_until(conn, seen, "\"one\"");
    }
    // The pool started a thread per connection; with each request on a worker they all go
    // idle and end (5 s after their last task) down to tiny_http's minimum of 4, while the
    // streams stay open. Before the fix each open stream kept its connection's thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut threads = connection_threads(relay.pid());
    while threads > 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        threads = connection_threads(relay.pid());
    }
    assert!(
        threads <= 4,
        "{threads} connection threads with {STREAMS} open streams"
    );
    assert_eq!(up.requests().len(), STREAMS, "every stream is still open");
    // the streams end whole, and each connection serves its next request
    gate.store(true, Ordering::SeqCst);
    for (conn, seen) in &mut streams {
        read_until(conn, seen, "[DONE]");
        read_until(conn, seen, "\r\n0\r\n\r\n");
        assert!(String::from_utf8_lossy(seen).starts_with("HTTP/1.1 200"));
        seen.clear();
        conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_until(conn, seen, "\r\n\r\n");
        assert!(
            String::from_utf8_lossy(seen).starts_with("HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(seen)
        );
    }
}

/// A stream's ureq call (connect, TLS, send, the response head: ureq's deepest frames) runs on
/// a thread of its own that ends once the head is in, so the worker that relays the stream for
/// its whole length keeps a shallow stack (issue 19: each open stream's worker had ~44 KB of
/// stack touched, ~20 KB now). A stream of the direct client (plain HTTP, no proxy: shallow
/// frames) starts no thread: 500 streams starting at once waited 25–35 ms longer for their
/// first event when each did.
#[test]
fn a_streams_ureq_call_runs_on_a_thread_that_ends_with_the_response_head() {
    for through_proxy in [true, false] {
        let first = chat_chunk("m", json!({"role": "assistant", "content": "one"}), None);
        let body = [first.clone(), sse_done()].concat();
        let (head, end) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (h, e) = (Arc::clone(&head), Arc::clone(&end));
        let up = Upstream::start(move |_| {
            let answer = Reply::raw(200, &[("Content-Type", "text/event-stream")], body.clone());
            Reply::hold(&h, Reply::stall(answer, first.len(), false, &e))
        });
        // an endpoint behind a proxy is spoken to through ureq; one in plain HTTP directly
        let proxy = Proxy::start();
        let endpoint = if through_proxy {
            json!({"name": "up", "url": up.base_url(), "proxy": proxy.url()})
        } else {
            json!({"name": "up", "url": up.base_url()})
        };
        let relay = Relay::start(&upstreams_config(json!([endpoint]), json!({"workers": 4})));
        let ask = ask_stream("count").to_string();
        let mut conn = TcpStream::connect(relay.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            conn,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{ask}",
            ask.len()
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while up.requests().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the request never reached the upstream"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if through_proxy {
            assert!(
                wait_threads_named(relay.pid(), "upstream-call", 1),
                "no upstream-call thread while the upstream withholds its head"
            );
        } else {
            assert_eq!(
                threads_named(relay.pid(), "upstream-call"),
                0,
                "a direct-client stream started a thread"
            );
        }
        head.store(true, Ordering::SeqCst);
        let mut seen = Vec::new();
        read_until(&mut conn, &mut seen, "\"one\"");
        assert!(
            wait_threads_named(relay.pid(), "upstream-call", 0),
            "the upstream-call thread outlived the response head"
        );
        // the stream is still open, on its worker, and ends whole
        end.store(true, Ordering::SeqCst);
        read_until(&mut conn, &mut seen, "[DONE]");
        assert_eq!(
            proxy.seen().len(),
            usize::from(through_proxy),
            "{through_proxy}"
        );
    }
}
