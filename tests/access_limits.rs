//! Per-key rate limits (#5): 429 with `Retry-After` and `X-RateLimit-*`, per-key overrides,
//! independent keys, and exact admission when 50 clients hammer one key at once.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::*;

const KEY_A: &str = "sk-limits-key-a-00000001";
const KEY_B: &str = "sk-limits-key-b-00000002";

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn call(relay: &Relay, key: &str) -> Resp {
    post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat(),
        &[("X-API-Key", key)],
    )
}

#[test]
fn over_the_limit_is_429_with_retry_after_and_rate_limit_headers() {
    let up = Upstream::openai();
    let cfg = json!({"auth": {"keys": [KEY_A]}, "rate_limit": {"per_minute": 3, "per_hour": 100}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    for _ in 0..3 {
        assert_eq!(call(&relay, KEY_A).status, 200);
    }
    let r = call(&relay, KEY_A);
    let msg = r.assert_error(429, "rate_limit_exceeded");
    assert!(!msg.contains(KEY_A), "{msg}");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        up.requests().len(),
        3,
        "refused requests must not reach the upstream"
    );
}

#[test]
fn per_key_limit_overrides_the_default_and_keys_are_independent() {
    let up = Upstream::openai();
    let cfg = json!({
        "auth": {"keys": [{"key": KEY_A, "name": "tight", "rate_limit": {"per_minute": 1}}, KEY_B]},
        "rate_limit": {"per_minute": 4}
    });
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    assert_eq!(call(&relay, KEY_A).status, 200);
    let r = call(&relay, KEY_A);
    r.assert_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("x-ratelimit-limit"), Some("1"));
    for _ in 0..4 {
        assert_eq!(call(&relay, KEY_B).status, 200, "B has its own budget");
    }
    let r = call(&relay, KEY_B);
    r.assert_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("x-ratelimit-limit"), Some("4"));
    assert_eq!(
        get(&relay.url("/health")).status,
        200,
        "health is never limited"
    );
}

#[test]
fn admin_created_key_gets_its_own_limit() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let admin = "sk-limits-admin-key-000";
    let cfg = json!({"auth": {"admin_key": admin, "keys_file": dir.path().join("k.json")}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let auth = format!("Bearer {admin}");
    let body = serde_json::to_vec(&json!({"name": "two", "rate_limit": {"per_hour": 2}})).unwrap();
    let created = request(
        "POST",
        &relay.url("/admin/keys"),
        &[("Authorization", &auth)],
        Some(&body),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.json()["key"].as_str().unwrap().to_string();
    assert_eq!(call(&relay, &key).status, 200);
    assert_eq!(call(&relay, &key).status, 200);
    let r = call(&relay, &key);
    r.assert_error(429, "rate_limit_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 3500, "hour window: Retry-After {retry}");
}

#[test]
fn fifty_clients_hammering_one_key_never_get_more_than_the_limit() {
    let up = Upstream::openai();
    let limit = 20;
    let cfg =
        json!({"workers": 16, "auth": {"keys": [KEY_A]}, "rate_limit": {"per_minute": limit}});
    let relay = Arc::new(Relay::start(&config_json(&up.base_url(), cfg)));
    let statuses = from_clients(50, 2, move |_, _| call(&relay, KEY_A).status);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (ok, limited),
        (limit, 100 - limit),
        "statuses: {statuses:?}"
    );
    assert_eq!(up.requests().len(), limit);
}
