//! Routes, error shapes, pass-through, upstream failures (502/504) and the
//! panic hook. (Credentials and logging are in `core_auth.rs`.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[test]
fn health_returns_exact_ok_body() {
    let (up, relay) = setup(json!({}));
    let r = get(&relay.url("/health"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"status":"ok"}"#);
    assert!(up.requests().is_empty(), "health must not call upstream");
}

#[test]
fn post_routes_with_and_without_v1_reach_upstream_path() {
    let (up, relay) = setup(json!({}));
    let cases = [
        (
            "/v1/chat/completions",
            "/v1/chat/completions",
            chat_body("m1"),
            "chat.completion",
        ),
        (
            "/chat/completions",
            "/v1/chat/completions",
            chat_body("m2"),
            "chat.completion",
        ),
        (
            "/v1/completions",
            "/v1/completions",
            json!({"model": "m3", "prompt": "p"}),
            "text_completion",
        ),
        (
            "/completions",
            "/v1/completions",
            json!({"model": "m4", "prompt": "p"}),
            "text_completion",
        ),
        (
            "/v1/embeddings",
            "/v1/embeddings",
            json!({"model": "m5", "input": "x"}),
            "list",
        ),
        (
            "/embeddings",
            "/v1/embeddings",
            json!({"model": "m6", "input": "x"}),
            "list",
        ),
    ];
    for (i, (client_path, up_path, body, object)) in cases.iter().enumerate() {
        let r = post_json(&relay.url(client_path), body);
        assert_eq!(r.status, 200, "{client_path}: {}", r.body);
        assert_eq!(r.json()["object"], *object, "{client_path}: {}", r.body);
        assert_eq!(r.json()["model"], body["model"], "{client_path}");
        let reqs = up.requests();
        assert_eq!(reqs.len(), i + 1, "{client_path}: one upstream call each");
        let seen = &reqs[i];
        assert_eq!(seen.method, "POST", "{client_path}");
        assert_eq!(seen.path, *up_path, "{client_path}");
        assert_eq!(seen.json(), *body, "{client_path}: body must be forwarded");
        let ct = seen.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{client_path}: content-type {ct:?}"
        );
    }
}

#[test]
fn models_merge_upstream_list_and_rule_aliases_without_duplicates() {
    let rules = json!({"model_rules": [
        {"match_model": "fast-alias", "set": {"model": "fixture-model-a"}},
        {"match_model": "fixture-model-b", "set": {"temperature": 0}},
        {"match_model": "fast-alias", "set": {"model": "other"}},
        {"match_model": "default", "set": {"max_tokens": 10}},
    ]});
    let (up, relay) = setup(rules);
    for path in ["/v1/models", "/models"] {
        let r = get(&relay.url(path));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["object"], "list", "{path}: {v}");
        let data = v["data"].as_array().expect("data array");
        let mut ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["fast-alias", "fixture-model-a", "fixture-model-b"],
            "{path}: {v}"
        );
        let alias = data.iter().find(|m| m["id"] == "fast-alias").unwrap();
        assert_eq!(alias["object"], "model", "{path}");
        assert_eq!(alias["owned_by"], "llm-relay", "{path}");
        let upstream_b = data.iter().find(|m| m["id"] == "fixture-model-b").unwrap();
        assert_eq!(
            upstream_b["owned_by"], "fixture",
            "{path}: upstream entry kept as is"
        );
    }
    assert!(up
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.path == "/v1/models"));
}

#[test]
fn unknown_path_is_404_not_found() {
    let (up, relay) = setup(json!({}));
    for (method, path) in [("GET", "/nope"), ("POST", "/chat"), ("GET", "/")] {
        let body = (method == "POST").then_some(br#"{"model":"m"}"#.as_slice());
        let r = request(method, &relay.url(path), &[], body);
        r.assert_error(404, "not_found");
    }
    assert!(up.requests().is_empty());
    // under /v1/ an unknown route is the upstream's to judge (issue 12: pass-through)
    for (method, path) in [("GET", "/v1/nope"), ("POST", "/v1/chat")] {
        let body = (method == "POST").then_some(br#"{"model":"m"}"#.as_slice());
        let r = request(method, &relay.url(path), &[], body);
        let msg = r.assert_error(404, "not_found");
        assert!(msg.starts_with("fixture: no route"), "{msg}");
    }
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn wrong_method_is_405_method_not_allowed() {
    let (up, relay) = setup(json!({}));
    for (method, path, allow) in [
        ("GET", "/v1/chat/completions", "POST"),
        ("GET", "/completions", "POST"),
        ("PUT", "/v1/embeddings", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/health", "GET"),
    ] {
        let body = (method != "GET" && method != "DELETE").then_some(b"{}".as_slice());
        let r = request(method, &relay.url(path), &[], body);
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        r.assert_error(405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "Allow of {method} {path}");
    }
    assert!(up.requests().is_empty());
}

#[test]
fn body_over_max_body_bytes_is_413() {
    let (up, relay) = setup(json!({"max_body_bytes": 256}));
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(2000)}]});
    post_json(&relay.url("/v1/chat/completions"), &big).assert_error(413, "request_too_large");
    assert!(
        up.requests().is_empty(),
        "oversized body must not reach upstream"
    );
    let small = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
    assert_eq!(
        small.status, 200,
        "small body still accepted: {}",
        small.body
    );
}

#[test]
fn invalid_bodies_are_400() {
    let (up, relay) = setup(json!({}));
    let cases: [(&[u8], &str); 6] = [
        (br#"{"model": "m", "messages": ["#, "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b"[1, 2, 3]", "invalid_request"),
        (br#""just a string""#, "invalid_request"),
        (br#"{"messages": []}"#, "invalid_request"),
        (br#"{"model": 5, "messages": []}"#, "invalid_request"),
    ];
    for (body, code) in cases {
        let r = post_raw(&relay.url("/v1/chat/completions"), body, &[]);
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.body
        );
        r.assert_error(400, code);
    }
    assert!(
        up.requests().is_empty(),
        "bad bodies must not reach upstream"
    );
}

#[test]
fn upstream_error_statuses_and_bodies_pass_through_byte_identical() {
    let cases: [(u16, &str); 4] = [
        (429, "{\"error\": {\"message\": \"Rate limit reached\", \"type\": \"requests\", \"code\": \"rate_limit_exceeded\"}}"),
        (400, "{\n  \"error\": {\"message\": \"bad param\", \"type\": \"invalid_request_error\", \"code\": null}\n}\n"),
        (500, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"),
        (401, "{\"error\":{\"message\":\"Incorrect API key\",\"code\":\"invalid_api_key\"}}"),
    ];
    for (status, body) in cases {
        let up = Upstream::start(move |_| {
            Reply::raw(status, &[("Content-Type", "application/json")], body)
        });
        let relay = Relay::start(&config_json(&up.base_url(), json!({})));
        let r = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
        assert_eq!(r.status, status, "body: {}", r.body);
        assert_eq!(r.body, body, "upstream {status} body must pass unchanged");
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
    }
}

#[test]
fn upstream_response_headers_reach_client() {
    let up = Upstream::start(|req| match openai_reply(req) {
        Reply::Raw {
            status,
            mut headers,
            body,
        } => {
            headers.push(("X-Request-Id".into(), "req-abc123".into()));
            headers.push(("OpenAI-Processing-Ms".into(), "42".into()));
            Reply::Raw {
                status,
                headers,
                body,
            }
        }
        other => other,
    });
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-request-id"),
        Some("req-abc123"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("openai-processing-ms"),
        Some("42"),
        "{:?}",
        r.headers
    );
}

#[test]
fn closed_upstream_port_is_502_with_url() {
    let url = closed_port_url();
    let relay = Relay::start(&config_json(&url, json!({"connect_timeout_ms": 2000})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
    let msg = r.assert_error(502, "upstream_unreachable");
    assert!(msg.contains(&url), "message must contain {url}: {msg}");
}

#[test]
fn slow_upstream_first_byte_is_504_quickly() {
    // silent for 60 s: a 504 well before that can only be the 300 ms first-byte timeout
    let up = Upstream::start(|req| Reply::delay(Duration::from_secs(60), openai_reply(req)));
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"first_byte_timeout_ms": 300}),
    ));
    let t0 = Instant::now();
    let r = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
    let took = t0.elapsed();
    let msg = r.assert_error(504, "upstream_timeout");
    assert!(
        msg.contains(&up.base_url()),
        "message must contain {}: {msg}",
        up.base_url()
    );
    assert!(
        took < Duration::from_secs(10),
        "504 took {took:?}, expected ~300 ms"
    );
}

#[test]
fn panic_hook_gives_500_and_single_worker_survives() {
    let up = Upstream::openai();
    let cfg = config_json(&up.base_url(), json!({"workers": 1}));
    let relay = Relay::start_with(&cfg, &[("LLM_RELAY_TEST_HOOKS", "1")], &[]);
    for round in 0..2 {
        let r = get(&relay.url("/__test/panic"));
        r.assert_error(500, "internal_error");
        assert_eq!(r.json()["error"]["type"], "server_error", "round {round}");
        let h = get(&relay.url("/health"));
        assert_eq!(
            (h.status, h.body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "round {round}"
        );
        let c = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
        assert_eq!(c.status, 200, "round {round}: {}", c.body);
    }
}

#[test]
fn panic_hook_is_off_without_env() {
    let (_up, relay) = setup(json!({}));
    get(&relay.url("/__test/panic")).assert_error(404, "not_found");
}
