//! Config helpers for relays in front of several endpoints (`upstreams`).

use serde_json::{json, Value};

/// A config listening on `127.0.0.1:0` with the `upstreams` list `endpoints` and the keys of
/// `extra` (an object) added.
pub fn upstreams_config(endpoints: Value, extra: Value) -> String {
    let mut cfg = json!({"listen": "127.0.0.1:0", "upstreams": endpoints});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    serde_json::to_string_pretty(&cfg).unwrap()
}

/// A non-streamed chat request body for `model`.
pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}
