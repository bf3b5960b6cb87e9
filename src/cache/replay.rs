//! What a stored response is, whether it is worth keeping, and converting it between modes.
//!
//! A stored response is either a JSON body or the SSE text of a stream (told apart by its
//! first byte). [`check`] decides whether it is a complete success; [`sse_to_json`] assembles
//! a stream into the `chat.completion` / `text_completion` a plain request gets (content,
//! `tool_calls`, `finish_reason`, `usage`); [`json_to_sse`] turns a plain answer into the
//! chunk events a streamed request gets.

use serde_json::{json, Map, Value};

use crate::sse::{data_payload, is_blank, Completion};

/// What a stored response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Sse,
}

pub fn form(response: &[u8]) -> Form {
    match response.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Form::Json,
        _ => Form::Sse,
    }
}

/// `Ok(form)` for a complete success worth storing, else why not.
pub fn check(response: &[u8]) -> Result<Form, &'static str> {
    if response.iter().all(u8::is_ascii_whitespace) {
        return Err("empty response");
    }
    match form(response) {
        Form::Json => {
            let v: Value = serde_json::from_slice(response).map_err(|_| "unparsable JSON")?;
            answer_ok(&v).map(|()| Form::Json)
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
                let v: Value = serde_json::from_slice(data).map_err(|_| "unparsable event")?;
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

/// `usage.total_tokens` of a stored answer (0 if it has none).
pub fn total_tokens(response: &[u8]) -> u64 {
    let usage_of = |v: &Value| {
        v.get("usage")
            .and_then(|u| u.get("total_tokens"))
            .and_then(Value::as_u64)
    };
    match form(response) {
        Form::Json => serde_json::from_slice::<Value>(response)
            .ok()
            .as_ref()
            .and_then(usage_of)
            .unwrap_or(0),
        Form::Sse => lines(response)
            .filter_map(data_payload)
            .filter_map(|d| serde_json::from_slice::<Value>(d).ok())
            .filter_map(|v| usage_of(&v))
            .last()
            .unwrap_or(0),
    }
}

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
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else {
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
            if let Some(choice) = choices.get_mut(index) {
                merge_choice(choice, c, is_chat);
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
        acc.entry("logprobs").or_insert_with(|| l.clone());
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

fn append_str(acc: &mut Map<String, Value>, key: &str, piece: Option<&Value>) {
    let Some(piece) = piece.and_then(Value::as_str) else {
        return;
    };
    match acc.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            acc.insert(key.to_string(), Value::String(piece.to_string()));
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
            assert_eq!(check(body.as_bytes()).is_ok(), *ok, "{body}");
        }
    }

    #[test]
    fn events_split_at_blank_lines() {
        let e = events(b"data: a\n\ndata: b\r\n\r\n");
        assert_eq!(e, vec![&b"data: a\n\n"[..], &b"data: b\r\n\r\n"[..]]);
    }
}
