//! Unit tests of the parsed answer and the one `Usage` type (`mod.rs`).

use super::*;
use serde_json::json;

fn of_bytes(api: Api, bytes: &[u8]) -> Option<Usage> {
    Answer::read(api, bytes).usage
}

fn u(input: u64, output: u64, cache_read: u64, cache_write: u64, reasoning: u64) -> Usage {
    Usage::of_tokens(input, output, cache_read, cache_write, reasoning)
}

#[test]
fn each_api_reads_its_own_fields() {
    let chat = json!({"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 256}});
    assert_eq!(Usage::chat(&chat), u(176, 300, 1024, 0, 256));
    assert_eq!(Usage::chat(&chat).prompt(), 1200);
    let deepseek = json!({"prompt_tokens": 100, "completion_tokens": 5,
        "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36});
    assert_eq!(Usage::chat(&deepseek), u(36, 5, 64, 0, 0));
    let embeddings = json!({"prompt_tokens": 8, "total_tokens": 8});
    assert_eq!(Usage::chat(&embeddings), u(8, 0, 0, 0, 0));
    let responses = json!({"input_tokens": 900, "output_tokens": 50,
        "input_tokens_details": {"cached_tokens": 800},
        "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 950});
    assert_eq!(
        Usage::of(Api::Responses, &responses),
        u(100, 50, 800, 0, 30)
    );
    let messages = json!({"input_tokens": 3, "output_tokens": 7,
        "cache_read_input_tokens": 50000, "cache_creation_input_tokens": 1000});
    let m = Usage::messages(&messages);
    assert_eq!(m, u(3, 7, 50000, 1000, 0));
    assert_eq!((m.prompt(), m.total()), (51003, 51010));
    // a cached count above the prompt never underflows
    let odd = json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}});
    assert_eq!(Usage::chat(&odd), u(0, 0, 5, 0, 0));
    assert_eq!(Usage::chat(&json!("nonsense")), Usage::default());
}

#[test]
fn whole_answers_with_and_without_usage() {
    let answer = br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#;
    assert_eq!(of_bytes(Api::Chat, answer), Some(u(12, 5, 0, 0, 0)));
    assert_eq!(of_bytes(Api::Chat, br#"{"choices":[]}"#), None);
    assert_eq!(of_bytes(Api::Chat, br#"{"usage":null}"#), None);
    assert_eq!(of_bytes(Api::Chat, b"{not json"), None);
}

#[test]
fn reading_only_the_usage_finds_what_reading_all_finds() {
    let answers: [&[u8]; 9] = [
        br#"{"choices":[{"message":{"content":"hi \"usage\""}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        br#"{"content":[{"type":"text","text":"x"}],"usage":{"input_tokens":3,"output_tokens":7,"cache_read_input_tokens":50}}"#,
        br#"{"output":[],"usage":{"input_tokens":9,"output_tokens":1,"output_tokens_details":{"reasoning_tokens":1}}}"#,
        br#"{"choices":[]}"#,
        br#"{"usage":null}"#,
        br#"{"usage":"odd"}"#,
        br#"  {"nested":{"usage":{"prompt_tokens":1}}}"#,
        b"{not json",
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
    ];
    for api in [Api::Chat, Api::Responses, Api::Anthropic] {
        for answer in answers {
            let (all, usage) = (Answer::read(api, answer), Answer::read_usage(api, answer));
            let shown = String::from_utf8_lossy(answer);
            assert_eq!(usage.usage, all.usage, "{api:?} {shown}");
            assert_eq!(usage.form, all.form, "{shown}");
            assert!(usage.json.is_none());
        }
    }
}

#[test]
fn streams_of_each_api() {
    let chat = b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":20}}}\n\ndata: [DONE]\n\n";
    assert_eq!(of_bytes(Api::Chat, chat), Some(u(10, 4, 20, 0, 0)));
    assert_eq!(of_bytes(Api::Chat, b"data: {\"usage\":null}\n\n"), None);
    let responses = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":2,\"input_tokens_details\":{\"cached_tokens\":4}}}}\n\n";
    assert_eq!(of_bytes(Api::Responses, responses), Some(u(3, 2, 4, 0, 0)));
    let messages = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":50000,\"cache_creation_input_tokens\":1000,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\n";
    assert_eq!(
        of_bytes(Api::Anthropic, messages),
        Some(u(3, 6, 50000, 1000, 0))
    );
    // newer servers repeat the cumulative input counts in message_delta
    let mut s = StreamUsage::new(Api::Anthropic);
    s.observe(&json!({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}));
    s.observe(&json!({"type": "message_delta", "usage": {"input_tokens": 5, "output_tokens": 9, "cache_read_input_tokens": 2}}));
    assert_eq!(s.usage(), Some(u(5, 9, 2, 0, 0)));
}

#[test]
fn null_members_need_no_parse() {
    let k = &JsonKey::new("usage");
    assert!(!has_non_null(
        br#"{"choices":[{"delta":{}}],"usage":null}"#,
        k
    ));
    assert!(!has_non_null(
        br#"{"usage" : null, "x": {"usage":null}}"#,
        k
    ));
    assert!(!has_non_null(br#"{"choices":[]}"#, k));
    assert!(has_non_null(br#"{"usage":{"prompt_tokens":1}}"#, k));
    assert!(has_non_null(br#"{"a":{"usage":null},"usage": {}}"#, k));
    assert!(has_non_null(br#"{"type":"usage"}"#, k)); // not a member: parsed to be sure
                                                      // inside a string it is escaped, so never a member
    assert!(!has_non_null(br#"{"content":"say \"usage\": 1"}"#, k));
    let f = &FINISH_REASON;
    assert!(!has_non_null(br#"{"choices":[{"finish_reason":null}]}"#, f));
    assert!(has_non_null(
        br#"{"choices":[{"finish_reason":"stop"}]}"#,
        f
    ));
    // a long key
    let long = "k".repeat(100);
    let with = |value: &str| format!(r#"{{"a":1,"{long}": {value}}}"#).into_bytes();
    assert!(has_non_null(&with("2"), &JsonKey::new(&long)));
    assert!(!has_non_null(&with("null"), &JsonKey::new(&long)));
}

#[test]
fn data_lines() {
    assert_eq!(data_payload(b"data: {}\r\n"), Some(&b"{}"[..]));
    assert_eq!(data_payload(b"data:[DONE]"), Some(&b"[DONE]"[..]));
    assert_eq!(data_payload(b"event: x"), None);
}

#[test]
fn lines_are_what_split_gives() {
    for text in [
        &b""[..],
        b"\n",
        b"\n\n",
        b"a",
        b"a\n",
        b"data: {}\n\n",
        b"event: x\r\ndata: y\r\n\r\ndata: z",
        b"\na\n\nb",
    ] {
        let split: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        assert_eq!(lines(text).collect::<Vec<_>>(), split, "{text:?}");
    }
}

/// The reading of a `usage` value before it was typed (`usage.rs`): member lookups on a
/// parsed [`Value`], counts held at [`reported::MAX_COUNT`]. The typed reading must give the
/// same figures for any value.
fn value_reading(api: Api, u: &Value) -> Usage {
    let at = |path: &[&str]| path.iter().try_fold(u, |v, name| v.get(*name));
    let count = |v: Option<&Value>| match v {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
            .unwrap_or(0)
            .min(reported::MAX_COUNT),
        None => 0,
    };
    let n = |path: &[&str]| count(at(path));
    match api {
        Api::Chat => {
            let prompt = n(&["prompt_tokens"]);
            let cached = at(&["prompt_tokens_details", "cached_tokens"])
                .or_else(|| u.get("prompt_cache_hit_tokens"))
                .map_or(0, |v| count(Some(v)))
                .min(prompt);
            u_of(prompt - cached, n(&["completion_tokens"]), cached, 0, {
                n(&["completion_tokens_details", "reasoning_tokens"])
            })
        }
        Api::Responses => {
            let prompt = n(&["input_tokens"]);
            let cached = n(&["input_tokens_details", "cached_tokens"]).min(prompt);
            u_of(prompt - cached, n(&["output_tokens"]), cached, 0, {
                n(&["output_tokens_details", "reasoning_tokens"])
            })
        }
        Api::Anthropic => {
            let named = |name: &str| u.get(name).filter(|v| !v.is_null()).map(|v| count(Some(v)));
            let mut usage = u_of(
                named("input_tokens").unwrap_or(0),
                named("output_tokens").unwrap_or(0),
                named("cache_read_input_tokens").unwrap_or(0),
                named("cache_creation_input_tokens").unwrap_or(0),
                0,
            );
            let hour = u
                .get("cache_creation")
                .filter(|c| c.is_object())
                .and_then(|c| c.get("ephemeral_1h_input_tokens"))
                .filter(|v| !v.is_null());
            usage.cache_write_1h = hour.map_or(0, |v| count(Some(v))).min(usage.cache_write);
            let searches = u
                .get("server_tool_use")
                .filter(|c| c.is_object())
                .and_then(|c| c.get("web_search_requests"))
                .filter(|v| !v.is_null());
            usage.web_searches = searches.map_or(0, |v| count(Some(v)));
            usage
        }
    }
}

fn u_of(input: u64, output: u64, cache_read: u64, cache_write: u64, reasoning: u64) -> Usage {
    u(input, output, cache_read, cache_write, reasoning)
}

#[test]
fn the_typed_usage_reading_gives_what_member_lookups_give() {
    const NAMES: &[&str] = &[
        "prompt_tokens",
        "completion_tokens",
        "prompt_cache_hit_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "input_tokens_details",
        "output_tokens_details",
        "cached_tokens",
        "total_tokens",
        "prompt_tok\\u0065ns",
        "cache_creation",
        "ephemeral_1h_input_tokens",
        "server_tool_use",
        "web_search_requests",
    ];
    const VALUES: &[&str] = &[
        "0",
        "12",
        "-3",
        "2.6",
        "-1.5",
        "1e3",
        "184467440737095516150",
        "\"7\"",
        "null",
        "true",
        "[1,[2],{\"cached_tokens\":3}]",
        "{}",
        r#"{"cached_tokens":5,"reasoning_tokens":2}"#,
        r#"{"cached_tokens":null,"reasoning_tokens":"x"}"#,
        r#"{"cached_tokens":40,"cached_tokens":4.4,"other":{"cached_tokens":9}}"#,
        r#"{"reasoning_tokens":[1],"cached_tokens":{"a":1}}"#,
        r#"{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":9}"#,
        r#"{"ephemeral_1h_input_tokens":null}"#,
        r#"{"ephemeral_1h_input_tokens":2000,"ephemeral_1h_input_tokens":4}"#,
        r#"{"web_search_requests":2,"web_fetch_requests":1}"#,
    ];
    // a fixed pseudo-random sequence (xorshift): members, their values and repeats
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    let mut usages: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
    for _ in 0..3000 {
        let members: Vec<String> = (0..next(9))
            .map(|_| {
                format!(
                    "\"{}\":{}",
                    NAMES[next(NAMES.len())],
                    VALUES[next(VALUES.len())]
                )
            })
            .collect();
        usages.push(format!("{{{}}}", members.join(",")));
    }
    for usage in &usages {
        let answer = format!(r#"{{"id":"x","choices":[{{"usage":1}}],"usage":{usage},"z":[]}}"#);
        let value: Value = serde_json::from_str(&answer).unwrap();
        for api in [Api::Chat, Api::Responses, Api::Anthropic] {
            let looked_up = Some(&value["usage"])
                .filter(|u| !u.is_null())
                .map(|u| value_reading(api, u));
            let typed = Answer::read_usage(api, answer.as_bytes()).usage;
            assert_eq!(typed, looked_up, "{api:?} {usage}");
            assert_eq!(
                Answer::read(api, answer.as_bytes()).usage,
                looked_up,
                "{api:?} {usage}"
            );
            let typed_of_value = Usage::of_answer(api, &value);
            assert_eq!(typed_of_value, looked_up, "{api:?} {usage}");
        }
    }
}

#[test]
fn absurd_counts_are_held_at_the_ceiling_and_sums_never_wrap() {
    let m = reported::MAX_COUNT;
    let chat = br#"{"usage":{"prompt_tokens":1.7976931348623157e308,
        "completion_tokens":18446744073709551615,
        "prompt_tokens_details":{"cached_tokens":99999999999999999999},
        "completion_tokens_details":{"reasoning_tokens":1099511627777}}}"#;
    let messages = br#"{"usage":{"input_tokens":18446744073709551615,
        "output_tokens":1e300,"cache_read_input_tokens":18446744073709551615,
        "cache_creation_input_tokens":1099511627776}}"#;
    for (api, bytes, want) in [
        (Api::Chat, &chat[..], u(0, m, m, 0, m)),
        (Api::Responses, &chat[..], Usage::default()),
        (Api::Anthropic, &messages[..], u(m, m, m, m, 0)),
    ] {
        assert_eq!(of_bytes(api, bytes), Some(want), "{api:?}");
        assert_eq!(Answer::read_usage(api, bytes).usage, Some(want), "{api:?}");
    }
    let most = Usage {
        input: u64::MAX,
        output: u64::MAX,
        cache_read: u64::MAX,
        cache_write: u64::MAX,
        cache_write_1h: 0,
        web_searches: 0,
        reasoning: 0,
    };
    assert_eq!((most.prompt(), most.total()), (u64::MAX, u64::MAX));
}

/// The one documented difference between the two readings (`read_usage`'s doc): bodies that
/// only a `Value` parse refuses still have their usage read by `read_usage`; a body both
/// refuse has none in either.
#[test]
fn read_usage_reads_what_only_value_refuses() {
    let deep = format!(
        r#"{{"x":{}1{},"usage":{{"prompt_tokens":1}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let only_value_refuses: [&[u8]; 4] = [
        b"{\"x\":\"\xff\",\"usage\":{\"prompt_tokens\":1}}",
        br#"{"x":"\ud800","usage":{"prompt_tokens":1}}"#,
        br#"{"x":1e400,"usage":{"prompt_tokens":1}}"#,
        deep.as_bytes(),
    ];
    for text in only_value_refuses {
        assert_eq!(of_bytes(Api::Chat, text), None);
        let usage = Answer::read_usage(Api::Chat, text).usage;
        assert_eq!(usage, Some(u(1, 0, 0, 0, 0)));
    }
    let both_refuse = b"{\"x\":\"a\x01\",\"usage\":{\"prompt_tokens\":1}}";
    assert_eq!(of_bytes(Api::Chat, both_refuse), None);
    assert_eq!(Answer::read_usage(Api::Chat, both_refuse).usage, None);
}
