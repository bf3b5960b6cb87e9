//! Credentials and logging: `api_key` / `api_key_env` sent upstream as a
//! Bearer token, the client's Authorization dropped unless `forward_auth`,
//! forwarded client headers, keys and bodies never logged, and the access
//! log line.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[test]
fn api_key_sent_as_bearer_and_client_authorization_not_forwarded() {
    let (up, relay) = setup(json!({"api_key": "sk-relay-secret-1234"}));
    let headers = [
        ("Authorization", "Bearer client-token-xyz"),
        ("X-Custom-Header", "hello"),
        ("Accept-Encoding", "gzip"),
    ];
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat_body("m"),
        &headers,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.only_request();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-relay-secret-1234")
    );
    let auths: Vec<_> = seen
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(
        auths.len(),
        1,
        "exactly one Authorization upstream: {auths:?}"
    );
    assert_eq!(
        seen.header("x-custom-header"),
        Some("hello"),
        "custom headers are forwarded"
    );
    assert_eq!(
        seen.header("host"),
        Some(up.addr().as_str()),
        "Host must be the upstream's"
    );
    assert!(
        !seen
            .header("accept-encoding")
            .unwrap_or("")
            .contains("gzip"),
        "client Accept-Encoding must not be forwarded: {:?}",
        seen.headers
    );
}

#[test]
fn no_client_credential_header_of_any_scheme_reaches_the_upstream_without_forward_auth() {
    let (up, relay) = setup(json!({"api_key": "sk-relay-secret-1234"}));
    let headers = [
        ("Authorization", "Bearer client-token-xyz"),
        ("X-API-Key", "client-anthropic-key"),
        ("api-key", "client-azure-key"),
        ("x-goog-api-key", "client-gemini-key"),
        ("X-Custom-Header", "hello"),
    ];
    // a translated API route, and a pass-through one (another code path upstream)
    for (path, body) in [
        ("/v1/chat/completions", chat_body("m")),
        ("/v1/embeddings", json!({"model": "e", "input": "a"})),
    ] {
        let r = post_json_with(&relay.url(path), &body, &headers);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for req in &seen {
        assert_eq!(
            req.header("authorization"),
            Some("Bearer sk-relay-secret-1234"),
            "{}",
            req.path
        );
        for name in ["x-api-key", "api-key", "x-goog-api-key"] {
            assert_eq!(
                req.header(name),
                None,
                "{name} went upstream on {}",
                req.path
            );
        }
        assert_eq!(req.header("x-custom-header"), Some("hello"), "{}", req.path);
    }
}

#[test]
fn forward_auth_passes_client_authorization() {
    let (up, relay) = setup(json!({"forward_auth": true}));
    let auth = [("Authorization", "Bearer client-token-xyz")];
    let r = post_json_with(
        &relay.url("/v1/embeddings"),
        &json!({"model": "e", "input": "a"}),
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.only_request().header("authorization"),
        Some("Bearer client-token-xyz")
    );
}

#[test]
fn api_key_env_reads_key_from_environment() {
    let up = Upstream::openai();
    let var = format!("LLM_RELAY_TEST_KEY_{}", std::process::id());
    let cfg = config_json(&up.base_url(), json!({"api_key_env": var}));
    let relay = Relay::start_with(&cfg, &[(&var, "sk-from-env-5678")], &[]);
    let r = post_json(
        &relay.url("/v1/completions"),
        &json!({"model": "m", "prompt": "p"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.only_request().header("authorization"),
        Some("Bearer sk-from-env-5678")
    );
    assert!(
        !relay.stderr_text().contains("sk-from-env-5678"),
        "key leaked into log"
    );
}

#[test]
fn api_key_never_appears_in_log() {
    let key = "sk-never-log-this-9999";
    let (_up, relay) = setup(json!({"api_key": key}));
    post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
    post_json(&relay.url("/v1/nope"), &chat_body("m"));
    get(&relay.url("/v1/models"));
    relay.wait_for_log_line(Duration::from_secs(2), |l| l.contains("/v1/models"));
    let log = relay.stderr_text();
    assert!(!log.contains(key), "api key found in relay log:\n{log}");
    assert!(
        !log.contains("never-log-this"),
        "part of the api key found in log:\n{log}"
    );
}

#[test]
fn access_log_line_has_method_path_status_model() {
    let (_up, relay) = setup(json!({}));
    let body = json!({"model": "log-model-7", "messages": [{"role": "user", "content": "secret prompt text"}]});
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &body).status,
        200
    );
    get(&relay.url("/v1/nope"));
    let line = relay
        .wait_for_log_line(Duration::from_secs(3), |l| {
            l.contains("POST") && l.contains("/v1/chat/completions") && l.contains("200")
        })
        .unwrap_or_else(|| panic!("no access log line for the POST:\n{}", relay.stderr_text()));
    assert!(line.contains("log-model-7"), "model missing from: {line}");
    let nf = relay.wait_for_log_line(Duration::from_secs(3), |l| {
        l.contains("GET") && l.contains("/v1/nope") && l.contains("404")
    });
    assert!(
        nf.is_some(),
        "no access log line for the 404:\n{}",
        relay.stderr_text()
    );
    assert!(
        !relay.stderr_text().contains("secret prompt text"),
        "request body logged"
    );
}
