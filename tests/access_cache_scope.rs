//! The cache's per-key scope (`cache.scope: "key"`, issue 20): decided once, by the gate, from
//! the authenticated key's id (however the key was presented), or with `forward_auth` from the
//! very credentials forwarded upstream, whatever their scheme or header; a request with other
//! credentials, or none, never gets an answer recorded under a credential.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// POSTs a chat request asking `content` over raw TCP with exactly `headers` (repeated names
/// kept, in order); returns the status and the `X-Cache` value.
fn ask_as(relay: &Relay, content: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let body = ask(content).to_string();
    let mut head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                    Content-Type: application/json\r\n"
        .to_string();
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let r = raw_exchange(
        relay.addr(),
        &[head.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(30),
    );
    let cache = r
        .text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("x-cache")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (r.status.unwrap_or(0), cache)
}

#[test]
fn forwarded_credentials_of_any_scheme_scope_the_cache() {
    let up = Upstream::start(|req| echo_reply(req, Duration::ZERO));
    let dir = TempDir::new();
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"scope": "key"}),
        json!({"forward_auth": true}),
    ));
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "Authorization",
            "Basic YTpzZWNyZXQ=",
            "Authorization",
            "Basic Z2FyYmFnZQ==",
        ),
        (
            "Authorization",
            "Token abc-123",
            "Authorization",
            "Token zzz-999",
        ),
        ("api-key", "azure-key-a", "api-key", "azure-key-b"),
        (
            "x-goog-api-key",
            "goog-key-a",
            "x-goog-api-key",
            "goog-key-b",
        ),
    ];
    for (i, (name_a, cred_a, name_b, cred_b)) in cases.into_iter().enumerate() {
        let q = format!("question {i}");
        let a = [(name_a, cred_a)];
        assert_eq!(
            ask_as(&relay, &q, &a),
            (200, "MISS".to_string()),
            "{name_a}"
        );
        assert_eq!(ask_as(&relay, &q, &a), (200, "HIT".to_string()), "{name_a}");
        let calls = up.requests().len();
        // another credential, and none: never A's answer, and each goes upstream
        let b = [(name_b, cred_b)];
        assert_eq!(ask_as(&relay, &q, &b).1, "MISS", "{name_b} {cred_b}");
        assert_eq!(
            ask_as(&relay, &q, &[]).1,
            "MISS",
            "no credential after {name_a}"
        );
        let seen = up.requests();
        assert_eq!(seen.len(), calls + 2, "{name_a}");
        assert_eq!(
            seen[calls].header(&name_b.to_ascii_lowercase()),
            Some(cred_b),
            "B's own credential went upstream"
        );
    }
}

#[test]
fn the_scope_is_the_authenticated_key_however_it_was_presented() {
    let up = Upstream::start(|req| echo_reply(req, Duration::ZERO));
    let dir = TempDir::new();
    let (a, b) = ("sk-scope-key-a-0123456789", "sk-scope-key-b-0123456789");
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"scope": "key"}),
        json!({"auth": {"keys": [a, b]}}),
    ));
    let bearer_a = format!("Bearer {a}");
    let bearer_b = format!("Bearer {b}");
    // auth takes the first Bearer among the Authorization headers: the key is A, then B
    let as_a = [
        ("Authorization", "Basic eDp5"),
        ("Authorization", bearer_a.as_str()),
    ];
    let as_b = [
        ("Authorization", "Basic eDp5"),
        ("Authorization", bearer_b.as_str()),
    ];
    assert_eq!(ask_as(&relay, "q", &as_a), (200, "MISS".to_string()));
    assert_eq!(
        ask_as(&relay, "q", &as_b),
        (200, "MISS".to_string()),
        "B got A's answer"
    );
    // the same key as X-API-Key, or as a lone Bearer, is the same scope
    assert_eq!(ask_as(&relay, "q", &[("X-API-Key", a)]).1, "HIT");
    assert_eq!(
        ask_as(&relay, "q", &[("Authorization", &bearer_b)]).1,
        "HIT"
    );
    assert_eq!(up.requests().len(), 2);
}
