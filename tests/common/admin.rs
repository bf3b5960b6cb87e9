//! Calls to the relay's admin API and keyed API calls, for the key, budget and Redis tests, and
//! many clients calling at once.

use std::sync::{Arc, Barrier};
use std::thread;

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

/// `GET /admin/keys/{id}/usage` (asserted 200), as JSON.
pub fn key_usage(relay: &Relay, admin_key: &str, id: &str) -> Value {
    let r = admin_call(
        relay,
        admin_key,
        "GET",
        &format!("/admin/keys/{id}/usage"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// `clients` threads released at once, each making `each` calls `call(client, i)`; every status.
pub fn from_clients(
    clients: usize,
    each: usize,
    call: impl Fn(usize, usize) -> u16 + Send + Sync + 'static,
) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(clients));
    let call = Arc::new(call);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (barrier, call) = (Arc::clone(&barrier), Arc::clone(&call));
            thread::spawn(move || {
                barrier.wait();
                (0..each).map(|i| call(c, i)).collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}
