//! A chat stream chunk split into the pieces the stream translators order ([`split_chunk`];
//! `text_chunk.rs` reads the common text-only chunk without a `Value`), and the writers of the
//! client's SSE events.

use serde_json::Value;

/// One piece of a chat stream chunk, in the order a client sees them.
pub(super) enum Piece<'a> {
    /// `reasoning_content` text (DeepSeek, Qwen, vLLM).
    Reasoning(&'a str),
    Text(&'a str),
    /// A tool call's piece: its chat `index`, the call object (`id` and name come in its first
    /// piece) and its argument text (possibly empty).
    Call {
        index: u64,
        call: &'a Value,
        arguments: &'a str,
    },
}

/// What one chat stream chunk carries for the first choice.
pub(super) struct Chunk<'a> {
    pub(super) pieces: Vec<Piece<'a>>,
    pub(super) usage: Option<&'a Value>,
    pub(super) finish: Option<&'a str>,
}

pub(super) fn split_chunk(chunk: &Value) -> Chunk<'_> {
    let choice = chunk.pointer("/choices/0");
    let delta = choice.and_then(|c| c.get("delta"));
    let text = |key: &str| {
        delta
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut pieces = Vec::new();
    if let Some(r) = text("reasoning_content") {
        pieces.push(Piece::Reasoning(r));
    }
    if let Some(t) = text("content") {
        pieces.push(Piece::Text(t));
    }
    let calls = delta
        .and_then(|d| d.get("tool_calls"))
        .and_then(Value::as_array);
    for (position, call) in calls.into_iter().flatten().enumerate() {
        pieces.push(Piece::Call {
            // without an `index` (Gemini's compatible API), its place in the list
            index: call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64),
            call,
            arguments: call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or(""),
        });
    }
    Chunk {
        pieces,
        usage: chunk.get("usage").filter(|u| !u.is_null()),
        finish: choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str),
    }
}

/// One SSE event with a name: `event: NAME\ndata: JSON\n\n`.
pub(super) fn named_event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    data_event(out, data);
}

/// Appends an unnamed SSE event (`data: …` and the blank line), the JSON written straight into
/// the buffer (a `Value`'s `Display` goes through the formatter: about twice the work).
pub(super) fn data_event(out: &mut Vec<u8>, data: &Value) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, data).is_err() {
        out.extend_from_slice(b"null"); // a `Value` always serialises; never reached
    }
    out.extend_from_slice(b"\n\n");
}

/// Appends `s` as a JSON string (escaped as a `Value`'s string is).
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\""); // writing to a Vec never fails; never reached
    }
}

/// An object of these members, the values moved in (`json!` serialises each value it is
/// given into a new one: a whole response or item copied once more per event).
pub(super) fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}
