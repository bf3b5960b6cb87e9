//! Request shaping before a chat request leaves the relay: the `enable_thinking` switch and
//! `context_trim` (dropping the oldest turns of a conversation that is too long).
//!
//! Runs after the model rules and before the cache key is computed and the upstream is called,
//! so the cache sees exactly what the upstream gets.
//!
//! The token estimate is deliberately simple and errs on the high side: 4 tokens per message
//! for the role and framing, plus per character of text 1 token for CJK (Han, kana, Hangul,
//! full-width forms), ¼ token for ASCII and ½ token for any other character. English runs
//! about 4 characters per token in OpenAI-style tokenizers; Chinese and Japanese text about
//! one token per character.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `context_trim` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrim {
    #[serde(default = "yes")]
    enabled: bool,
    max_context_tokens: u64,
}

fn yes() -> bool {
    true
}

/// The checked shaping settings.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// `Some(b)` sets `enable_thinking` on chat requests; `None` leaves the client's value.
    pub enable_thinking: Option<bool>,
    /// The token budget of `messages`; `None` = no trimming.
    pub max_context_tokens: Option<u64>,
}

/// Checks the shaping keys.
pub fn settings(enable_thinking: Option<bool>, trim: Option<RawTrim>) -> Result<Shaping, String> {
    let max_context_tokens = match trim {
        Some(t) if t.enabled && t.max_context_tokens == 0 => {
            return Err("`context_trim.max_context_tokens` must be positive".to_string())
        }
        Some(t) if t.enabled => Some(t.max_context_tokens),
        _ => None,
    };
    Ok(Shaping {
        enable_thinking,
        max_context_tokens,
    })
}

/// Applies the shaping to a chat request body. Returns how many messages were dropped.
pub fn apply_chat(s: &Shaping, body: &mut Map<String, Value>) -> usize {
    if let Some(on) = s.enable_thinking {
        body.insert("enable_thinking".to_string(), Value::Bool(on));
    }
    match (s.max_context_tokens, body.get_mut("messages")) {
        (Some(max), Some(Value::Array(messages))) => trim(messages, max),
        _ => 0,
    }
}

/// Drops the oldest turns until the estimate fits `max`. A turn starts at a `user` message and
/// runs to the next one, so an assistant message with `tool_calls` and its `tool` results are
/// always dropped together and the kept conversation still starts with a user message. Every
/// system message and the latest turn stay. Returns how many messages were dropped (the
/// result may still be over `max`: the upstream then decides).
pub fn trim(messages: &mut Vec<Value>, max: u64) -> usize {
    let costs: Vec<u64> = messages.iter().map(message_tokens).collect();
    let mut total: u64 = costs.iter().sum();
    if total <= max || messages.is_empty() {
        return 0;
    }
    let mut turns = turns(messages);
    turns.pop(); // the latest turn always stays
    let mut keep = vec![true; messages.len()];
    for range in turns {
        if total <= max {
            break;
        }
        for i in range {
            let (Some(m), Some(k), Some(cost)) = (messages.get(i), keep.get_mut(i), costs.get(i))
            else {
                continue;
            };
            if !is_system(m) {
                *k = false;
                total -= cost;
            }
        }
    }
    let before = messages.len();
    let mut flags = keep.into_iter();
    messages.retain(|_| flags.next().unwrap_or(true));
    before - messages.len()
}

/// Index ranges of the turns: each starts at a `user` message (the first also at index 0).
fn turns(messages: &[Value]) -> Vec<std::ops::Range<usize>> {
    let mut starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, m)| role(m) == "user")
        .map(|(i, _)| i)
        .collect();
    starts.insert(0, 0);
    let mut ends: Vec<usize> = starts.iter().skip(1).copied().collect();
    ends.push(messages.len());
    starts.into_iter().zip(ends).map(|(s, e)| s..e).collect()
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

fn is_system(m: &Value) -> bool {
    matches!(role(m), "system" | "developer")
}

/// Estimated tokens of one message (see the module doc).
pub fn message_tokens(m: &Value) -> u64 {
    let mut quarters = 16; // 4 tokens of framing
    if let Some(obj) = m.as_object() {
        for (k, v) in obj {
            quarters += match (k.as_str(), v) {
                ("role", _) => 0,
                (_, Value::String(s)) => text_quarters(s),
                ("content", Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match p.get("text") {
                        Some(Value::String(t)) => text_quarters(t),
                        _ => text_quarters(&p.to_string()),
                    })
                    .sum(),
                (_, Value::Null) => 0,
                (_, other) => text_quarters(&other.to_string()),
            };
        }
    }
    quarters.div_ceil(4)
}

/// Estimated input tokens of a whole chat request: its messages, and its tools' JSON text.
pub fn request_tokens(body: &Map<String, Value>) -> u64 {
    let messages: u64 = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |ms| ms.iter().map(message_tokens).sum());
    let tools = body
        .get("tools")
        .map_or(0, |t| text_quarters(&t.to_string()).div_ceil(4));
    messages + tools
}

/// Estimated tokens of a text, in quarter tokens.
fn text_quarters(s: &str) -> u64 {
    s.chars()
        .map(|c| match c {
            c if c.is_ascii() => 1,
            c if is_cjk(c) => 4,
            _ => 2,
        })
        .sum()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF     // Hangul Jamo
        | 0x2E80..=0x2FDF   // CJK radicals
        | 0x3000..=0x30FF   // CJK punctuation, Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF00..=0xFFEF   // full-width forms
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimate_counts_cjk_more_than_english() {
        let en = message_tokens(&json!({"role": "user", "content": "a".repeat(400)}));
        let zh = message_tokens(&json!({"role": "user", "content": "字".repeat(400)}));
        assert_eq!(en, 4 + 100);
        assert_eq!(zh, 4 + 400);
    }

    fn roles(messages: &[Value]) -> Vec<String> {
        messages
            .iter()
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn drops_oldest_keeps_system_and_latest() {
        let long = "x".repeat(400); // ~104 tokens each
        let mut m = vec![
            json!({"role": "system", "content": "sys"}),
            json!({"role": "user", "content": format!("u1{long}")}),
            json!({"role": "assistant", "content": format!("a1{long}")}),
            json!({"role": "user", "content": format!("u2{long}")}),
        ];
        assert_eq!(trim(&mut m, 150), 2);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["role"], "system");
        assert!(roles(&m)[1].starts_with("u2"));
        // The latest message stays even when it alone is over the budget.
        let mut m = vec![json!({"role": "user", "content": long.repeat(10)})];
        assert_eq!(trim(&mut m, 10), 0);
    }
}
