//! Unit tests of [`Skim`] (`skim.rs`): it must accept exactly the texts serde_json parses into
//! an object `Value`, and the usage read through it must be the usage read from that `Value`.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::answer::{Answer, Api};

/// Whether serde_json reads `text` into an object, and whether [`Skim`] accepts it, agree.
fn agrees(text: &[u8]) -> Result<(), String> {
    let serde = serde_json::from_slice::<Value>(text).is_ok_and(|v| v.is_object());
    let skim = Skim::object(text, |_, _| {}).is_ok();
    let usage_ok = [Api::Chat, Api::Responses, Api::Anthropic]
        .into_iter()
        .all(|api| Answer::read(api, text).usage == Answer::read_usage(api, text).usage);
    match (serde == skim, usage_ok) {
        (true, true) => Ok(()),
        (false, _) => Err(format!(
            "serde_json {serde}, skim {skim}: {:?}",
            String::from_utf8_lossy(text)
        )),
        (_, false) => Err(format!(
            "usage differs: {:?}",
            String::from_utf8_lossy(text)
        )),
    }
}

fn check(text: &[u8]) {
    if let Err(e) = agrees(text) {
        panic!("{e}");
    }
}

fn nested(open: &str, close: &str, n: usize) -> String {
    format!(
        r#"{{"usage":{{"prompt_tokens":1}},"x":{}1{}}}"#,
        open.repeat(n),
        close.repeat(n)
    )
}

#[test]
fn the_edges_serde_json_draws() {
    let texts: &[&[u8]] = &[
        br#"{}"#,
        b" \t\r\n{}\n ",
        b"\x0c{}",
        br#"{} x"#,
        br#"{"a":1,}"#,
        br#"{"a":[1,]}"#,
        br#"{"a" 1}"#,
        br#"{a:1}"#,
        br#"{"a":01}"#,
        br#"{"a":-}"#,
        br#"{"a":-0}"#,
        br#"{"a":1.}"#,
        br#"{"a":.5}"#,
        br#"{"a":+1}"#,
        br#"{"a":1e}"#,
        br#"{"a":1e+}"#,
        br#"{"a":1E-2}"#,
        br#"{"a":1e400}"#,
        br#"{"a":-1e400}"#,
        br#"{"a":1e-400}"#,
        br#"{"a":0e99999999999999999999}"#,
        br#"{"a":1.7976931348623157e308}"#,
        br#"{"a":1.7976931348623159e308}"#,
        br#"{"a":18446744073709551616}"#,
        br#"{"a":-9223372036854775809}"#,
        br#"{"a":tru}"#,
        br#"{"a":nul}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":"\udc00"}"#,
        br#"{"a":"\udfff"}"#,
        br#"{"a":"\ud800\udbff"}"#,
        br#"{"a":"\ud7ff\ue000"}"#,
        br#"{"a":"\ud800\udc00"}"#,
        br#"{"a":"\ud800\u0041"}"#,
        br#"{"a":"\ud800\n"}"#,
        br#"{"a":"\udbff\udfff"}"#,
        br#"{"a":"\u00e9\u12G4"}"#,
        br#"{"a":"\x"}"#,
        br#"{"a":"\/\b\f\n\r\t\"\\"}"#,
        b"{\"a\":\"tab\there\"}",
        b"{\"a\":\"del\x7fok\"}",
        b"{\"a\":\"\xc3\xa9\"}",
        b"{\"a\":\"\xc3\"}",
        b"{\"a\":\"x\x80\"}",
        b"{\"a\":\"\xc3\xa9\x80\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":\"\xc0\xaf\"}",
        b"{\"a\":1}\xff",
        br#"{"a":"unterminated}"#,
        br#"{"a":"ends in a backslash\"#,
        br#"{"usage":{"prompt_tokens":3},"usage":null}"#,
        br#"{"usage":null,"usage":{"prompt_tokens":3}}"#,
        br#"{"us\u0061ge":{"prompt_\u0074okens":7,"completion_tokens":2}}"#,
        br#"{"usage":{"prompt_tokens":"7"}}"#,
        br#"{"usage":{"prompt_tokens":7.5,"completion_tokens":-3}}"#,
        br#"{"usage":{"prompt_tokens":1e3,"completion_tokens":99999999999999999999}}"#,
        br#"{"usage":{"input_tokens":5,"input_tokens_details":[1]}}"#,
        br#"{"usage":[]}"#,
        br#"{"usage":{"prompt_tokens":1}} {"#,
    ];
    for text in texts {
        check(text);
    }
    for n in [125, 126, 127, 128, 200] {
        check(nested("[", "]", n).as_bytes());
        check(nested(r#"{"k":"#, "}", n).as_bytes());
    }
    // a number of 300 digits and more is judged by serde_json
    for digits in [299, 300, 308, 309, 400] {
        check(format!(r#"{{"a":1{}}}"#, "0".repeat(digits)).as_bytes());
        check(format!(r#"{{"a":0.{}1}}"#, "0".repeat(digits)).as_bytes());
    }
}

#[test]
fn names_with_escapes_are_read_as_written() {
    let mut names = Vec::new();
    let text = br#"{"usage":1,"us\u0061ge":2,"a\nb":3,"\u00e9":4}"#;
    let checked = Skim::object(text, |name, _| names.push(name));
    assert!(checked.is_ok());
    let decoded: Vec<_> = names.iter().filter_map(|n| n.text()).collect();
    let want: [&[u8]; 4] = [b"usage", b"usage", b"a\nb", "\u{e9}".as_bytes()];
    assert_eq!(decoded, want);
    assert_eq!(
        names.iter().map(|n| n.is(b"usage")).collect::<Vec<_>>(),
        [true, true, false, false]
    );
}

/// Bytes that change what a JSON text means, for mutations.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&[u8]> = vec![
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b" ",
        b"\x0c",
        b"\x00",
        b"\x1f",
        b"0",
        b"1",
        b"-",
        b".",
        b"e",
        b"E",
        b"+",
        b"u",
        b"true",
        b"null",
        br"\ud800",
        br"\udc00",
        br"\u0041",
        b"1e400",
        b"\xc3",
        b"\xa9",
        b"\xff",
        b"\x80",
        br#""usage":"#,
        br#"{"prompt_tokens":"#,
    ];
    prop::sample::select(pieces).prop_map(<[u8]>::to_vec)
}

/// Answers of each API, some with every kind of value.
fn seed() -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<&[u8]> = vec![
        br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" \u00e9\ud83d\ude00","refusal":null},"logprobs":{"content":[{"token":"Hi","logprob":-0.0012,"bytes":[72,105]}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":38,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#,
        br#"{"type":"message","content":[{"type":"text","text":"x"},{"type":"tool_use","input":{"a":[1,2.5e3,true,false,null]}}],"usage":{"input_tokens":3,"output_tokens":7,"cache_read_input_tokens":50,"cache_creation_input_tokens":9,"cache_creation":{"ephemeral_1h_input_tokens":4},"server_tool_use":{"web_search_requests":1}}}"#,
        br#"{"object":"response","temperature":0.7,"output":[],"usage":{"input_tokens":9,"output_tokens":1,"input_tokens_details":{"cached_tokens":3},"output_tokens_details":{"reasoning_tokens":1}}}"#,
    ];
    prop::sample::select(seeds).prop_map(<[u8]>::to_vec)
}

/// A valid JSON value of every kind serde_json reads (floats, big numbers, escapes, UTF-8).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\\u{1}\n\u{e9}\u{1F600}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("usage".to_string()),
                    Just("prompt_tokens".to_string()),
                    Just("input_tokens".to_string()),
                    Just("cached_tokens".to_string()),
                    Just("prompt_tokens_details".to_string()),
                    "[a-z]{1,3}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn valid_answers_agree(v in prop::collection::btree_map("[a-z]{1,2}|usage", value(), 0..4)) {
        let text = serde_json::to_vec(&v).unwrap_or_default();
        let accepted = Skim::object(&text, |_, _| {}).is_ok();
        prop_assert!(accepted, "valid JSON refused");
        agrees(&text).map_err(TestCaseError::fail)?;
        let pretty = serde_json::to_vec_pretty(&v).unwrap_or_default();
        agrees(&pretty).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_answers_agree(
        seed in seed(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, piece()), 1..4),
    ) {
        let mut text = seed;
        for (at, how, piece) in edits {
            let at = at.index(text.len() + 1);
            match how {
                0 => { text.splice(at..at, piece); }
                1 => { text.splice(at..(at + piece.len()).min(text.len()), piece); }
                _ => { text.drain(at..(at + piece.len()).min(text.len())); }
            }
        }
        agrees(&text).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn usage_members_of_any_value_agree(
        members in prop::collection::vec((
            prop_oneof![
                Just("prompt_tokens"), Just("completion_tokens"), Just("input_tokens"),
                Just("output_tokens"), Just("cache_read_input_tokens"),
                Just("cache_creation_input_tokens"), Just("prompt_cache_hit_tokens"),
                Just("prompt_tokens_details"), Just("input_tokens_details"),
                Just("completion_tokens_details"), Just("output_tokens_details"),
                Just("cache_creation"), Just("server_tool_use"), Just("cached_tokens"),
                Just("other"),
            ],
            prop_oneof![
                value(),
                any::<u64>().prop_map(Value::from),
                (0..4u8, any::<u64>()).prop_map(|(k, n)| serde_json::json!({
                    ["cached_tokens", "reasoning_tokens", "ephemeral_1h_input_tokens",
                     "web_search_requests"][usize::from(k)]: n
                })),
            ],
        ), 0..6),
        escaped in any::<bool>(),
    ) {
        let mut text = String::from(r#"{"usage":{"#);
        for (i, (name, value)) in members.iter().enumerate() {
            let name = match escaped && i == 0 {
                true => name.replacen('_', r"\u005f", 1),
                false => name.to_string(),
            };
            let value = serde_json::to_string(value).unwrap_or_default();
            text.push_str(&format!(r#"{}"{name}":{value}"#, if i == 0 { "" } else { "," }));
        }
        text.push_str("}}");
        agrees(text.as_bytes()).map_err(TestCaseError::fail)?;
    }
}
