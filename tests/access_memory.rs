//! Memory bounded by bytes (issue 10): JSON whose parse would cost more than a small multiple
//! of the body is refused before it is parsed (413 `json_too_dense`), and request bodies in
//! flight share the `max_body_bytes_in_flight` budget (beyond it: 503 with `Retry-After`, or
//! 413 when one request alone needs more than the whole budget).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[test]
fn dense_json_is_refused_before_parsing_and_text_of_the_same_size_is_not() {
    let (up, relay) = setup(json!({}));
    // 4 MB of `0,`: ~100 MB as serde_json values, 25 times the body.
    let zeros = format!(
        r#"{{"model":"m","messages":[],"logit_bias_ids":[{}0]}}"#,
        "0,".repeat(2_000_000)
    );
    let r = post_raw(
        &relay.url("/v1/chat/completions"),
        zeros.as_bytes(),
        &[("Content-Type", "application/json")],
    );
    let msg = r.assert_error(413, "json_too_dense");
    assert!(msg.contains("values"), "{msg}");
    assert!(up.requests().is_empty(), "refused before any upstream call");

    let text =
        json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4_000_000)}]});
    let r = post_json(&relay.url("/v1/chat/completions"), &text);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// An upstream that holds every answer until `release` is called.
struct HeldUpstream {
    up: Upstream,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldUpstream {
    fn start() -> HeldUpstream {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = Arc::clone(&gate);
        let up = Upstream::start(move |req| {
            let (open, cv) = &*g;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            openai_reply(req)
        });
        HeldUpstream { up, gate }
    }

    fn release(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Waits until `n` requests have reached the upstream.
    fn wait_requests(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.up.requests().len() < n {
            assert!(
                Instant::now() < until,
                "the upstream never saw {n} requests"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn bodies_in_flight_share_one_budget_503_beyond_it_and_413_above_it() {
    let held = HeldUpstream::start();
    // 2 MiB: a 150 KB text body takes ~600 KB (four copies of its bytes) while relayed.
    let cfg = config_json(
        &held.up.base_url(),
        json!({"max_body_bytes_in_flight": 2 * 1024 * 1024}),
    );
    let relay = Relay::start(&cfg);
    let body = |tag: usize| json!({"model": "m", "messages": [{"role": "user", "content": format!("{tag}{}", "x".repeat(150_000))}]});
    let url = relay.url("/v1/chat/completions");
    let first: Vec<_> = (0..3)
        .map(|i| {
            let (url, b) = (url.clone(), body(i));
            std::thread::spawn(move || post_json(&url, &b))
        })
        .collect();
    held.wait_requests(3); // three bodies (~1.8 MB) held while their calls wait upstream

    let r = post_json(&url, &body(9));
    r.assert_error(503, "relay_busy");
    assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
    assert!(r.body.contains("max_body_bytes_in_flight"), "{}", r.body);
    // The probes and small requests need no body budget and still answer.
    assert_eq!(get(&relay.url("/health")).status, 200);

    let huge =
        json!({"model": "m", "messages": [{"role": "user", "content": "y".repeat(600_000)}]});
    post_json(&url, &huge).assert_error(413, "request_too_large");

    held.release();
    for t in first {
        assert_eq!(t.join().unwrap().status, 200);
    }
    assert_eq!(
        post_json(&url, &body(10)).status,
        200,
        "the budget is free again"
    );
}

/// `cache.max_entry_bytes`: a larger answer is relayed whole but not stored, and the response
/// says so (`X-Relay-Cache: skip-too-large`; a stream, whose head is sent first, ends with the
/// same words as an SSE comment). Smaller answers are stored as before.
#[test]
fn answers_over_max_entry_bytes_are_relayed_whole_but_not_stored() {
    let up = Upstream::start(|req| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let big = body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("big");
        echo_reply_padded(req, Duration::ZERO, if big { 10_000 } else { 0 })
    });
    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({"max_entry_bytes": 4096}),
        json!({}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");

    for _ in 0..2 {
        let r = post_json(&url, &ask("big one"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-cache"), Some("MISS"));
        assert_eq!(r.header("x-relay-cache"), Some("skip-too-large"));
        assert_eq!(answer_text(&r.body), echo_text("big one"), "relayed whole");
    }
    for _ in 0..2 {
        let s = stream_events(relay.addr(), "/v1/chat/completions", &ask_stream("big two"));
        assert_eq!(s.status, 200);
        assert!(s.clean_end);
        assert_eq!(s.header("x-cache"), Some("MISS"));
        assert_eq!(answer_text(&s.body), echo_text("big two"), "relayed whole");
        assert!(s.body.contains("data: [DONE]"), "{}", s.body);
        assert!(
            s.body.contains(": X-Relay-Cache: skip-too-large"),
            "{}",
            s.body
        );
    }
    assert_eq!(
        up.requests().len(),
        4,
        "nothing was stored, every repeat went upstream"
    );

    let small = post_json(&url, &ask("small"));
    assert_eq!(small.header("x-relay-cache"), None);
    let again = post_json(&url, &ask("small"));
    assert_eq!(
        again.header("x-cache"),
        Some("HIT"),
        "small answers are stored"
    );
    assert_eq!(up.requests().len(), 5);
}

/// The memory tier is bounded in bytes (`cache.memory_bytes`), not only in entries.
#[test]
fn the_memory_tier_holds_at_most_memory_bytes() {
    let up = Upstream::start(|req| echo_reply_padded(req, Duration::ZERO, 1_000));
    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({"memory_bytes": 3_000, "memory_items": 100}),
        json!({}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");
    for i in 0..6 {
        let q = ask(&format!("question {i}"));
        assert_eq!(post_json(&url, &q).status, 200);
        assert_eq!(post_json(&url, &q).header("x-cache"), Some("HIT"));
    }
    let stats = get(&relay.url("/cache/stats")).json();
    let bytes = stats["memory_bytes"]
        .as_u64()
        .expect("memory_bytes in stats");
    let entries = stats["memory_entries"].as_u64().unwrap();
    assert!(bytes > 0 && bytes <= 3_000, "{stats}");
    assert!((1..6).contains(&entries), "{stats}");
    assert_eq!(stats["entries"], 6, "all six stay on disk: {stats}");
}
