//! Cache keys: the canonical JSON of a request body and its SHA-256.
//!
//! Canonical means object keys sorted (byte order), no insignificant whitespace, and numbers
//! and strings as serde_json writes them, so key order and formatting never cause a miss.
//! `stream` and `stream_options` are left out: a streamed and a plain request for the same
//! thing share one entry (the replay converts between the two).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::util::hex;

/// Top-level request fields that do not change the answer, only its delivery.
const DELIVERY_FIELDS: &[&str] = &["stream", "stream_options"];

/// The canonical bytes of a request body, without the delivery fields.
pub fn canonical_request(body: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut keys: Vec<&String> = body
        .keys()
        .filter(|k| !DELIVERY_FIELDS.contains(&k.as_str()))
        .collect();
    keys.sort();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, &mut out);
        out.push(b':');
        if let Some(v) = body.get(k) {
            canonical(v, &mut out);
        }
    }
    out.push(b'}');
    out
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        // scalars: serde_json's own compact form
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(Value::String(s.to_string()).to_string().as_bytes());
}

/// The entry key: SHA-256 (lowercase hex) over the route, the scope and the canonical body.
/// `scope` is empty for the shared scope, else the hashed client credential.
pub fn entry_key(route: &str, scope: &str, canonical_body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-relay cache 1\n");
    h.update(route.as_bytes());
    h.update(b"\n");
    h.update(scope.as_bytes());
    h.update(b"\n");
    h.update(canonical_body);
    hex(&h.finalize())
}

/// The scope of a client credential: its SHA-256, so the credential itself is never stored.
pub fn credential_scope(credential: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-relay scope\n");
    h.update(credential.as_bytes());
    hex(&h.finalize())
}

/// True for a string that can be an entry key (64 lowercase hex digits); guards file names.
pub fn is_key(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        let Value::Object(m) = v else { panic!() };
        String::from_utf8(canonical_request(&m)).unwrap()
    }

    #[test]
    fn keys_sorted_delivery_fields_dropped() {
        assert_eq!(
            canon(
                json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 1}], "x": "s"}, "stream": true,
                         "stream_options": {"include_usage": true}})
            ),
            r#"{"a":{"x":"s","y":[1,{"c":1,"d":2}]},"b":1}"#
        );
        assert_eq!(
            canon(json!({"t": 0.7, "s": "a\"b"})),
            r#"{"s":"a\"b","t":0.7}"#
        );
    }

    #[test]
    fn key_is_hex_and_depends_on_scope() {
        let k = entry_key("/chat/completions", "", b"{}");
        assert!(is_key(&k), "{k}");
        assert_ne!(k, entry_key("/chat/completions", "x", b"{}"));
        assert_ne!(k, entry_key("/completions", "", b"{}"));
    }
}
