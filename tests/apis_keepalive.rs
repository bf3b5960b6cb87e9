//! `stream_keepalive_ms` (issue 12): while the upstream has not answered, a streaming client
//! gets SSE comment lines, then the stream itself; a late upstream failure arrives as an error
//! event in the client API's shape (the status is already 200). Ordered by events, not time:
//! the fixture answers only after the client has seen a keep-alive comment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

/// A fixture that holds every answer until `go` is set.
fn held(
    go: Arc<AtomicBool>,
    reply: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
) -> Upstream {
    Upstream::start(move |req| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !go.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        reply(req)
    })
}

#[test]
fn comments_flow_until_the_upstream_answers_then_the_stream() {
    let go = Arc::new(AtomicBool::new(false));
    let up = held(Arc::clone(&go), |req| {
        responses_reply(req).unwrap_or_else(|| openai_reply(req))
    });
    let dir = TempDir::new();
    let cfg = json!({"listen": "127.0.0.1:0", "stream_keepalive_ms": 20,
        "upstreams": [{"url": up.base_url(), "api": "responses"}],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()}});
    let relay = Relay::start(&cfg.to_string());
    let body = json!({"model": "m", "input": "wait for it", "stream": true});
    let raw = read_until_then(relay.addr(), "/v1/responses", &body, ": keepalive\n\n", &go);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let first_comment = raw.find(": keepalive").unwrap();
    let first_event = raw.find("event: response.created").expect(&raw);
    assert!(
        first_comment < first_event,
        "comments come before the stream"
    );
    assert!(raw.contains("event: response.completed"), "{raw}");
    // the stream was complete: the repeat is a hit, with no comments
    let s = stream_events(relay.addr(), "/v1/responses", &body);
    assert_eq!(s.header("x-cache"), Some("HIT"));
    assert!(s.event_texts().iter().all(|e| !e.starts_with(':')));
}

#[test]
fn a_late_upstream_error_is_an_error_event_in_the_api_shape() {
    let go = Arc::new(AtomicBool::new(false));
    let up = held(Arc::clone(&go), |req| {
        if req.path.starts_with("/v1/messages") {
            Reply::json(
                529,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )
        } else {
            Reply::json(
                400,
                json!({"error": {"message": "bad model", "type": "invalid_request_error", "code": null}}),
            )
        }
    });
    let cfg = json!({"listen": "127.0.0.1:0", "stream_keepalive_ms": 20, "retries": 0,
        "upstreams": [{"url": up.base_url(), "api": "responses"},
                      {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": "k"}]});
    let relay = Relay::start(&cfg.to_string());
    let chat =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let raw = read_until_then(
        relay.addr(),
        "/v1/chat/completions",
        &chat,
        ": keepalive\n\n",
        &go,
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("data: {\"error\":"), "{raw}");
    assert!(
        raw.contains("answered 400") && raw.contains("bad model"),
        "{raw}"
    );

    go.store(false, Ordering::SeqCst);
    let msg = json!({"model": "c", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let raw = read_until_then(relay.addr(), "/v1/messages", &msg, ": keepalive\n\n", &go);
    assert!(
        raw.contains("event: error\ndata: {\"error\":{\"message\":"),
        "{raw}"
    );
    assert!(raw.contains("answered 529"), "{raw}");
}
