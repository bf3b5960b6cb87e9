//! The front door (issue 10), the HTTP layer of the vendored tiny_http: requests that are not
//! HTTP/1.x, ambiguous framing (request smuggling), accept() failures, `max_connections`, and
//! trickled heads. Each is answered with an OpenAI-shaped error and a closed connection, never
//! a hang, a leak or a dead listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const SECOND: Duration = Duration::from_secs(1);

fn raw(relay: &Relay, bytes: &[u8]) -> RawReply {
    raw_exchange(relay.addr(), &[bytes], Duration::ZERO, 5 * SECOND)
}

/// The JSON body of a raw reply, checked to be `{"error":{"message","type","code"}}` with a
/// non-empty message; returns the code.
fn error_code(r: &RawReply) -> String {
    let body = r.text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| m.len() > 10), "{r:?}");
    assert!(e["type"].is_string(), "{r:?}");
    e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{r:?}"))
        .to_string()
}

/// Exactly one response came back, and the relay closed the connection.
fn assert_one_answer_then_closed(r: &RawReply, what: &str) {
    assert!(r.closed, "{what}: the connection was left open: {r:?}");
    assert_eq!(
        r.text.matches("\r\nContent-Length:").count()
            + r.text.matches("\r\nTransfer-Encoding:").count(),
        1,
        "{what}: not exactly one answer: {r:?}"
    );
    assert!(
        !r.text.contains("\nHTTP/1."),
        "{what}: a second answer: {r:?}"
    );
}

/// Threads and descriptors of a process, from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    /// tiny_http's connection threads (named `http-conn`; idle ones linger a few seconds).
    conn_threads: usize,
    /// Every other thread (fixed pools).
    other_threads: usize,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let mut u = Usage {
        conn_threads: 0,
        other_threads: 0,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
    };
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap_or_default();
        if comm.trim() == "http-conn" {
            u.conn_threads += 1;
        } else {
            u.other_threads += 1;
        }
    }
    u
}

/// Waits until `f` holds, polling every 50 ms for at most `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn requests_that_are_not_http_1_get_505_and_a_closed_connection() {
    let (up, relay) = setup(json!({}));
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00";
    let cases: &[&[u8]] = &[
        b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
        preface,
        b"GET /health HTTP/3\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/0.9\r\n\r\n",
    ];
    for case in cases {
        let what = String::from_utf8_lossy(case);
        let r = raw(&relay, case);
        assert_eq!(r.status, Some(505), "{what:?} -> {r:?}");
        assert_eq!(error_code(&r), "http_version_not_supported");
        assert_one_answer_then_closed(&r, &what);
    }
    // 200 such connections at once leave threads and descriptors where they were.
    let close = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&relay, close).status, Some(200));
    let before = usage(relay.pid());
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let addr = relay.addr().to_string();
            thread::spawn(move || {
                for _ in 0..10 {
                    let line: &[u8] = if i % 2 == 0 {
                        b"GET /health HTTP/2.0\r\n\r\n"
                    } else {
                        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                    };
                    let r = raw_exchange(&addr, &[line], Duration::ZERO, 5 * SECOND);
                    assert_eq!(r.status, Some(505), "{r:?}");
                    assert!(r.closed, "{r:?}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Connection threads are tiny_http's pool (`http-conn`): idle ones end 5 s after their
    // last connection, and it keeps at most its minimum of 4 whatever the number of
    // connections served. The relay's other threads are fixed pools (still starting up just
    // after `listening on`, so not compared). Before the fix, each of the 200 connections kept
    // its thread and two descriptors for good.
    let mut now = before;
    let settled = eventually(30 * SECOND, || {
        now = usage(relay.pid());
        now.conn_threads <= 4 && now.fds <= before.fds
    });
    assert!(
        settled,
        "before {before:?}, after 200 HTTP/2 connections {now:?}"
    );
    assert_eq!(up.requests().len(), 0);
    assert_eq!(get(&relay.url("/health")).status, 200);
}

#[test]
fn ambiguous_framing_gets_one_answer_and_a_closed_connection() {
    let (up, relay) = setup(json!({}));
    let body = r#"{"model":"m","messages":[]}"#;
    let post = |headers: &str, rest: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             {headers}\r\n{rest}"
        )
    };
    // Each request is followed by a second one that a lenient parser would answer too (the
    // smuggled request).
    let smuggled = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let n = body.len();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            post("Content-Length: abc\r\n", &format!("{body}{smuggled}")),
            400,
            "invalid_content_length",
        ),
        (
            post(
                &format!("Content-Length: {n}, {n}\r\n"),
                &format!("{body}{smuggled}"),
            ),
            400,
            "invalid_content_length",
        ),
        (
            post(
                &format!("Content-Length: +{n}\r\n"),
                &format!("{body}{smuggled}"),
            ),
            400,
            "invalid_content_length",
        ),
        (
            post(
                &format!("Content-Length: {n}\r\nContent-Length: 0\r\n"),
                &format!("{body}{smuggled}"),
            ),
            400,
            "invalid_content_length",
        ),
        (
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
            "conflicting_framing",
        ),
        (
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
            "conflicting_framing",
        ),
        (
            post(
                "Transfer-Encoding: gzip, chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
            "invalid_transfer_encoding",
        ),
        (
            post(
                "Transfer-Encoding: chunked, identity\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
            "invalid_transfer_encoding",
        ),
        (
            post(
                "Transfer-Encoding: xchunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            501,
            "unsupported_transfer_encoding",
        ),
        (
            format!(
                "POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n\
                 0\r\n\r\n{smuggled}"
            ),
            400,
            "invalid_transfer_encoding",
        ),
        (
            post(
                &format!("Content-Length: {n}\r\nX-Folded: a\r\n b\r\n"),
                &format!("{body}{smuggled}"),
            ),
            400,
            "invalid_header",
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello{smuggled}"),
            400,
            "invalid_header",
        ),
    ];
    for (request, status, code) in &cases {
        let r = raw(&relay, request.as_bytes());
        assert_eq!(r.status, Some(*status), "{request:?} -> {r:?}");
        assert_eq!(error_code(&r), *code, "{request:?}");
        assert_one_answer_then_closed(&r, request);
    }
    assert_eq!(
        up.requests().len(),
        0,
        "a refused request reached the upstream"
    );
    // A well-framed chunked body is still fine.
    let chunked = post(
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        &format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
    );
    assert_eq!(raw(&relay, chunked.as_bytes()).status, Some(200));
}

#[test]
fn errors_of_the_http_layer_are_openai_json() {
    let (_up, relay) = setup(json!({"client_timeout_ms": 1000}));
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(64 * 1024));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"NOT A REQUEST LINE\r\n\r\n".to_vec(), 400),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: \xff\r\n\r\n".to_vec(),
            400,
        ),
        (long.into_bytes(), 431),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: br\r\n\r\n".to_vec(),
            501,
        ),
        (b"GET /health HTTP/2.0\r\n\r\n".to_vec(), 505),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
            413,
        ),
    ];
    for (bytes, status) in &cases {
        let r = raw(&relay, bytes);
        assert_eq!(r.status, Some(*status), "{r:?}");
        error_code(&r);
    }
    // A head trickled past client_timeout_ms: 408, with a JSON body too.
    let r = raw_exchange(
        relay.addr(),
        &[
            b"GET /health HTTP/1.1\r\n",
            b"Host: x\r\n",
            b"X-A: b\r\n",
            b"\r\n",
        ],
        Duration::from_millis(600),
        10 * SECOND,
    );
    assert_eq!(r.status, Some(408), "{r:?}");
    assert_eq!(error_code(&r), "request_timeout");
}

/// Sends a keep-alive `GET /health` on a new connection and returns it once answered 200.
fn served_connection(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    s
}

#[test]
fn connections_beyond_max_connections_get_a_503_and_the_relay_recovers() {
    let (_up, relay) = setup(json!({"max_connections": 4}));
    let held: Vec<TcpStream> = (0..4).map(|_| served_connection(relay.addr())).collect();
    let r = raw(&relay, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, Some(503), "{r:?}");
    assert_eq!(error_code(&r), "too_many_connections");
    assert!(r.text.contains("Retry-After: 1"), "{r:?}");
    assert!(r.closed);
    drop(held);
    let back = eventually(10 * SECOND, || {
        raw(
            &relay,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .status
            == Some(200)
    });
    assert!(back, "the relay did not take connections again");
    assert!(relay
        .wait_for_log_line(5 * SECOND, |l| l.contains("max_connections limit"))
        .is_some());
}

#[test]
fn accept_errors_do_not_end_the_listener() {
    let (_up, relay) = setup(json!({}));
    let close = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let pid = relay.pid();
    // The descriptor limit leaves exactly four free numbers below it (descriptors take the
    // lowest free number): two served connections (two descriptors each) take them, and the
    // next accept() fails with EMFILE for as long as those two stay open.
    let open_fds = || -> Vec<u64> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .collect()
    };
    let mut before = open_fds();
    let settled = eventually(10 * SECOND, || {
        thread::sleep(Duration::from_millis(200));
        let now = open_fds();
        let same = now.len() == before.len();
        before = now;
        same
    });
    assert!(settled, "the relay's descriptors did not settle");
    let limit = (0..)
        .filter(|n| !before.contains(n))
        .nth(3)
        .map(|fourth_free| fourth_free + 1)
        .unwrap();
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .expect("run prlimit");
    assert!(out.status.success(), "{out:?}");
    let held: Vec<TcpStream> = (0..2).map(|_| served_connection(relay.addr())).collect();
    let mut waiting = TcpStream::connect(relay.addr()).unwrap();
    waiting.write_all(close).unwrap();
    let logged =
        relay.wait_for_log_line(10 * SECOND, |l| l.contains("accepting a connection failed"));
    assert!(logged.is_some(), "no accept error was logged");
    // A burst of connections meanwhile: each fails to be accepted, none is reported apart.
    let burst: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(relay.addr()).unwrap())
        .collect();
    drop(burst);
    // Once descriptors are free again, the waiting client is served.
    drop(held);
    waiting.set_read_timeout(Some(30 * SECOND)).unwrap();
    let mut buf = [0u8; 512];
    let n = waiting.read(&mut buf).unwrap_or(0);
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the relay stopped serving: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The burst still queued in the backlog takes descriptors for a moment (a connection
    // refused meanwhile gets 503): the listener goes on, and serves again once they are gone.
    assert!(
        eventually(30 * SECOND, || raw(&relay, close).status == Some(200)),
        "the relay did not serve again once descriptors were free"
    );
    let log = relay.stderr_text();
    assert!(!log.contains("panic"), "{log}");
    let reports = log.matches("accepting a connection failed").count();
    assert!(
        reports <= 3,
        "accept errors are not rate-limited: {reports} lines"
    );
}

#[test]
fn trickling_heads_do_not_delay_health_or_cache_hits() {
    let up = Upstream::start(|req| echo_reply(req, Duration::ZERO));
    let (_dir, relay) = cached_relay(&up);
    let url = relay.url("/v1/chat/completions");
    assert_eq!(
        post_json(&url, &ask("warm")).header("x-cache"),
        Some("MISS")
    );
    // 200 clients send part of a head and stall (client_timeout_ms is 30 s).
    let trickling: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(relay.addr()).unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Everyone else is answered while all 200 are still waiting for theirs.
    for _ in 0..20 {
        assert_eq!(get(&relay.url("/health")).status, 200);
        assert_eq!(post_json(&url, &ask("warm")).header("x-cache"), Some("HIT"));
    }
    for mut s in trickling {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a trickling client was answered or closed first: {other:?}"),
        }
    }
}
