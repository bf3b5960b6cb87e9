//! [`Members`]: chosen top-level members of a JSON object, taken from its text as its bytes
//! pass (the `usage` of a pass-through answer that may carry megabytes of base64 images, the
//! `model` of a request body streamed upstream), never holding the document: at most one
//! member name and one wanted value (each bounded) at a time. Strings, where nearly all of
//! such a document's bytes are, are skipped with `memchr`.
//!
//! It reads well-formed JSON exactly; on anything else it stops or takes what it saw, and the
//! caller parses what it took (so a broken value is a parse error there, never a panic here).

/// Longest member name compared (a longer one is no wanted name).
const MAX_NAME: usize = 64;

/// Longest value taken; a wanted member's longer value is dropped (counts as absent).
const MAX_VALUE: usize = 64 * 1024;

/// Where the reader stands at the object's own level (inside a nested value or a string, see
/// [`Members::depth`] and [`Members::in_string`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the object's `{`.
    Start,
    /// Before a member's name (or the object's `}`).
    Name,
    /// After a name, before its `:`.
    Colon,
    /// After `:`, before the value.
    Value,
    /// Inside a number, `true`, `false` or `null` at the object's level.
    Scalar,
    /// After a value, before `,` or `}`.
    Next,
    /// The object ended, or the text is not an object: nothing more is read.
    Done,
}

/// The members named in `wanted` of one JSON object, read from its text in pieces
/// ([`Members::feed`]). A member named twice: the last one counts, as in a parsed value.
#[derive(Debug)]
pub struct Members {
    wanted: &'static [&'static str],
    /// The raw text of each wanted member's value (as sent: a string keeps its quotes).
    found: Vec<Option<Vec<u8>>>,
    at: At,
    /// Containers open: 1 inside the object itself, more inside a member's value.
    depth: usize,
    in_string: bool,
    /// The last byte was a backslash inside a string.
    escaped: bool,
    /// The string being read is a member name (at the object's level).
    in_name: bool,
    /// The member name being read, or the last one read (`None`: longer than [`MAX_NAME`]).
    name: Option<Vec<u8>>,
    /// Which wanted member's value is being taken, into `value`.
    taking: Option<usize>,
    value: Vec<u8>,
}

impl Members {
    pub fn new(wanted: &'static [&'static str]) -> Members {
        Members {
            wanted,
            found: vec![None; wanted.len()],
            at: At::Start,
            depth: 0,
            in_string: false,
            escaped: false,
            in_name: false,
            name: Some(Vec::new()),
            taking: None,
            value: Vec::new(),
        }
    }

    /// The raw text of member `name`'s value, once the value is complete.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let at = self.wanted.iter().position(|w| *w == name)?;
        self.found.get(at)?.as_deref()
    }

    /// Reads the next bytes of the text.
    pub fn feed(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() && self.at != At::Done {
            if self.in_string {
                let used = self.string(rest);
                rest = rest.get(used..).unwrap_or_default();
                continue;
            }
            let Some((&byte, after)) = rest.split_first() else {
                return;
            };
            self.byte(byte);
            rest = after;
        }
    }

    /// Reads string bytes up to and including the next quote or backslash (or all of
    /// `data`); returns how many it used.
    fn string(&mut self, data: &[u8]) -> usize {
        if self.escaped {
            self.escaped = false;
            let used = data.get(..1).unwrap_or_default();
            self.record(used);
            return used.len();
        }
        let Some(at) = memchr::memchr2(b'"', b'\\', data) else {
            self.record(data);
            return data.len();
        };
        let used = data.get(..=at).unwrap_or_default();
        self.record(used);
        if data.get(at) == Some(&b'\\') {
            self.escaped = true;
        } else {
            self.in_string = false;
            if self.in_name {
                self.in_name = false;
                self.at = At::Colon;
            } else if self.depth == 1 {
                self.end_value(At::Next);
            }
        }
        used.len()
    }

    /// Keeps string bytes: of a member name, or of a value being taken.
    fn record(&mut self, bytes: &[u8]) {
        if self.in_name {
            if let Some(name) = &mut self.name {
                name.extend_from_slice(bytes);
                if name.len() > MAX_NAME + 1 {
                    self.name = None;
                }
            }
        } else {
            self.take(bytes);
        }
    }

    /// Adds to the value being taken; past [`MAX_VALUE`] that value is dropped.
    fn take(&mut self, bytes: &[u8]) {
        if self.taking.is_some() {
            if self.value.len() + bytes.len() > MAX_VALUE {
                self.taking = None;
                self.value = Vec::new();
            } else {
                self.value.extend_from_slice(bytes);
            }
        }
    }

    /// One byte outside strings.
    fn byte(&mut self, byte: u8) {
        if self.depth > 1 {
            self.take(&[byte]);
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 1 {
                        self.end_value(At::Next);
                    }
                }
                _ => {}
            }
            return;
        }
        let space = byte.is_ascii_whitespace();
        self.at = match (self.at, byte) {
            (At::Start | At::Name | At::Colon | At::Value | At::Next, _) if space => self.at,
            (At::Start, b'{') => {
                self.depth = 1;
                At::Name
            }
            (At::Name, b'"') => {
                self.in_string = true;
                self.in_name = true;
                self.name = Some(Vec::new());
                At::Name
            }
            (At::Colon, b':') => At::Value,
            (At::Value, _) => {
                self.taking = self.wanted_index();
                self.value.clear();
                self.take(&[byte]);
                match byte {
                    b'"' => {
                        self.in_string = true;
                        At::Value
                    }
                    b'{' | b'[' => {
                        self.depth = 2;
                        At::Value
                    }
                    _ => At::Scalar,
                }
            }
            (At::Scalar, b',') => {
                self.end_value(At::Name);
                At::Name
            }
            (At::Scalar, b'}') => {
                self.end_value(At::Done);
                At::Done
            }
            (At::Scalar, _) if space => {
                self.end_value(At::Next);
                At::Next
            }
            (At::Scalar, _) => {
                self.take(&[byte]);
                At::Scalar
            }
            (At::Next, b',') => At::Name,
            (At::Name | At::Next, b'}') => At::Done,
            _ => At::Done, // not JSON this reader follows: stop
        };
    }

    /// The member whose name was just read, if wanted (a name with escapes is decoded first).
    fn wanted_index(&self) -> Option<usize> {
        let quoted = self.name.as_deref()?;
        let raw = quoted.strip_suffix(b"\"")?;
        let decoded;
        let name = if raw.contains(&b'\\') {
            let mut text = Vec::with_capacity(quoted.len() + 1);
            text.push(b'"');
            text.extend_from_slice(quoted);
            decoded = crate::json::from_slice::<String>(&text).ok()?;
            decoded.as_bytes()
        } else {
            raw
        };
        self.wanted.iter().position(|w| w.as_bytes() == name)
    }

    /// A value at the object's level ended: keeps it if it was being taken.
    fn end_value(&mut self, next: At) {
        self.at = next;
        if let Some(i) = self.taking.take() {
            let value = std::mem::take(&mut self.value);
            if let Some(slot) = self.found.get_mut(i) {
                *slot = Some(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const WANTED: &[&str] = &["usage", "model"];

    /// Feeds `text` in pieces of `step` bytes.
    fn read(text: &[u8], step: usize) -> Members {
        let mut m = Members::new(WANTED);
        for piece in text.chunks(step.max(1)) {
            m.feed(piece);
        }
        m
    }

    fn parsed(m: &Members, name: &str) -> Option<Value> {
        m.get(name).map(|raw| crate::json::from_slice(raw).unwrap())
    }

    #[test]
    fn takes_the_wanted_members_whatever_the_pieces() {
        let doc = json!({
            "created": 1,
            "data": [{"b64_json": "A".repeat(5000), "note": "a \"usage\": {} } ] inside"}],
            "model": "gpt-image-1",
            "nested": {"usage": {"input_tokens": 999}},
            "usage": {"input_tokens": 50, "output_tokens": 4160,
                      "input_tokens_details": {"text_tokens": 40, "image_tokens": 10}},
            "flag": true,
        });
        let text = serde_json::to_vec_pretty(&doc).unwrap();
        for step in [1, 2, 3, 7, 64, 4096, text.len()] {
            let m = read(&text, step);
            assert_eq!(
                parsed(&m, "usage"),
                Some(doc["usage"].clone()),
                "step {step}"
            );
            assert_eq!(
                parsed(&m, "model"),
                Some(json!("gpt-image-1")),
                "step {step}"
            );
            assert_eq!(m.at, At::Done);
        }
    }

    #[test]
    fn agrees_with_a_parse_on_generated_objects() {
        // every wanted member's value, of any type and place, as serde_json reads the object
        let values = [
            json!(null),
            json!(12),
            json!(-3.5e2),
            json!(true),
            json!("x\"y\\z\u{e9}"),
            json!([1, {"a": [2, "]"]}]),
            json!({"input_tokens": 7, "s": "}{"}),
        ];
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for case in 0..2000 {
            let mut object = serde_json::Map::new();
            for i in 0..(next() % 5) {
                let name = ["usage", "model", "other", "usages", "mode"][next() % 5];
                let name = if i % 3 == 2 {
                    format!("{name}{i}")
                } else {
                    name.to_string()
                };
                object.insert(name, values[next() % values.len()].clone());
            }
            let doc = Value::Object(object);
            let text = if case % 2 == 0 {
                serde_json::to_vec(&doc).unwrap()
            } else {
                serde_json::to_vec_pretty(&doc).unwrap()
            };
            let m = read(&text, 1 + next() % 9);
            for name in WANTED {
                assert_eq!(parsed(&m, name), doc.get(*name).cloned(), "{doc}");
            }
        }
    }

    #[test]
    fn a_name_with_escapes_is_decoded_and_the_last_of_two_counts() {
        let text = br#"{"mod\u0065l": "a", "x": [], "model" : "b" , "u":1}"#;
        assert_eq!(parsed(&read(text, 3), "model"), Some(json!("b")));
        let text = br#"{"x": 1, "mod\u0065l": "hidden"}"#;
        assert_eq!(parsed(&read(text, 1), "model"), Some(json!("hidden")));
    }

    #[test]
    fn a_value_past_the_bound_is_dropped_and_no_text_is_held_whole() {
        let big = format!(
            r#"{{"usage": "{}", "model": "m"}}"#,
            "u".repeat(MAX_VALUE + 10)
        );
        let m = read(big.as_bytes(), 4096);
        assert_eq!(m.get("usage"), None);
        assert_eq!(parsed(&m, "model"), Some(json!("m")));
        assert!(m.value.capacity() <= MAX_VALUE + 4096);
    }

    #[test]
    fn text_that_is_no_object_yields_nothing() {
        for text in [&b"[1,2]"[..], b"\"usage\"", b"", b"{\"usage\" 1}", b"{,}"] {
            let m = read(text, 1);
            assert_eq!(m.get("usage"), None, "{}", String::from_utf8_lossy(text));
        }
        // bytes after the object's end are not read
        let m = read(br#"{"a":1} {"usage": 5}"#, 2);
        assert_eq!(m.at, At::Done);
        assert_eq!(m.get("usage"), None);
    }
}
