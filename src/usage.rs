//! Per-key usage figures for `GET /admin/stats`: requests, cache hits, tokens, errors, last use.
//!
//! Kept in memory (they restart at zero with the relay). Token counts come from the `usage`
//! object an OpenAI-compatible upstream puts in a whole answer or in a stream's last chunk.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::sse;

/// One key's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    pub requests: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub errors: u64,
    /// Unix seconds of the last request.
    pub last_used_at: Option<u64>,
}

/// What one request contributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_hit: bool,
}

#[derive(Debug, Default)]
pub struct Usage {
    by_key: Mutex<HashMap<String, KeyUsage>>,
}

impl Usage {
    pub fn record(&self, key_id: &str, o: Outcome, now: u64) {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let u = map.entry(key_id.to_string()).or_default();
        u.requests += 1;
        u.cache_hits += u64::from(o.cache_hit);
        u.prompt_tokens += o.prompt_tokens;
        u.completion_tokens += o.completion_tokens;
        u.errors += u64::from(o.status >= 400 || o.status == 0);
        u.last_used_at = Some(now);
    }

    pub fn get(&self, key_id: &str) -> KeyUsage {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key_id).cloned().unwrap_or_default()
    }
}

/// `(prompt_tokens, completion_tokens)` of a whole JSON answer; zeros without a `usage`.
pub fn tokens(body: &[u8]) -> (u64, u64) {
    serde_json::from_slice::<Value>(body)
        .map(|v| tokens_of(&v))
        .unwrap_or((0, 0))
}

/// The same for a recorded SSE stream: each figure as the last event that reports it (chat's
/// final usage chunk; Responses' `response.completed`; Messages' `message_start` for input and
/// `message_delta` for output).
pub fn stream_tokens(recorded: &[u8]) -> (u64, u64) {
    recorded
        .split(|b| *b == b'\n')
        .filter_map(sse::data_payload)
        .filter(|d| d.windows(7).any(|w| w == b"\"usage\""))
        .filter_map(|d| serde_json::from_slice::<Value>(d).ok())
        .map(|v| tokens_of(&v))
        .fold((0, 0), |(i, o), (ni, no)| {
            (if ni > 0 { ni } else { i }, if no > 0 { no } else { o })
        })
}

/// `(input, output)` of the `usage` of an answer or event: at the top (chat, a Messages
/// answer or `message_delta`) or in its `response` / `message` (Responses events,
/// `message_start`); OpenAI's `prompt_tokens`/`completion_tokens` or the
/// `input_tokens`/`output_tokens` of the Responses and Messages APIs.
fn tokens_of(v: &Value) -> (u64, u64) {
    let nested = |outer: &str| v.get(outer).and_then(|o| o.get("usage"));
    let u = [v.get("usage"), nested("response"), nested("message")]
        .into_iter()
        .flatten()
        .find(|u| u.is_object());
    let n = |a: &str, b: &str| {
        let field = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64);
        field(a).or_else(|| field(b)).unwrap_or(0)
    };
    // embeddings report only prompt_tokens
    (
        n("prompt_tokens", "input_tokens"),
        n("completion_tokens", "output_tokens"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_whole_and_streamed_answers() {
        let whole = br#"{"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(tokens(whole), (12, 5));
        assert_eq!(tokens(b"not json"), (0, 0));
        let stream = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        assert_eq!(stream_tokens(stream), (3, 4));
        assert_eq!(stream_tokens(b"data: {\"usage\":null}\n\n"), (0, 0));
        let responses = br#"{"object":"response","usage":{"input_tokens":7,"output_tokens":2}}"#;
        assert_eq!(tokens(responses), (7, 2));
        let done = b"data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":2}}}\n\n";
        assert_eq!(stream_tokens(done), (7, 2));
        let messages = b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\n";
        assert_eq!(stream_tokens(messages), (9, 6));
    }
}
