//! Everything else under `/v1/` (issue 12) passes through unchanged: method, path, query,
//! filtered headers, a multipart upload streamed as sent, a binary answer byte for byte; the
//! stored-response routes of the Responses API and Messages' `count_tokens` reach the endpoint
//! that speaks their API; nothing is cached; the gate still applies and the client's key never
//! goes upstream.

use std::io::Read;
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
    assert_eq!(seen.len(), 6, "count_tokens is never cached");
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
    assert_eq!(up.requests().len(), 6);
}
