//! Cache keys: the canonical JSON of a request body and its SHA-256.
//!
//! Canonical means object keys sorted (byte order), no insignificant whitespace, and numbers
//! and strings as serde_json writes them, so key order and formatting never cause a miss.
//! `stream` and `stream_options` are left out: a streamed and a plain request for the same
//! thing share one entry (the replay converts between the two, and serves a usage chunk only
//! when asked). So are the fields of `cache.ignore_fields`. `model` is the *effective* model,
//! the one the chosen endpoint is sent (after rules and its per-endpoint `model` override), so
//! an answer of one model never serves a request the config sends to another.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::util::hex;

/// Top-level request fields that do not change the answer, only its delivery.
const DELIVERY_FIELDS: &[&str] = &["stream", "stream_options"];

/// The canonical bytes of a request body as sent with `model`, without the delivery fields
/// and the `ignore`d ones.
pub fn canonical_request(body: &Map<String, Value>, model: &str, ignore: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut keys: Vec<&String> = body
        .keys()
        .filter(|k| !DELIVERY_FIELDS.contains(&k.as_str()) && !ignore.contains(k))
        .collect();
    keys.sort();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, &mut out);
        out.push(b':');
        if k == "model" {
            write_string(model, &mut out);
        } else if let Some(v) = body.get(k) {
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
/// `scope` is empty for the shared scope, else the hashed client credential. Format 2: the
/// body carries the effective model (format 1 keyed the model as the client named it).
#[cfg(test)]
pub fn entry_key(route: &str, scope: &str, canonical_body: &[u8]) -> String {
    variant_key(route, scope, &Variant::default(), canonical_body)
}

/// Which of several entries for one request: its namespace (`X-Relay-Cache-Namespace`) and
/// sample index (`X-Relay-Cache-Sample`). The default (no namespace, sample 1) is the entry
/// as keyed before namespaces and samples existed, so old keys stay valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variant {
    /// Empty: the shared entries.
    pub namespace: String,
    /// 0 or 1: the first (ordinary) sample.
    pub sample: u32,
}

impl Variant {
    /// The sample index as a client names it (1 for the ordinary entry).
    pub fn sample_index(&self) -> u32 {
        self.sample.max(1)
    }
}

/// The key of one [`Variant`] of a request; the default variant's is the one `entry_key`
/// gives. The namespace and sample go into the hash only when set, on lines of their own before
/// the canonical body (which is one line of JSON, so they never collide with it).
pub fn variant_key(route: &str, scope: &str, variant: &Variant, canonical_body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-relay cache 2\n");
    h.update(route.as_bytes());
    h.update(b"\n");
    h.update(scope.as_bytes());
    h.update(b"\n");
    if !variant.namespace.is_empty() {
        h.update(b"\0namespace ");
        h.update(variant.namespace.as_bytes());
        h.update(b"\n");
    }
    if variant.sample > 1 {
        h.update(format!("\0sample {}\n", variant.sample).as_bytes());
    }
    h.update(canonical_body);
    hex(&h.finalize())
}

/// Checks a namespace name (`X-Relay-Cache-Namespace`, `--namespace`): 1 to 128 characters of
/// letters, digits and `.` `_` `-` `:` `/`, with no empty, `.` or `..` segment between
/// slashes (a name is never a path, but it looks like one in reports and cassettes).
pub fn check_namespace(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/');
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "namespace \"{}\" must be 1 to 128 characters long",
            name.escape_debug()
        ));
    }
    if !name.chars().all(allowed) {
        return Err(format!(
            "namespace \"{}\" may hold only letters, digits and . _ - : /",
            name.escape_debug()
        ));
    }
    if name.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(format!(
            "namespace \"{name}\" has an empty, \".\" or \"..\" segment between slashes"
        ));
    }
    Ok(())
}

/// The scope of a client credential: its SHA-256, so the credential itself is never stored.
pub fn credential_scope(credential: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-relay scope\n");
    h.update(credential.as_bytes());
    hex(&h.finalize())
}

/// SHA-256 of `bytes`, lowercase hex: the checksum that binds a response file to its entry.
pub fn checksum(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
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
        String::from_utf8(canonical_request(&m, "m", &["user".to_string()])).unwrap()
    }

    #[test]
    fn keys_sorted_delivery_and_ignored_fields_dropped_model_effective() {
        assert_eq!(
            canon(
                json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 1}], "x": "s"}, "stream": true,
                         "stream_options": {"include_usage": true}, "user": "u-17",
                         "model": "alias"})
            ),
            r#"{"a":{"x":"s","y":[1,{"c":1,"d":2}]},"b":1,"model":"m"}"#
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

    #[test]
    fn variants_key_apart_and_the_default_is_the_old_key() {
        let body = b"{\"model\":\"m\"}";
        let plain = entry_key("/chat/completions", "", body);
        let v = |namespace: &str, sample| Variant {
            namespace: namespace.to_string(),
            sample,
        };
        assert_eq!(variant_key("/chat/completions", "", &v("", 0), body), plain);
        assert_eq!(variant_key("/chat/completions", "", &v("", 1), body), plain);
        let keys = [v("", 2), v("", 3), v("a", 0), v("a", 2), v("b", 2)]
            .map(|x| variant_key("/chat/completions", "", &x, body));
        for (i, k) in keys.iter().enumerate() {
            assert_ne!(k, &plain);
            assert!(keys.iter().skip(i + 1).all(|o| o != k));
        }
    }

    #[test]
    fn namespace_names() {
        for good in ["suite", "tests/test_a.py::test_b", "run-1.2_x"] {
            assert!(check_namespace(good).is_ok(), "{good}");
        }
        let long = "x".repeat(129);
        for bad in [
            "", "../up", "a/../b", "/abs", "a//b", "a/", ".", "a b", "a\\b", "ä", &long,
        ] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}
