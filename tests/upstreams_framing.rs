//! How an upstream frames a whole answer or a stream (issue 19's direct client of plain-HTTP
//! endpoints): chunked with extensions and trailers, interim `100`/`103` heads, a body
//! delimited by its length or by the close, each written in small pieces, reach the client as
//! the same JSON or the same events and keep the connection exactly when HTTP/1.1 allows; an
//! answer cut short is a 502 (a stream, an end without `[DONE]`), never stored; a head or body
//! that goes silent is a 504 naming its timeout.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// What the scripted upstream does with one request.
#[derive(Clone)]
struct Step {
    /// The bytes of the answer, written 7 at a time.
    wire: Vec<u8>,
    /// Whether the connection closes after them.
    close: bool,
    /// A pause before the answer (a silent upstream).
    pause: Duration,
}

/// An answer's JSON body for `content`.
fn answer(content: &str) -> String {
    json!({
        "id": "chatcmpl-f", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    })
    .to_string()
}

/// A `200` with `Content-Length` of the whole `body` and only its first `sent` bytes after
/// the head (all of it: a whole answer; fewer: one the upstream cuts short).
fn with_length(body: &str, sent: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body.get(..sent).unwrap_or(body)
    )
}

fn step(wire: impl Into<Vec<u8>>, close: bool) -> Step {
    Step {
        wire: wire.into(),
        close,
        pause: Duration::ZERO,
    }
}

/// An upstream on a bare socket that answers its n-th request (on any connection) with
/// `script[n]`: its URL, the connections it accepted and the requests it read.
fn scripted(script: Vec<Step>) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (accepted, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, r) = (accepted.clone(), requests.clone());
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let (r, script) = (r.clone(), script.clone());
            std::thread::spawn(move || {
                conn.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                while read_raw_request(&mut reader).is_some() {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    let Some(step) = script.get(n) else { return };
                    std::thread::sleep(step.pause);
                    for piece in step.wire.chunks(7) {
                        if conn.write_all(piece).is_err() {
                            return;
                        }
                        conn.flush().unwrap();
                    }
                    if step.close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted, requests)
}

fn ask(relay: &Relay, content: &str) -> Resp {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    post_json(&relay.url("/v1/chat/completions"), &body)
}

fn content(r: &Resp) -> Value {
    r.json()["choices"][0]["message"]["content"].clone()
}

#[test]
fn every_framing_arrives_whole_and_keeps_the_connection_only_when_it_may() {
    let body = answer("chunked");
    let (half, rest) = body.split_at(body.len() / 2);
    let chunked = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x};name=value\r\n{half}\r\n{:X}\r\n{rest}\r\n0\r\nx-trailer: t\r\n\r\n",
        half.len(),
        rest.len()
    );
    let body = answer("interim");
    let interim = format!(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n{}",
        with_length(&body, body.len())
    );
    let until_close = format!(
        "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{}",
        answer("until the close")
    );
    let body = answer("after the close");
    let length = with_length(&body, body.len());
    let (url, accepted, requests) = scripted(vec![
        step(chunked, false),
        step(interim, false),
        step(until_close, true),
        step(length, false),
    ]);
    let relay = Relay::start(&config_json(&url, json!({"cache": {"enabled": false}})));
    for (i, (text, connections)) in [
        ("chunked", 1),
        ("interim", 1),
        ("until the close", 1),
        ("after the close", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let r = ask(&relay, &format!("q{i}"));
        assert_eq!(r.status, 200, "answer {i}: {}", r.body);
        assert_eq!(content(&r), json!(text), "answer {i}");
        assert_eq!(r.json()["usage"]["total_tokens"], 6);
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "answer {i}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

#[test]
fn an_answer_cut_short_is_a_502_and_never_stored() {
    let body = answer("whole");
    let cut = with_length(&body, body.len() / 2);
    let chunk_cut = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
        body.len()
    );
    let whole = with_length(&body, body.len());
    let (url, _, requests) = scripted(vec![
        step(cut, true),
        step(chunk_cut, true),
        step(whole, false),
    ]);
    let dir = TempDir::new();
    let cache = json!({"enabled": true, "dir": dir.path().to_str().unwrap()});
    let relay = Relay::start(&config_json(&url, json!({"cache": cache, "retries": 0})));
    for _ in 0..2 {
        let r = ask(&relay, "same question");
        assert_eq!(r.status, 502, "{}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("Peer disconnected"), "{message}");
    }
    // neither cut answer was stored: the third asking reaches the upstream, the fourth is a hit
    let r = ask(&relay, "same question");
    assert_eq!((r.status, content(&r)), (200, json!("whole")), "{}", r.body);
    let r = ask(&relay, "same question");
    assert_eq!((r.status, content(&r)), (200, json!("whole")), "{}", r.body);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[test]
fn a_silent_head_or_body_is_a_504_naming_its_timeout() {
    let body = answer("late");
    let head_only = with_length(&body, 10);
    let mut silent = step(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string(),
        true,
    );
    silent.pause = Duration::from_millis(1500);
    let (url, _, _) = scripted(vec![silent, step(head_only, false)]);
    let cfg = json!({"cache": {"enabled": false}, "retries": 0,
        "first_byte_timeout_ms": 300, "idle_timeout_ms": 300});
    let relay = Relay::start(&config_json(&url, cfg));
    let r = ask(&relay, "head");
    assert_eq!(r.status, 504, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("timed out"), "{message}");
    let r = ask(&relay, "body");
    assert_eq!(r.status, 504, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("no byte of the answer body for 300 ms (idle_timeout_ms)"),
        "{message}"
    );
}

/// The SSE text of a chat stream of `words` (a chunk each, a finishing chunk, `[DONE]`).
fn sse_text(words: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut text: String = words
        .iter()
        .map(|w| chunk(json!({"content": w}), Value::Null))
        .collect();
    text.push_str(&chunk(json!({}), json!("stop")));
    text.push_str("data: [DONE]\n\n");
    text
}

/// A streamed answer of `words`, chunked: a chunk an event, one with an extension, and a
/// trailer after the last.
fn chunked_stream(words: &[&str]) -> String {
    let mut wire = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for (i, event) in sse_text(words).split_inclusive("\n\n").enumerate() {
        let ext = if i == 0 { ";name=value" } else { "" };
        wire.push_str(&format!("{:x}{ext}\r\n{event}\r\n", event.len()));
    }
    wire.push_str("0\r\nx-trailer: t\r\n\r\n");
    wire
}

/// Streams a question through `relay`; returns the status, the text of the deltas and whether
/// the stream ended cleanly with `[DONE]`.
fn ask_streamed(relay: &Relay, content: &str) -> (u16, String, bool) {
    let body = json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": content}]});
    let r = stream_events(relay.addr(), "/v1/chat/completions", &body);
    let mut text = String::new();
    for event in r.event_texts() {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
    }
    let done = r.event_texts().last() == Some(&"data: [DONE]");
    (r.status, text, r.clean_end && done)
}

#[test]
fn every_framing_of_a_stream_arrives_whole_and_keeps_the_connection_only_when_it_may() {
    let text = sse_text(&["by ", "length"]);
    let length = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    let close = format!(
        "HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n{}",
        sse_text(&["until ", "the ", "close"])
    );
    let (url, accepted, requests) = scripted(vec![
        step(chunked_stream(&["chunked ", "events"]), false),
        step(length, false),
        step(close, true),
        step(chunked_stream(&["after ", "the ", "close"]), false),
    ]);
    let relay = Relay::start(&config_json(&url, json!({"cache": {"enabled": false}})));
    for (i, (text, connections)) in [
        ("chunked events", 1),
        ("by length", 1),
        ("until the close", 1),
        ("after the close", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, got, clean) = ask_streamed(&relay, &format!("q{i}"));
        assert_eq!(
            (status, got.as_str(), clean),
            (200, text, true),
            "stream {i}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "stream {i}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

#[test]
fn a_stream_cut_short_is_never_stored_nor_its_connection_kept() {
    let whole = chunked_stream(&["whole ", "answer"]);
    // the last chunk and the terminator never come: the upstream closes mid-stream
    let cut = whole
        .get(..whole.find("data: [DONE]").unwrap_or(whole.len()))
        .unwrap_or_default()
        .to_string();
    let (url, accepted, requests) = scripted(vec![
        step(cut, true),
        step(whole.clone(), false),
        step(whole, false),
    ]);
    let dir = TempDir::new();
    let cache = json!({"enabled": true, "dir": dir.path().to_str().unwrap()});
    let relay = Relay::start(&config_json(&url, json!({"cache": cache, "retries": 0})));
    let (status, _, clean) = ask_streamed(&relay, "same question");
    assert_eq!(status, 200, "the head went out before the cut");
    assert!(!clean, "the client sees the stream end without [DONE]");
    for _ in 0..2 {
        let (status, got, clean) = ask_streamed(&relay, "same question");
        assert_eq!((status, got.as_str(), clean), (200, "whole answer", true));
    }
    // the cut stream was not stored (the second asking reached the upstream, on a new
    // connection), the whole one was (the third is a hit)
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
