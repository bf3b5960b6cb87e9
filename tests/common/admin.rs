//! Calls to the relay's admin API and keyed API calls, for the key, budget and Redis tests.

use serde_json::Value;

use super::client::{post_json_with, request, Resp};
use super::relay::Relay;

/// `method path` on the admin API with `admin_key` and an optional JSON body.
pub fn admin_call(
    relay: &Relay,
    admin_key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let auth = format!("Bearer {admin_key}");
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    request(
        method,
        &relay.url(path),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        bytes.as_deref(),
    )
}

/// Creates a key through `POST /admin/keys`; its `(id, secret)`.
pub fn new_key(relay: &Relay, admin_key: &str, body: Value) -> (String, String) {
    let r = admin_call(relay, admin_key, "POST", "/admin/keys", Some(body));
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// `POST /v1/chat/completions` with `body` and the client key `key`.
pub fn chat_as(relay: &Relay, key: &str, body: &Value) -> Resp {
    post_json_with(
        &relay.url("/v1/chat/completions"),
        body,
        &[("X-API-Key", key)],
    )
}
