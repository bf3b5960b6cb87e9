//! `/metrics` (issue #6): exact counts by route and status after a known mix of requests,
//! latency histograms (total and relay overhead), upstream errors, and the gauges.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn check(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in:\n{text}");
}

/// Each request's access line (and its metrics) is written just after its response: wait for
/// `n` of them.
fn wait_access_lines(relay: &Relay, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.stderr_text().matches(" access ").count() < n {
        assert!(Instant::now() < deadline, "{n} access lines");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_a_known_mix_of_requests_exactly() {
    let up = Upstream::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if body["model"] == "broken" {
            Reply::json(
                500,
                json!({"error": {"message": "boom", "type": "server_error"}}),
            )
        } else {
            openai_reply(req)
        }
    });
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    for _ in 0..3 {
        assert_eq!(
            post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
            200
        );
    }
    assert_eq!(
        post_json(&relay.url("/chat/completions"), &chat("broken")).status,
        500
    );
    assert_eq!(
        post_raw(&relay.url("/v1/chat/completions"), b"{nope", &[]).status,
        400
    );
    let emb = json!({"model": "e", "input": "x"});
    assert_eq!(post_json(&relay.url("/v1/embeddings"), &emb).status, 200);
    assert_eq!(get(&relay.url("/v1/nothing/here")).status, 404);
    assert_eq!(get(&relay.url("/v2/also/nothing")).status, 404);
    assert_eq!(get(&relay.url("/health")).status, 200);
    let stream = json!({"model": "m", "stream": true, "messages": []});
    assert_eq!(
        stream_events(relay.addr(), "/v1/chat/completions", &stream).status,
        200
    );
    wait_access_lines(&relay, 10);

    let r = get(&relay.url("/metrics"));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    let m = &r.body;
    let chat_route = "route=\"/v1/chat/completions\"";
    check(
        m,
        &format!("llm_relay_requests_total{{{chat_route},status=\"200\"}}"),
        4.0,
    );
    check(
        m,
        &format!("llm_relay_requests_total{{{chat_route},status=\"500\"}}"),
        1.0,
    );
    check(
        m,
        &format!("llm_relay_requests_total{{{chat_route},status=\"400\"}}"),
        1.0,
    );
    check(
        m,
        "llm_relay_requests_total{route=\"/v1/embeddings\",status=\"200\"}",
        1.0,
    );
    check(
        m,
        "llm_relay_requests_total{route=\"other\",status=\"404\"}",
        2.0,
    );
    check(
        m,
        "llm_relay_requests_total{route=\"/health\",status=\"200\"}",
        1.0,
    );
    assert_eq!(
        sample(
            m,
            "llm_relay_requests_total{route=\"/metrics\",status=\"200\"}"
        ),
        None
    );

    check(
        m,
        &format!("llm_relay_request_duration_seconds_count{{{chat_route}}}"),
        6.0,
    );
    check(
        m,
        &format!("llm_relay_request_duration_seconds_bucket{{{chat_route},le=\"+Inf\"}}"),
        6.0,
    );
    // overhead is recorded only for requests that reached the upstream (not the 400)
    check(
        m,
        &format!("llm_relay_overhead_seconds_count{{{chat_route}}}"),
        5.0,
    );
    check(
        m,
        "llm_relay_overhead_seconds_count{route=\"/v1/embeddings\"}",
        1.0,
    );
    // the single `upstream` shorthand is the endpoint named "default"
    check(
        m,
        "llm_relay_upstream_errors_total{endpoint=\"default\"}",
        1.0,
    );
    // six API calls and the pass-through of /v1/nothing/here (issue 12)
    check(
        m,
        "llm_relay_upstream_attempts_total{endpoint=\"default\"}",
        7.0,
    );
    check(m, "llm_relay_upstream_healthy{endpoint=\"default\"}", 1.0);
    // the /metrics request itself is the only one in flight
    check(m, "llm_relay_in_flight_requests", 1.0);
    // /metrics is answered on a front thread: no upstream worker is busy
    check(m, "llm_relay_busy_workers", 0.0);
    check(m, "llm_relay_workers", 32.0);
    check(m, "llm_relay_rate_limited_total", 0.0);
    check(m, "llm_relay_cache_entries", 0.0);
    for family in [
        "llm_relay_cache_requests_total counter",
        "llm_relay_cache_hits_total counter",
        "llm_relay_cache_misses_total counter",
        "llm_relay_cache_bytes gauge",
        "llm_relay_upstream_retries_total counter",
        "llm_relay_request_duration_seconds histogram",
        "llm_relay_overhead_seconds histogram",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family}\n")),
            "{family} in:\n{m}"
        );
    }
}

#[test]
fn unreachable_upstream_counts_as_an_upstream_error() {
    let url = closed_port_url();
    let relay = Relay::start(&config_json(&url, json!({})));
    let chat = json!({"model": "m", "messages": []});
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat).status,
        502
    );
    wait_access_lines(&relay, 1);
    let m = get(&relay.url("/metrics")).body;
    check(
        &m,
        "llm_relay_upstream_errors_total{endpoint=\"default\"}",
        1.0,
    );
    check(
        &m,
        "llm_relay_requests_total{route=\"/v1/chat/completions\",status=\"502\"}",
        1.0,
    );
}

#[test]
fn cache_results_and_size_are_counted() {
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    // the gauge starts from the start-up scan's count, which would overwrite a store made
    // while it ran
    let scanned = relay.wait_for_log_line(Duration::from_secs(30), |l| l.contains("cache scan of"));
    assert!(scanned.is_some(), "no start-up scan was logged");
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "count me"}]});
    for expected in ["MISS", "HIT", "HIT"] {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat);
        assert_eq!(r.header("x-cache"), Some(expected), "{}", r.body);
    }
    let no_store = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat,
        &[("Cache-Control", "no-store")],
    );
    assert_eq!(no_store.header("x-cache"), Some("BYPASS"));
    wait_access_lines(&relay, 4);
    let m = get(&relay.url("/metrics")).body;
    let route = "route=\"/v1/chat/completions\"";
    check(
        &m,
        &format!("llm_relay_cache_requests_total{{{route},result=\"miss\"}}"),
        1.0,
    );
    check(
        &m,
        &format!("llm_relay_cache_requests_total{{{route},result=\"hit\"}}"),
        2.0,
    );
    check(
        &m,
        &format!("llm_relay_cache_requests_total{{{route},result=\"bypass\"}}"),
        1.0,
    );
    check(&m, "llm_relay_cache_entries", 1.0);
}
