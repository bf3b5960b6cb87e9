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

/// Appends `s` as a JSON string, escaped byte for byte as serde_json escapes a string (`"`,
/// `\\`, `\b \f \n \r \t`, other controls as `\u00xx`; nothing else). Eight bytes are
/// checked at a time where none needs escaping (most of a text delta): a third of what
/// `serde_json::to_writer` took per delta (`bench/profile.sh 200 sse-messages`).
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // a byte of `w` that is zero (or, with `lt`, below n): the high bit of that byte is set
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let plain = |w: u64| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) == 0
    };
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut at, mut start) = (0, 0);
    while at < bytes.len() {
        if let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            if plain(u64::from_le_bytes(word)) {
                at += 8;
                continue;
            }
        }
        let byte = bytes.get(at).copied().unwrap_or(b' ');
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => {
                at += 1;
                continue;
            }
        };
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0'));
        } else {
            out.extend_from_slice(short);
        }
        at += 1;
        start = at;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
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

#[cfg(test)]
mod tests {
    use super::json_str;

    fn ours(s: &str) -> String {
        let mut out = b"x".to_vec();
        json_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_str_escapes_as_serde_json_does() {
        let mut cases: Vec<String> = (0u32..0x300)
            .filter_map(char::from_u32)
            .map(|c| format!("{c}"))
            .collect();
        // every byte position in and around the eight-byte steps, each escape in each position
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é', '中', ' '] {
            for len in 0..20 {
                for at in 0..len {
                    let mut s: String = "abcdefghijklmnopqrst".chars().take(len).collect();
                    s.replace_range(
                        s.char_indices().nth(at).map_or(0, |(i, _)| i)..(at + 1).min(s.len()),
                        &special.to_string(),
                    );
                    cases.push(s);
                }
            }
        }
        cases.push("tok0 sent_ns=1796408795700622668 ".into());
        cases.push("line one\nline \"two\"\t\\ done\r\n".into());
        for s in cases {
            assert_eq!(
                ours(&s),
                format!("x{}", serde_json::to_string(&s).unwrap()),
                "{s:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn json_str_agrees_with_serde_json(s in "\\PC*|[\\x00-\\x7f]*") {
            proptest::prop_assert_eq!(ours(&s), format!("x{}", serde_json::to_string(&s).unwrap()));
        }
    }
}
