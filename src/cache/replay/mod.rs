//! What a stored response is, whether it is worth keeping, and converting it between modes.
//!
//! A stored response is either a JSON body or the SSE text of a stream (told apart by its
//! first byte). For the chat family (chat, legacy completions, embeddings): [`check`] decides
//! whether it is a complete success (its usage is read by `answer::Usage`), and
//! `openai.rs` converts between a stream and a plain answer. `cache/apis.rs` dispatches
//! between this and the other APIs' rules.

mod openai;

pub use openai::{is_usage_only, json_to_sse, sse_to_json};

use serde_json::{Map, Value};

use crate::answer::{data_payload, Answer};
use crate::api::Completion;
use crate::sse_frame::is_blank;

pub use crate::answer::Form;

pub fn form(response: &[u8]) -> Form {
    Form::of(response)
}

/// `Ok(form)` for a complete success worth storing, else why not (`read`: the response, read).
pub fn check(response: &[u8], read: &Answer) -> Result<Form, &'static str> {
    if response.iter().all(u8::is_ascii_whitespace) {
        return Err("empty response");
    }
    match read.form {
        Form::Json => {
            let v = read.json.as_ref().ok_or("unparsable JSON")?;
            answer_ok(v).map(|()| Form::Json)
        }
        Form::Sse => {
            let mut completion = Completion::default();
            let mut chunks = 0;
            for line in lines(response) {
                completion.observe(line);
                let Some(data) = data_payload(line) else {
                    continue;
                };
                if data == b"[DONE]" {
                    continue;
                }
                let v: Value = crate::json::from_slice(data).map_err(|_| "unparsable event")?;
                if v.get("error").is_some() {
                    return Err("error event in stream");
                }
                chunks += 1;
            }
            if chunks == 0 {
                return Err("stream without chunks");
            }
            if !completion.complete() {
                return Err("truncated stream");
            }
            Ok(Form::Sse)
        }
    }
}

fn answer_ok(v: &Value) -> Result<(), &'static str> {
    let Value::Object(o) = v else {
        return Err("response is not a JSON object");
    };
    if o.contains_key("error") {
        return Err("error response");
    }
    let non_empty = |k: &str| {
        o.get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if non_empty("choices") || non_empty("data") {
        Ok(())
    } else {
        Err("answer without choices or data")
    }
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
}

/// The SSE events of a stored stream, each with its terminating blank line.
pub fn events(response: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in lines(response) {
        pos += line.len();
        if is_blank(line) {
            out.extend(response.get(start..pos));
            start = pos;
        }
    }
    if start < response.len() {
        out.extend(response.get(start..));
    }
    out
}

/// How the client asked for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub stream: bool,
    /// `stream_options.include_usage` (streams only).
    pub include_usage: bool,
}

impl Delivery {
    /// The delivery a request body asks for.
    pub fn of(body: &Map<String, Value>) -> Delivery {
        let stream = body.get("stream") == Some(&Value::Bool(true));
        let include_usage = stream
            && body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                == Some(&Value::Bool(true));
        Delivery {
            stream,
            include_usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_errors_empty_truncated() {
        let cases: &[(&str, bool)] = &[
            (r#"{"choices":[{"message":{"content":"x"}}]}"#, true),
            (r#"{"data":[{"embedding":[0.1]}]}"#, true),
            (r#"{"error":{"message":"no"}}"#, false),
            (r#"{"choices":[]}"#, false),
            ("", false),
            ("{\"choices\":[", false),
            (
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n",
                true,
            ),
            (
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
                false,
            ),
            ("data: [DONE]\n\n", false),
        ];
        for (body, ok) in cases {
            let read = Answer::read(crate::answer::Api::Chat, body.as_bytes());
            assert_eq!(check(body.as_bytes(), &read).is_ok(), *ok, "{body}");
        }
    }

    #[test]
    fn events_split_at_blank_lines() {
        let e = events(b"data: a\n\ndata: b\r\n\r\n");
        assert_eq!(e, vec![&b"data: a\n\n"[..], &b"data: b\r\n\r\n"[..]]);
    }
}
