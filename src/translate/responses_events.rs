//! The Responses stream's events as bytes: each event's members written in the order a
//! `Value` object (a sorted map) writes them, with its `type` and `sequence_number`, without
//! building the object ([`write_event`]); and a content part with its text ([`part_json`]).

use serde_json::Value;

use super::json_str;
use crate::util::push_decimal;

/// A member of an event [`write_event`] writes: a value serialised where it lies, a string, a
/// count, or JSON already written.
pub(super) enum Member<'a> {
    Json(&'a Value),
    Str(&'a str),
    Num(u64),
    Raw(&'a [u8]),
}

impl Member<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Member::Json(v) => {
                if serde_json::to_writer(&mut *out, v).is_err() {
                    out.extend_from_slice(b"null"); // a `Value` always serialises; never reached
                }
            }
            Member::Str(s) => json_str(out, s),
            Member::Num(n) => push_decimal(out, *n),
            Member::Raw(json) => out.extend_from_slice(json),
        }
    }
}

/// Writes `event: KIND` and its data: `members` (keys in ascending order, neither `type` nor
/// `sequence_number`) with the event's `type` and `sequence_number` (`seq`, then counted on)
/// merged in, keys in the order a `Value` object (a sorted map) writes them. These are the
/// bytes of the event built as an object and serialised, without building one: an object
/// held a copy of the whole `response`, or of an item's whole text, per event, and was
/// dropped again (`bench/profile.sh 200 sse-responses`).
pub(super) fn write_event(
    out: &mut Vec<u8>,
    seq: &mut u64,
    kind: &str,
    members: &[(&str, Member<'_>)],
) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {");
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, key: &str, member: &Member<'_>| {
        if !first {
            out.push(b',');
        }
        first = false;
        // keys are the API's plain names: nothing in them to escape
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        member.write(out);
    };
    let mut own = [
        ("sequence_number", Member::Num(*seq)),
        ("type", Member::Str(kind)),
    ]
    .into_iter()
    .peekable();
    for (key, member) in members {
        debug_assert!(*key != "sequence_number" && *key != "type");
        while let Some((k, m)) = own.next_if(|(k, _)| k < key) {
            put(out, k, &m);
        }
        put(out, key, member);
    }
    for (k, m) in own {
        put(out, k, &m);
    }
    out.extend_from_slice(b"}\n\n");
    *seq += 1;
}

/// `{"annotations":[],"text":TEXT,"type":"output_text"}` (or, for reasoning, the part without
/// annotations), written once for the event that carries it.
pub(super) fn part_json(text: &str, reasoning: bool) -> Vec<u8> {
    let mut part = Vec::with_capacity(text.len() + 64);
    part.extend_from_slice(if reasoning {
        b"{\"text\":".as_slice()
    } else {
        b"{\"annotations\":[],\"text\":".as_slice()
    });
    json_str(&mut part, text);
    part.extend_from_slice(if reasoning {
        b",\"type\":\"reasoning_text\"}".as_slice()
    } else {
        b",\"type\":\"output_text\"}".as_slice()
    });
    part
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::responses_stream::State;

    /// Every event of a stream (text, reasoning, a tool call, the start and end events) is
    /// the bytes its data serialised as a `Value` would be: the keys in a sorted map's order.
    #[test]
    fn events_are_what_their_values_serialise_to() {
        let mut state = State::default();
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "c1", "created": 7, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut out = Vec::new();
        for c in [
            chunk(
                json!({"role": "assistant", "reasoning_content": "think \"hard\"\n"}),
                Value::Null,
            ),
            chunk(json!({"content": "Hi\tthere \u{1} é 中"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\":"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                json!("tool_calls"),
            ),
        ] {
            out.extend(state.chunk(&c));
        }
        out.extend(state.end());
        out.extend(State::default().fail("cut \"here\""));
        let text = String::from_utf8(out).unwrap();
        let mut kinds = Vec::new();
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data, v.to_string());
            kinds.push(v["type"].as_str().unwrap().to_string());
        }
        for kind in [
            "response.created",
            "response.reasoning_text.done",
            "response.output_text.delta",
            "response.content_part.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
            "error",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
        }
    }
}
