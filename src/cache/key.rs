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
    let kept = |k: &String| !DELIVERY_FIELDS.contains(&k.as_str()) && !ignore.contains(k);
    out.push(b'{');
    let mut first = true;
    for_each_sorted(body, |k, v| {
        if !kept(k) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_string(k, &mut out);
        out.push(b':');
        if k == "model" {
            write_string(model, &mut out);
        } else {
            canonical(v, &mut out);
        }
    });
    out.push(b'}');
    out
}

/// Calls `f` on the members of `map` in byte order of their names. serde_json's `Map` is a
/// `BTreeMap` (no `preserve_order`), which iterates in that order already; should a dependency
/// ever turn `preserve_order` on, the names are sorted here (the key stays the same).
fn for_each_sorted<'a>(map: &'a Map<String, Value>, mut f: impl FnMut(&'a String, &'a Value)) {
    let mut names = map.keys();
    let sorted = match names.next() {
        None => true,
        Some(mut prev) => names.all(|k| {
            let ordered = prev < k;
            prev = k;
            ordered
        }),
    };
    if sorted {
        map.iter().for_each(|(k, v)| f(k, v));
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.cmp(b.0));
        members.into_iter().for_each(|(k, v)| f(k, v));
    }
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for_each_sorted(map, |k, v| {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_string(k, out);
                out.push(b':');
                canonical(v, out);
            });
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
        // scalars: serde_json's own compact form (what `Value`'s `Display` writes), written
        // straight into `out` (writing to a `Vec` cannot fail)
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn write_string(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
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

    /// The canonical form as computed before it was written without allocations (a `Vec` of
    /// sorted names per object, each string and scalar formatted through `Value`'s `Display`).
    fn reference(body: &Map<String, Value>, model: &str, ignore: &[String]) -> Vec<u8> {
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
                        out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                        out.push(b':');
                        canonical(&map[k], out);
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
                other => out.extend_from_slice(other.to_string().as_bytes()),
            }
        }
        let string = |s: &str| Value::String(s.to_string()).to_string();
        let mut out = Vec::new();
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
            out.extend_from_slice(string(k).as_bytes());
            out.push(b':');
            if k == "model" {
                out.extend_from_slice(string(model).as_bytes());
            } else {
                canonical(&body[k], &mut out);
            }
        }
        out.push(b'}');
        out
    }

    #[test]
    fn keys_equal_the_reference_computation() {
        let bodies = [
            json!({}),
            json!({"model": "x"}),
            json!({"model": "bench-model", "messages": [{"role": "system", "content": "You are terse."},
                   {"role": "user", "content": "Say hi to the benchmark."}], "temperature": 0}),
            json!({"stream": true, "stream_options": {"include_usage": true}, "user": "u",
                   "model": "m", "n": 2}),
            json!({"z": null, "y": true, "x": false, "w": -0.0, "v": 1e300, "u": 1.5e-7,
                   "t": -12345678901234_i64, "s": u64::MAX, "r": 0.1, "q": [], "p": {},
                   "o": [[], {}, [null]], "model": "ignored"}),
            json!({"messages": [{"content": "quote \" backslash \\ slash / tab \t nl \n cr \r \u{1} \u{1f} del \u{7f}",
                   "name": "ünïcödé ✓ 😀 \u{2028} \u{2029}"}], "\u{e9}": 1, "E": 2, "e": 3,
                   "a\"b": 4, "": 5, " ": 6, "\u{0}": 7}),
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters":
                   {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer",
                   "minimum": 0, "maximum": 10.25}}, "required": ["b", "a"]}}}],
                   "tool_choice": "auto", "model": "m", "max_tokens": 100, "seed": 7}),
        ];
        let ignores: [&[String]; 2] = [&[], &["user".to_string(), "seed".to_string()]];
        for body in bodies {
            let Value::Object(m) = body else { panic!() };
            for ignore in ignores {
                for model in ["m", "other/model:1", "é\"x"] {
                    let new = canonical_request(&m, model, ignore);
                    let old = reference(&m, model, ignore);
                    assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old));
                    for variant in [
                        Variant::default(),
                        Variant {
                            namespace: "n".into(),
                            sample: 3,
                        },
                    ] {
                        assert_eq!(
                            variant_key("/chat/completions", "s", &variant, &new),
                            variant_key("/chat/completions", "s", &variant, &old)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn serde_json_maps_iterate_in_byte_order() {
        // canonical_request's fast path; it sorts itself if this ever fails
        let Value::Object(m) = json!({"b": 1, "a": 2, "\u{e9}": 3, "B": 4, "aa": 5}) else {
            panic!()
        };
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(names, ["B", "a", "aa", "b", "\u{e9}"]);
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
