//! Everything else under `/v1/` (issue 12) passes through unchanged: method, path, query,
//! filtered headers, a multipart upload streamed as sent, a binary answer byte for byte; the
//! stored-response routes of the Responses API and Messages' `count_tokens` reach the endpoint
//! that speaks their API; nothing is cached; the gate still applies and the client's key never
//! goes upstream. An upstream never receives a cut body as complete (too large, too slow, or
//! cut by the client: the upstream request is aborted, and the endpoint's health is untouched),
//! and an event-stream answer reaches the client event by event.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// 256 KiB of every byte value: an audio-like binary answer.
fn binary() -> Vec<u8> {
    (0..256 * 1024).map(|i| (i % 251) as u8).collect()
}

fn relay_for(up: &Upstream, dir: &TempDir, extra: Value) -> Relay {
    let mut cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "openai", "url": up.base_url(), "api": "responses", "api_key": "sk-upstream"},
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Relay::start(&cfg.to_string())
}

/// Sends a request and reads the answer's bytes.
fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = match body {
        Some(b) => agent().run(req.body(b.to_vec()).unwrap()),
        None => agent().run(req.body(()).unwrap()),
    }
    .unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut bytes = Vec::new();
    r.into_body().into_reader().read_to_end(&mut bytes).unwrap();
    (status, headers, bytes)
}

#[test]
fn uploads_and_binary_answers_pass_unchanged() {
    let audio = binary();
    let answer = audio.clone();
    let up = Upstream::start(move |req| match req.path.as_str() {
        "/v1/audio/speech" => Reply::raw(200, &[("Content-Type", "audio/mpeg")], answer.clone()),
        _ => Reply::json(
            200,
            json!({"id": "file-1", "object": "file", "bytes": req.body.len()}),
        ),
    });
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({}));

    let mut upload = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    upload.extend_from_slice(&binary());
    upload.extend_from_slice(b"\r\n--XyZ--\r\n");
    let ct = "multipart/form-data; boundary=XyZ";
    for _ in 0..2 {
        let url = relay.url("/v1/files?purpose=batch&x=%20y");
        let (status, headers, body) = send(
            "POST",
            &url,
            &[("content-type", ct), ("openai-beta", "assistants=v2")],
            Some(&upload),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(
            find_header(&headers, "x-cache").is_none(),
            "pass-through is never cached"
        );
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "both went upstream");
    let first = &seen[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/v1/files?purpose=batch&x=%20y")
    );
    assert_eq!(first.header("content-type"), Some(ct));
    assert_eq!(first.header("openai-beta"), Some("assistants=v2"));
    assert_eq!(first.header("authorization"), Some("Bearer sk-upstream"));
    assert!(first.body == upload, "the upload arrived byte for byte");

    let (status, headers, body) = send(
        "POST",
        &relay.url("/v1/audio/speech"),
        &[("content-type", "application/json")],
        Some(br#"{"model":"tts-1","input":"hi","voice":"alloy"}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(find_header(&headers, "content-type"), Some("audio/mpeg"));
    assert!(body == audio, "binary answer intact ({} bytes)", body.len());

    // a method the upstream client cannot send is the relay's 405, not an upstream failure
    let before = up.requests().len();
    let head = b"QUERY /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = raw_exchange(
        relay.addr(),
        &[head],
        Duration::ZERO,
        Duration::from_secs(10),
    );
    assert_eq!(r.status, Some(405), "{}", r.text);
    assert!(
        r.text
            .contains("Allow: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"),
        "{}",
        r.text
    );
    assert_eq!(up.requests().len(), before);
}

#[test]
fn stored_responses_and_count_tokens_reach_the_endpoint_of_their_api() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({"auth": {"keys": ["relay-client-key"]}}));
    let key = [("authorization", "Bearer relay-client-key")];
    // made through the relay by this key, so the key may reach it (access_objects)
    let made = post_json_with(
        &relay.url("/v1/responses"),
        &json!({"model": "gpt-x", "input": "hi"}),
        &key,
    );
    assert_eq!(made.json()["id"], "resp_fixture1", "{}", made.body);
    let cases = [
        ("GET", "/v1/responses/resp_fixture1", "response"),
        (
            "GET",
            "/v1/responses/resp_fixture1/input_items?limit=5",
            "list",
        ),
        ("POST", "/v1/responses/resp_fixture1/cancel", "response"),
        ("DELETE", "/v1/responses/resp_fixture1", "response"),
    ];
    for (method, path, object) in cases {
        let body = (method == "POST").then_some(&b""[..]);
        let (status, _, body) = send(method, &relay.url(path), &key, body);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, v["object"].as_str()),
            (200, Some(object)),
            "{method} {path}: {v}"
        );
        let seen = up.requests().pop().unwrap();
        assert_eq!((seen.method.as_str(), seen.path.as_str()), (method, path));
        assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream"));
    }
    let count = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let r = post_json_with(
            &relay.url("/v1/messages/count_tokens"),
            &count,
            &[("x-api-key", "relay-client-key")],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({"input_tokens": 12}));
        assert_eq!(r.header("x-cache"), None);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 7, "count_tokens is never cached");
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert!(
        seen.iter()
            .all(|r| !format!("{r:?}").contains("relay-client-key")),
        "client key leaked upstream"
    );

    // the gate applies: no key, no pass-through, and errors take the route's API shape
    let (status, _, body) = send("GET", &relay.url("/v1/models/fixture-model-a"), &[], None);
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "invalid_api_key"
    );
    let r = post_json(&relay.url("/v1/messages/count_tokens"), &count);
    assert_eq!((r.status, r.json()["type"].as_str()), (401, Some("error")));
    assert_eq!(up.requests().len(), 7);
}

/// How [`chunked_upload`] ends its body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BodyEnd {
    /// The terminating zero-length chunk.
    Whole,
    /// Nothing more: the connection stays open, silent.
    Stall,
    /// The client closes its side in the middle of a chunk.
    Close,
}

/// POSTs `chunks` as a chunked body to `path` over raw TCP, ends the body as `end` says, and
/// returns the answer's text: read until the relay closes, or (a stalled body) until the
/// answer's JSON body has arrived.
fn chunked_upload(addr: &str, path: &str, chunks: &[Vec<u8>], end: BodyEnd) -> String {
    let mut s = TcpStream::connect(addr).expect("connect relay");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut sent = s.write_all(head.as_bytes());
    for c in chunks {
        if sent.is_ok() {
            sent = s.write_all(format!("{:x}\r\n", c.len()).as_bytes());
            sent = sent.and_then(|()| s.write_all(c));
            sent = sent.and_then(|()| s.write_all(b"\r\n"));
        }
    }
    match end {
        BodyEnd::Whole => drop(s.write_all(b"0\r\n\r\n")),
        BodyEnd::Stall => {}
        BodyEnd::Close => {
            // mid-chunk: a chunk announced whole, a few of its bytes, then the close
            let _ = s.write_all(b"2000\r\npartial");
            let _ = s.shutdown(Shutdown::Write);
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got);
        if end == BodyEnd::Stall && text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer to {path} ({end:?}): {e}; so far: {text}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.get(9..12).and_then(|c| c.parse().ok())
}

/// The JSON body of a raw answer (after its head).
fn json_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// `/ready` is 200 and every endpoint healthy: with `fail_threshold` 1 and a long cooldown, one
/// failure counted against an endpoint would show here.
fn assert_all_healthy(relay: &Relay) {
    let r = get(&relay.url("/ready"));
    assert_eq!(r.status, 200, "{}", r.body);
    let ups = r.json()["upstreams"].as_array().unwrap().clone();
    assert!(
        !ups.is_empty() && ups.iter().all(|u| u["healthy"] == true),
        "{}",
        r.body
    );
}

#[test]
fn a_body_too_large_slow_or_cut_never_reaches_the_upstream_as_complete() {
    let up = Upstream::start(|req| {
        Reply::json(
            200,
            json!({"id": "file-1", "object": "file", "bytes": req.body.len()}),
        )
    });
    let dir = TempDir::new();
    let relay = relay_for(
        &up,
        &dir,
        json!({"max_body_bytes": 64 * 1024, "client_timeout_ms": 1500,
               "fail_threshold": 1, "cooldown_ms": 600_000}),
    );
    let chunk = |i: usize| -> Vec<u8> { (0..8192).map(|j| ((i * 7 + j) % 251) as u8).collect() };

    // under the limit: the upstream gets the whole body, byte for byte
    let chunks: Vec<Vec<u8>> = (0..7).map(chunk).collect();
    let answer = chunked_upload(relay.addr(), "/v1/files", &chunks, BodyEnd::Whole);
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    let seen = up.only_request();
    assert!(
        seen.body == chunks.concat(),
        "{} bytes arrived",
        seen.body.len()
    );
    assert!(up.aborted().is_empty());

    // past the limit: 413 in the route's API shape, and the upstream saw an aborted request
    let chunks: Vec<Vec<u8>> = (0..12).map(chunk).collect();
    let cases = [
        ("/v1/files", BodyEnd::Whole),
        ("/v1/audio/transcriptions", BodyEnd::Whole),
        ("/v1/files", BodyEnd::Stall),
        ("/v1/files", BodyEnd::Close),
    ];
    for (n, (path, end)) in cases.into_iter().enumerate() {
        let chunks = if end == BodyEnd::Whole {
            &chunks[..]
        } else {
            &chunks[..2]
        };
        let answer = chunked_upload(relay.addr(), path, chunks, end);
        match end {
            BodyEnd::Whole => {
                assert_eq!(status_of(&answer), Some(413), "{answer}");
                assert_eq!(json_of(&answer)["error"]["code"], "request_too_large");
            }
            BodyEnd::Stall => {
                assert_eq!(status_of(&answer), Some(408), "{answer}");
                assert_eq!(json_of(&answer)["error"]["code"], "request_timeout");
            }
            // nobody reads an answer to a client that left; the upstream's side is the point
            BodyEnd::Close => {}
        }
        wait_until(
            Duration::from_secs(20),
            "the upstream sees the request aborted",
            || up.aborted().len() > n,
        );
        let cut = &up.aborted()[n];
        assert_eq!(cut.path, path.to_string());
        assert!(cut.body.len() <= 64 * 1024, "{} bytes", cut.body.len());
        assert_eq!(
            up.requests().len(),
            1,
            "no further complete request ({end:?})"
        );
    }

    // count_tokens reads its body to find the model: past the limit it is refused before any
    // upstream work, in Anthropic's shape
    let big =
        json!({"model": "claude-x", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let r = post_json(&relay.url("/v1/messages/count_tokens"), &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        (
            r.json()["type"].as_str(),
            r.json()["error"]["type"].as_str()
        ),
        (Some("error"), Some("request_too_large")),
        "{}",
        r.body
    );
    assert_eq!(up.requests().len(), 1);

    // a Content-Length body cut by the client: the upstream gets fewer bytes than announced
    let mut s = TcpStream::connect(relay.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&chunk(0)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert_eq!(status_of(&answer), Some(400), "{answer}");
    wait_until(
        Duration::from_secs(20),
        "the upstream sees the request aborted",
        || up.aborted().len() == cases.len() + 1,
    );
    assert_eq!(up.aborted().last().unwrap().body, chunk(0));
    assert_eq!(up.requests().len(), 1);
    assert_all_healthy(&relay);
}

#[test]
fn an_event_stream_answer_reaches_the_client_event_by_event() {
    let events = [
        "event: thread.run.created\ndata: {\"id\":\"run_1\",\"object\":\"thread.run\"}\n\n",
        "event: thread.message.delta\ndata: {\"id\":\"msg_1\",\"delta\":{}}\n\n",
        "event: done\ndata: [DONE]\n\n",
    ];
    let go = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&go);
    let up = Upstream::start(move |req| match req.path.as_str() {
        "/v1/threads/thread_1/runs" => Reply::SseGated {
            first: vec![events[0].to_string()],
            gate: Arc::clone(&gate),
            rest: events[1..].iter().map(|e| e.to_string()).collect(),
        },
        // one event that never ends: 1 MiB without a newline
        _ => Reply::sse(vec![(
            Duration::ZERO,
            format!("data: {}", "x".repeat(1 << 20)),
        )]),
    });
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({"max_event_bytes": 65536}));

    // the fixture sends the rest only once the client holds the first event
    let body = json!({"assistant_id": "asst_1", "stream": true});
    let answer = read_until_then(
        relay.addr(),
        "/v1/threads/thread_1/runs",
        &body,
        "thread.run.created",
        &go,
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("x-request-id: req_gated_stream"), "{head}");
    for event in events {
        assert!(answer.contains(event), "{event:?} unchanged in {answer}");
    }
    assert!(answer.ends_with("0\r\n\r\n"), "a clean end: {answer}");
    assert!(!answer.contains("error"), "{answer}");
    assert_eq!(up.requests()[0].json(), body);

    // an event past max_event_bytes is cut, with the API's error event, not held in memory
    let r = stream_events(relay.addr(), "/v1/threads/thread_2/runs", &body);
    assert_eq!(r.status, 200);
    assert!(r.clean_end);
    assert!(r.body.len() < 64 * 1024, "{} bytes relayed", r.body.len());
    assert!(
        r.body.contains("upstream_stream_interrupted")
            && r.body.contains("max_event_bytes (65536 bytes)"),
        "{}",
        r.body
    );
}

/// A pass-through `GET` on a raw keep-alive connection, read until the relay closes it (or a
/// 10 s hang guard passes).
fn raw_get(relay: &Relay, path: &str) -> RawReply {
    let head = format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n");
    raw_exchange(
        relay.addr(),
        &[head.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(10),
    )
}

/// The sum of `llm_relay_upstream_errors_total` over the endpoints.
fn upstream_errors(relay: &Relay) -> u64 {
    get(&relay.url("/metrics"))
        .body
        .lines()
        .filter(|l| l.starts_with("llm_relay_upstream_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn an_upstream_silent_after_its_head_cuts_the_client_answer_and_counts_a_failure() {
    // 1000 bytes announced, 100 sent, then silence with the connection open
    let body = "abcdefghij".repeat(100);
    let never = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&never);
    let up = Upstream::start(move |req| {
        let reply = Reply::raw(200, &[("Content-Type", "application/octet-stream")], &*body);
        match req.path.as_str() {
            "/v1/files/file_len/content" => Reply::stall(reply, 100, false, &gate),
            "/v1/files/file_chunked/content" => Reply::stall(reply, 100, true, &gate),
            _ => Reply::SseGated {
                first: vec!["event: thread.run.created\ndata: {\"id\":\"run_1\"}\n\n".into()],
                gate: Arc::clone(&gate),
                rest: vec!["event: done\ndata: [DONE]\n\n".into()],
            },
        }
    });
    let dir = TempDir::new();
    let relay = relay_for(&up, &dir, json!({"idle_timeout_ms": 500}));
    assert_eq!(upstream_errors(&relay), 0);

    // Content-Length: the client gets fewer bytes than announced, then the connection closes
    let r = raw_get(&relay, "/v1/files/file_len/content");
    assert_eq!(r.status, Some(200), "{}", r.text);
    assert!(r.closed, "the relay must close the connection: {}", r.text);
    let (head, got) = r.text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert_eq!(got, "abcdefghij".repeat(10), "the 100 bytes sent, no more");

    // chunked: no terminating chunk, then the connection closes
    let r = raw_get(&relay, "/v1/files/file_chunked/content");
    assert_eq!(r.status, Some(200), "{}", r.text);
    assert!(r.closed, "the relay must close the connection: {}", r.text);
    assert!(
        r.text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        r.text
    );
    assert!(r.text.contains(&"abcdefghij".repeat(10)), "{}", r.text);
    assert!(
        !r.text.ends_with("0\r\n\r\n"),
        "a cut answer, not a clean end: {}",
        r.text
    );

    // an event stream: the API's error event naming the phase, then the end
    let body = json!({"assistant_id": "asst_1", "stream": true});
    let r = stream_events(relay.addr(), "/v1/threads/thread_1/runs", &body);
    assert_eq!(r.status, 200);
    assert!(r.clean_end, "{}", r.body);
    assert!(r.body.contains("thread.run.created"), "{}", r.body);
    assert!(
        r.body.contains("upstream_stream_interrupted")
            && r.body.contains("no byte of the answer body for 500 ms"),
        "{}",
        r.body
    );
    assert_eq!(upstream_errors(&relay), 3);
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn an_upstream_that_stops_reading_an_upload_is_a_504_naming_the_phase() {
    // An endpoint that reads the request head, then nothing more, with the connection open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            held.push(conn); // open, unread, until the test process ends
        }
    });
    let relay = Relay::start(
        &json!({
            "listen": "127.0.0.1:0",
            "upstreams": [{"name": "deaf", "url": upstream_url, "api_key": "sk-upstream"}],
            "idle_timeout_ms": 500,
            "max_body_bytes": 256 * 1024 * 1024,
        })
        .to_string(),
    );
    // far more than the sockets between relay and endpoint can buffer
    let size: usize = 128 * 1024 * 1024;
    let mut client = TcpStream::connect(relay.addr()).unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: relay\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\n\r\n"
    );
    client.write_all(head.as_bytes()).unwrap();
    let mut writer = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..size / chunk.len() {
            if writer.write_all(&chunk).is_err() {
                return; // the relay answered and closed
            }
        }
    });
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(504), "{answer}");
    // the first answer only: what follows on the connection is not this test's subject
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .unwrap();
    let first: Value = serde_json::from_str(&rest[..length]).unwrap();
    let err = &first["error"];
    assert_eq!(err["code"], "upstream_timeout", "{answer}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("accepted no byte of the request for 500 ms"),
        "{message}"
    );
    let ready = get(&relay.url("/metrics")).body;
    assert!(
        ready.contains("llm_relay_upstream_errors_total{endpoint=\"deaf\"} 1"),
        "{ready}"
    );
}

#[test]
fn slow_uploads_hold_at_most_half_the_workers_so_a_miss_still_finds_one() {
    let up = Upstream::start(|req| {
        if req.path.ends_with("/responses") {
            Reply::json(
                200,
                json!({"id": "resp_1", "object": "response", "status": "completed",
                "output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}),
            )
        } else {
            Reply::json(
                200,
                json!({"id": "file-1", "object": "file", "bytes": req.body.len()}),
            )
        }
    });
    let dir = TempDir::new();
    // two workers: one may carry an upload, the other stays for everything else
    let relay = relay_for(
        &up,
        &dir,
        json!({"workers": 2, "client_timeout_ms": 60_000}),
    );
    // an upload whose client sends its head and one chunk, then nothing: it holds its worker
    let stall = || {
        let mut s = TcpStream::connect(relay.addr()).unwrap();
        s.write_all(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
        s
    };
    // whether the relay has answered on `s` (a stalled upload is not answered while it waits)
    let answered = |s: &TcpStream| {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let got = !matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).unwrap();
        got
    };
    // a second upload is refused at once with 503 and Retry-After. Polled: until the relay has
    // read the stalled upload's head a second one is simply served, and if the second one's
    // head is read first, the stalled one is the one refused (then it is sent again)
    let mut stalled = stall();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "never refused");
        let answer = chunked_upload(
            relay.addr(),
            "/v1/files",
            &[b"second".to_vec()],
            BodyEnd::Whole,
        );
        if answered(&stalled) {
            stalled = stall();
            continue;
        }
        if status_of(&answer) == Some(503) {
            break answer;
        }
        assert_eq!(status_of(&answer), Some(200), "{answer}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    let err = &json_of(&refused)["error"];
    assert_eq!(err["code"], "relay_busy", "{refused}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("uploads"),
        "{refused}"
    );
    // while the upload still holds its worker, a request for the other worker is answered
    let r = post_json(
        &relay.url("/v1/responses"),
        &json!({"model": "m", "input": "hi"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(stalled);
}
