//! Chat completions and legacy completions: a recorded stream assembled into the plain answer
//! ([`sse_to_json`]: content, `tool_calls`, every `logprobs` entry in order, `finish_reason`,
//! `usage`) and a plain answer cut into chunk events ([`json_to_sse`]).

use serde_json::{json, Map, Value};

use crate::answer::data_payload;
use crate::api::append_str;

use super::lines;

/// Assembles a stored stream into the answer a plain request gets.
pub fn sse_to_json(response: &[u8]) -> Option<Value> {
    let mut head: Option<Map<String, Value>> = None;
    let mut choices: Vec<Map<String, Value>> = Vec::new();
    let mut usage = Value::Null;
    let mut is_chat = true;
    for data in lines(response).filter_map(data_payload) {
        if data == b"[DONE]" {
            continue;
        }
        let Ok(Value::Object(chunk)) = crate::json::from_slice::<Value>(data) else {
            continue;
        };
        if head.is_none() {
            is_chat = chunk.get("object").and_then(Value::as_str) != Some("text_completion");
            let mut h = Map::new();
            for k in ["id", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(k).filter(|v| !v.is_null()) {
                    h.insert(k.to_string(), v.clone());
                }
            }
            head = Some(h);
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index > 1024 {
                continue;
            }
            while choices.len() <= index {
                choices.push(Map::new());
            }
            if let Some(acc) = choices.get_mut(index) {
                merge_choice(acc, c, is_chat);
            }
        }
    }
    let mut out = head?;
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| finish_choice(i, &mut c, is_chat))
        .collect();
    out.insert(
        "object".into(),
        json!(if is_chat {
            "chat.completion"
        } else {
            "text_completion"
        }),
    );
    out.insert("choices".into(), Value::Array(choices));
    if !usage.is_null() {
        out.insert("usage".into(), usage);
    }
    Some(Value::Object(out))
}

/// Folds one chunk's choice into the assembled one (`content`/`text` appended, tool calls
/// merged by index with their `arguments` appended).
fn merge_choice(acc: &mut Map<String, Value>, c: &Value, is_chat: bool) {
    if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
        acc.insert("finish_reason".into(), f.clone());
    }
    if let Some(l) = c.get("logprobs").filter(|l| !l.is_null()) {
        merge_logprobs(acc, l);
    }
    if !is_chat {
        append_str(acc, "text", c.get("text"));
        return;
    }
    let Some(delta) = c.get("delta").and_then(Value::as_object) else {
        return;
    };
    let msg = acc
        .entry("message")
        .or_insert_with(|| json!({"role": "assistant", "content": null}));
    let Some(msg) = msg.as_object_mut() else {
        return;
    };
    for (k, v) in delta {
        match k.as_str() {
            "content" | "reasoning_content" | "refusal" => append_str(msg, k, Some(v)),
            "tool_calls" => {
                for call in v.as_array().into_iter().flatten() {
                    merge_tool_call(msg, call);
                }
            }
            _ if !v.is_null() => {
                msg.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// Appends a chunk's `logprobs` to the assembled ones: arrays (`content`, `refusal` for chat;
/// `tokens`, `token_logprobs`, `top_logprobs`, `text_offset` for completions) are
/// concatenated in order, anything else keeps its first non-null value.
fn merge_logprobs(acc: &mut Map<String, Value>, piece: &Value) {
    let slot = acc.entry("logprobs").or_insert_with(|| json!({}));
    let (Value::Object(into), Value::Object(from)) = (slot, piece) else {
        return;
    };
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
            (Some(existing), _) if !existing.is_null() => {}
            (_, v) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_tool_call(msg: &mut Map<String, Value>, call: &Value) {
    let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    if index > 1024 {
        return;
    }
    let calls = msg.entry("tool_calls").or_insert_with(|| json!([]));
    let Some(calls) = calls.as_array_mut() else {
        return;
    };
    while calls.len() <= index {
        calls.push(json!({"function": {"arguments": ""}}));
    }
    let Some(acc) = calls.get_mut(index).and_then(Value::as_object_mut) else {
        return;
    };
    for k in ["id", "type"] {
        if let Some(v) = call.get(k).filter(|v| !v.is_null()) {
            acc.insert(k.to_string(), v.clone());
        }
    }
    if let (Some(f), Some(Value::Object(af))) = (call.get("function"), acc.get_mut("function")) {
        if let Some(name) = f.get("name").filter(|v| !v.is_null()) {
            af.insert("name".into(), name.clone());
        }
        append_str(af, "arguments", f.get("arguments"));
    }
}

fn finish_choice(index: usize, c: &mut Map<String, Value>, is_chat: bool) -> Value {
    let mut out = Map::new();
    out.insert("index".into(), json!(index));
    if is_chat {
        let msg = c
            .remove("message")
            .unwrap_or_else(|| json!({"role": "assistant", "content": null}));
        out.insert("message".into(), msg);
    } else {
        out.insert("text".into(), c.remove("text").unwrap_or(json!("")));
    }
    out.insert(
        "logprobs".into(),
        c.remove("logprobs").unwrap_or(Value::Null),
    );
    out.insert(
        "finish_reason".into(),
        c.remove("finish_reason").unwrap_or(Value::Null),
    );
    Value::Object(out)
}

/// Turns a plain answer into the SSE events a streamed request gets: per choice one chunk with
/// the whole content (and tool calls), then one with its `finish_reason`; a usage chunk when the
/// client asked for it (`stream_options.include_usage`); then `data: [DONE]`.
pub fn json_to_sse(answer: &Value, include_usage: bool) -> Vec<Vec<u8>> {
    let is_chat = answer.get("object").and_then(Value::as_str) != Some("text_completion");
    let object = if is_chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut base = Map::new();
    for k in ["id", "created", "model", "system_fingerprint"] {
        if let Some(v) = answer.get(k) {
            base.insert(k.to_string(), v.clone());
        }
    }
    base.insert("object".into(), json!(object));
    let chunk = |choice: Value| {
        let mut c = base.clone();
        c.insert("choices".into(), json!([choice]));
        event(&Value::Object(c))
    };
    let mut out = Vec::new();
    for (i, c) in answer
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let index = c.get("index").cloned().unwrap_or(json!(i));
        let finish = c.get("finish_reason").cloned().unwrap_or(Value::Null);
        if is_chat {
            let mut delta = c.get("message").cloned().unwrap_or(json!({}));
            if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for (n, call) in calls.iter_mut().enumerate() {
                    if let Some(o) = call.as_object_mut() {
                        o.insert("index".into(), json!(n));
                    }
                }
            }
            out.push(chunk(json!({"index": index, "delta": delta, "logprobs": c.get("logprobs"), "finish_reason": null})));
            out.push(chunk(
                json!({"index": index, "delta": {}, "finish_reason": finish}),
            ));
        } else {
            out.push(chunk(json!({"index": index, "text": c.get("text"), "logprobs": c.get("logprobs"), "finish_reason": finish})));
        }
    }
    if include_usage {
        if let Some(u) = answer.get("usage") {
            let mut c = base.clone();
            c.insert("choices".into(), json!([]));
            c.insert("usage".into(), u.clone());
            out.push(event(&Value::Object(c)));
        }
    }
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

fn event(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

/// True for a usage-only chunk: `"choices": []` and a non-null `usage`.
pub fn is_usage_only(event: &[u8]) -> bool {
    let Some(data) = crate::answer::lines(event).find_map(data_payload) else {
        return false;
    };
    if !crate::answer::has_non_null(data, &crate::answer::USAGE) {
        return false;
    }
    let Ok(v) = crate::json::from_slice::<Value>(data) else {
        return false;
    };
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(|u| !u.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: &[Value]) -> Vec<u8> {
        let mut s = String::new();
        for c in chunks {
            s.push_str(&format!("data: {c}\n\n"));
        }
        s.push_str("data: [DONE]\n\n");
        s.into_bytes()
    }

    #[test]
    fn chat_logprobs_are_merged_in_order() {
        let tok = |t: &str| json!({"token": t, "logprob": -0.1, "bytes": [], "top_logprobs": []});
        let s = stream(&[
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0,
                   "delta": {"role": "assistant", "content": ""},
                   "logprobs": {"content": [], "refusal": null}, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0,
                   "delta": {"content": "Hi"}, "logprobs": {"content": [tok("Hi")], "refusal": null},
                   "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0,
                   "delta": {"content": " there"},
                   "logprobs": {"content": [tok(" there")], "refusal": null},
                   "finish_reason": "stop"}]}),
        ]);
        let v = sse_to_json(&s).unwrap();
        let lp = &v["choices"][0]["logprobs"];
        assert_eq!(lp["content"], json!([tok("Hi"), tok(" there")]), "{v}");
        assert_eq!(lp["refusal"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["content"], "Hi there");
    }

    #[test]
    fn completion_logprobs_are_merged_in_order() {
        let piece = |t: &str, off: u64| {
            json!({"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": t,
                   "logprobs": {"tokens": [t], "token_logprobs": [-0.5], "top_logprobs": [{t: -0.5}],
                                "text_offset": [off]}, "finish_reason": null}]})
        };
        let v = sse_to_json(&stream(&[piece("a", 0), piece("b", 1), piece("c", 2)])).unwrap();
        let lp = &v["choices"][0]["logprobs"];
        assert_eq!(lp["tokens"], json!(["a", "b", "c"]), "{v}");
        assert_eq!(lp["token_logprobs"], json!([-0.5, -0.5, -0.5]));
        assert_eq!(lp["text_offset"], json!([0, 1, 2]));
        assert_eq!(lp["top_logprobs"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["choices"][0]["text"], "abc");
    }

    #[test]
    fn usage_only_chunks() {
        assert!(is_usage_only(
            b"data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n"
        ));
        assert!(!is_usage_only(
            b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n"
        ));
        assert!(!is_usage_only(b"data: [DONE]\n\n"));
    }
}
