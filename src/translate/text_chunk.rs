//! The common chat stream chunk, read without a `Value`: one that carries only text or
//! reasoning text for the first choice (no tool call, no finish, no usage, no error). Most of
//! a long answer's chunks are such; reading them into typed, borrowed fields and writing their
//! client events straight into the output costs a fraction of parsing each into a map and
//! building each event as one (`bench/profile.sh 100 sse-responses`).
//!
//! Any other chunk, or one that does not read as this shape (a non-string `content`, a
//! duplicated key), is `None`: the translator then takes the general path over a `Value`, so
//! what the client gets is the same either way (the stream tests run both paths).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::Piece;

/// The bytes of one text delta event beside its text, with room to spare (a Responses
/// `response.output_text.delta` with its ids is about 190): the output buffer a text chunk's
/// events start in.
pub const EVENT_ROOM: usize = 256;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: FirstChoice<'a>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// The first of `choices`, the others checked and skipped, not built (the translators read
/// the first choice only), so that no list is allocated for one element.
#[derive(Default)]
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstChoice<'a>, A::Error> {
                let first = seq.next_element::<Choice<'a>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
    /// A stop string that matched (vLLM): the general path keeps it for `stop_sequence`.
    #[serde(default)]
    stop_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// The text pieces of a chunk (`data` is its JSON) that holds nothing else that translation
/// reads; `None` for any other chunk.
pub struct TextChunk<'a> {
    reasoning: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
}

impl<'a> TextChunk<'a> {
    pub fn read(data: &'a [u8]) -> Option<TextChunk<'a>> {
        let chunk: Chunk<'a> = crate::json::from_slice(data).ok()?;
        if chunk.usage.is_some() || chunk.error.is_some() {
            return None;
        }
        let choice = chunk.choices.0?;
        if choice.finish_reason.is_some() || choice.stop_reason.is_some() {
            return None;
        }
        let Some(delta) = choice.delta else {
            return Some(TextChunk {
                reasoning: None,
                text: None,
            });
        };
        if delta.tool_calls.is_some() {
            return None;
        }
        Some(TextChunk {
            reasoning: delta.reasoning_content.filter(|s| !s.is_empty()),
            text: delta.content.filter(|s| !s.is_empty()),
        })
    }

    /// The bytes of its text pieces (their events' escaped text is about as long).
    pub fn text_len(&self) -> usize {
        let len = |s: &Option<Cow<'_, str>>| s.as_ref().map_or(0, |s| s.len());
        len(&self.reasoning) + len(&self.text)
    }

    /// The pieces in the order [`super::split_chunk`] gives them: reasoning, then text.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        let reasoning = self.reasoning.as_deref().map(Piece::Reasoning);
        reasoning
            .into_iter()
            .chain(self.text.as_deref().map(Piece::Text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(data: &str) -> Option<(Option<String>, Option<String>)> {
        let c = TextChunk::read(data.as_bytes())?;
        Some((
            c.reasoning.map(|s| s.into_owned()),
            c.text.map(|s| s.into_owned()),
        ))
    }

    #[test]
    fn text_and_reasoning_chunks_read_and_everything_else_does_not() {
        let t = |s: &str| Some(s.to_string());
        assert_eq!(
            texts(
                r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi \"x\"\n"},"finish_reason":null}],"usage":null}"#
            ),
            Some((None, t("Hi \"x\"\n")))
        );
        assert_eq!(
            texts(r#"{"choices":[{"delta":{"reasoning_content":"th","content":""}}]}"#),
            Some((t("th"), None))
        );
        assert_eq!(
            texts(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            Some((None, None))
        );
        // the first choice only, as the general path reads it (`n` > 1); the others are
        // skipped whatever they hold, but must be JSON
        assert_eq!(
            texts(r#"{"choices":[{"delta":{"content":"one"}},{"delta":{"content":"two"}},5]}"#),
            Some((None, t("one")))
        );
        assert_eq!(texts(r#"{"choices":[{"delta":{"content":"a"}},]}"#), None);
        for other in [
            r#"{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"content":"a"},"stop_reason":"END"}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"error":{"message":"x"}}"#,
            r#"{"choices":[{"delta":{"content":["a"]}}]}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[]}"#,
            "not json",
        ] {
            assert!(texts(other).is_none(), "{other}");
        }
    }

    /// A chat stream whose text chunks take the typed path; `defeat` rewrites each chunk so
    /// that only the general path reads it (a duplicated `delta` key: a `Value` keeps the
    /// last, the typed read refuses), with the same meaning.
    fn stream(defeat: bool) -> Vec<String> {
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            let c = serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
                "created": 7, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            let mut line = format!("data: {c}\n");
            if defeat {
                line = line.replacen("\"delta\":", "\"delta\":{},\"delta\":", 1);
            }
            line
        };
        let null = serde_json::Value::Null;
        let call = |id: &str, args: &str| {
            serde_json::json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                "function": {"name": "f", "arguments": args}}]})
        };
        let mut lines = vec![
            chunk(
                serde_json::json!({"role": "assistant", "content": ""}),
                null.clone(),
            ),
            chunk(
                serde_json::json!({"reasoning_content": "Think \"hard\"\n"}),
                null.clone(),
            ),
            chunk(
                serde_json::json!({"content": "Grüße, \u{1F600} </script> \\ \t"}),
                null.clone(),
            ),
            chunk(
                serde_json::json!({"reasoning_content": "r", "content": "both"}),
                null.clone(),
            ),
            chunk(call("call_1", "{\"a\":"), null.clone()),
            chunk(call("call_1", "1}"), null.clone()),
            chunk(
                serde_json::json!({"content": "after the call"}),
                null.clone(),
            ),
            chunk(serde_json::json!({}), serde_json::json!("stop")),
        ];
        lines.push("data: [DONE]\n".to_string());
        lines
    }

    #[test]
    fn the_typed_path_writes_the_bytes_the_general_path_writes() {
        use super::super::{Dialect, Stream};
        let typed = stream(false);
        let read = typed
            .iter()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| TextChunk::read(d.trim().as_bytes()).is_some())
            .count();
        // the role chunk reads too (the translator still opens its stream on the general path)
        assert_eq!(
            read, 5,
            "every chunk but the tool calls' and the finish reads as text"
        );
        let general = stream(true);
        assert!(general
            .iter()
            .filter_map(|l| l.strip_prefix("data: "))
            .all(|d| TextChunk::read(d.trim().as_bytes()).is_none()));
        for dialect in [Dialect::Anthropic, Dialect::Responses] {
            let run = |lines: &[String]| {
                let mut s = Stream::new(dialect);
                let mut out = Vec::new();
                for line in lines {
                    out.extend(s.line(line.as_bytes()));
                }
                out.extend(s.end());
                String::from_utf8(out).unwrap_or_default()
            };
            let (a, b) = (run(&typed), run(&general));
            assert!(
                a.contains("Gr\u{fc}\u{df}e") && a.contains("after the call"),
                "{a}"
            );
            assert_eq!(a, b, "{dialect:?}");
            // each event's data is the bytes its `Value` serialises to (keys in order), as
            // events built as a `Value` were
            for data in a.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                assert_eq!(data, value.to_string(), "{dialect:?}");
            }
        }
    }
}
