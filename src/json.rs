//! JSON parsed from bytes with one UTF-8 check: [`from_slice`], what every parse of a request,
//! an answer or an event goes through. A bottom layer: it imports nothing of the relay.

/// `serde_json::from_slice(raw)`, with the same result, but UTF-8 checked once for the whole
/// input: `from_slice` checks each key and string it reads on its own (a call per string, most
/// of a small JSON's parse), while a `&str` needs no check again. Input that is not UTF-8
/// throughout is parsed by `from_slice` itself, so its errors (and what it accepts: an
/// ignored string need not be UTF-8) stay the same.
pub fn from_slice<'a, T: serde::Deserialize<'a>>(raw: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(raw) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(raw),
    }
}

#[cfg(test)]
mod tests {
    /// What `from_slice` gives, as text: the value, or the error's message and position.
    fn both<'a, T: serde::Deserialize<'a> + std::fmt::Debug>(raw: &'a [u8]) -> (String, String) {
        let show = |r: serde_json::Result<T>| match r {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        };
        (
            show(super::from_slice::<T>(raw)),
            show(serde_json::from_slice::<T>(raw)),
        )
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read by `Debug`
    struct Typed<'a> {
        #[serde(borrow)]
        text: std::borrow::Cow<'a, str>,
        ignored: Option<serde::de::IgnoredAny>,
    }

    #[test]
    fn from_slice_gives_what_serde_json_gives() {
        let cases: [&[u8]; 12] = [
            br#"{"text":"plain","n":[1,2.5,-3e2,true,null]}"#,
            "{\"text\":\"中文 \\u00e9 \\ud83d\\ude00\",\"ignored\":\"x\"}".as_bytes(),
            br#"{"text":"a","text":"b"}"#,
            br#"{"text":"\ud800"}"#,
            br#"{"text":"x"} trailing"#,
            br#"{"text":"x","ignored":1e400}"#,
            b"{\"text\":\"\xff\"}",
            // not UTF-8 in a string a typed read ignores: `from_slice` accepts it, so must we
            b"{\"text\":\"ok\",\"ignored\":\"\xc3\x28\"}",
            b"{\"text\":\"ok\"}\xff",
            b"",
            b"[",
            br#"{"text":"tab	inside"}"#,
        ];
        for raw in cases {
            let (ours, theirs) = both::<serde_json::Value>(raw);
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(raw));
            let (ours, theirs) = both::<Typed<'_>>(raw);
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(raw));
        }
        assert!(
            super::from_slice::<Typed<'_>>(b"{\"text\":\"ok\",\"ignored\":\"\xc3\x28\"}").is_ok()
        );
    }

    proptest::proptest! {
        /// Any bytes, JSON-like or not: the same value or the same error.
        #[test]
        fn from_slice_agrees_on_any_bytes(raw in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(b"{}[]\":,\\ abtrulefsn0123456789.-eEu".to_vec()),
                proptest::num::u8::ANY,
            ],
            0..40,
        )) {
            let (ours, theirs) = both::<serde_json::Value>(&raw);
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
