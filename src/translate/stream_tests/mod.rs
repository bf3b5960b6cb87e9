//! The stream translators, fed a chat stream line by line: the fixtures and what holds for every
//! API here; `anthropic.rs` and `responses.rs` each API's own event sequence.

use serde_json::{json, Value};

use super::{from_chat, Dialect, Stream};

mod anthropic;
mod responses;

/// A chat stream: reasoning, text in two pieces, one tool call in two pieces, the finish,
/// a usage chunk and `[DONE]`.
fn chat_stream() -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let call = |id: Option<&str>, name: Option<&str>, args: &str| {
        let mut function = json!({"arguments": args});
        if let Some(n) = name {
            function["name"] = json!(n);
        }
        let mut c = json!({"index": 0, "function": function});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        json!({"tool_calls": [c]})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"reasoning_content": "Think"}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(call(Some("call_1"), Some("get_weather"), ""), Value::Null),
        chunk(call(None, None, "{\"city\":"), Value::Null),
        chunk(call(None, None, "\"Oslo\"}"), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    ];
    let mut lines: Vec<String> = events.iter().map(|e| format!("data: {e}\n")).collect();
    lines.push("data: [DONE]\n".to_string());
    lines
}

/// The same answer as one chat completion.
fn chat_answer() -> Value {
    json!({"id": "c1", "object": "chat.completion", "created": 7, "model": "m",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
               "role": "assistant", "content": "Hello", "reasoning_content": "Think",
               "tool_calls": [{"id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
}

/// (event name, data) of SSE bytes.
fn parse(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .expect("event line");
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data line");
            (name.to_string(), serde_json::from_str(data).expect("json"))
        })
        .collect()
}

/// Feeds the stream; returns each line's events.
fn run(dialect: Dialect) -> (Vec<Vec<(String, Value)>>, Stream) {
    let mut s = Stream::new(dialect);
    let per_line = chat_stream()
        .iter()
        .map(|l| parse(&s.line(l.as_bytes())))
        .collect();
    (per_line, s)
}

#[test]
fn a_cut_or_failed_stream_ends_with_one_error_event() {
    for dialect in [Dialect::Anthropic, Dialect::Responses] {
        let mut s = Stream::new(dialect);
        let lines = chat_stream();
        s.line(lines[2].as_bytes());
        let err = parse(&s.line(b"data: {\"error\":{\"message\":\"overloaded\"}}\n"));
        assert_eq!(err.len(), 1, "{dialect:?}");
        assert_eq!(err[0].0, "error");
        assert!(err[0].1.to_string().contains("overloaded"));
        assert!(s.finished());
        assert!(
            s.end().is_empty()
                && s.fail("again").is_empty()
                && s.line(lines[3].as_bytes()).is_empty()
        );
    }
}

#[test]
fn length_finish_is_incomplete_and_max_tokens() {
    let lines = [
        "data: {\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abc\"}}]}\n",
        "data: {\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n",
    ];
    let mut r = Stream::new(Dialect::Responses);
    let mut a = Stream::new(Dialect::Anthropic);
    for l in lines {
        r.line(l.as_bytes());
        a.line(l.as_bytes());
    }
    // no [DONE]: the upstream closed after its finish_reason
    let r_end = parse(&r.end());
    let last = r_end.last().expect("events");
    assert_eq!(last.0, "response.incomplete");
    assert_eq!(
        last.1["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    let a_end = parse(&a.end());
    assert_eq!(
        a_end[a_end.len() - 2].1["delta"]["stop_reason"],
        "max_tokens"
    );
}

/// Two tool calls interleaved (call 0's head, call 1's head, then their arguments in turns),
/// with text before them, as one chat stream and as the same plain answer.
fn interleaved() -> (Vec<String>, Value) {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c3", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let piece = |i: u64, head: Option<(&str, &str)>, args: &str| {
        let mut c = json!({"index": i, "function": {"arguments": args}});
        if let Some((id, name)) = head {
            c["id"] = json!(id);
            c["type"] = json!("function");
            c["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [c]}), Value::Null)
    };
    let events = [
        chunk(json!({"content": "Checking."}), Value::Null),
        piece(0, Some(("call_a", "weather")), ""),
        piece(1, Some(("call_b", "time")), ""),
        piece(0, None, "{\"city\":"),
        piece(1, None, "{\"zone\":"),
        piece(0, None, "\"Oslo\"}"),
        piece(1, None, "\"CET\"}"),
        chunk(json!({}), json!("tool_calls")),
    ];
    let mut lines: Vec<String> = events.iter().map(|e| format!("data: {e}\n")).collect();
    lines.push("data: [DONE]\n".to_string());
    let plain = json!({"id": "c3", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "time", "arguments": "{\"zone\":\"CET\"}"}}]}}]});
    (lines, plain)
}

#[test]
fn interleaved_calls_stream_the_plain_answers_blocks_and_items() {
    let (lines, plain) = interleaved();
    // Anthropic: blocks one after another; what they add up to is the plain content
    let mut s = Stream::new(Dialect::Anthropic);
    let events: Vec<(String, Value)> = lines
        .iter()
        .flat_map(|l| parse(&s.line(l.as_bytes())))
        .collect();
    let mut content: Vec<Value> = Vec::new();
    let mut open = None;
    let mut json_text = String::new();
    for (name, d) in &events {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block starts while another is open");
                open = d["index"].as_u64();
                content.push(d["content_block"].clone());
                json_text.clear();
            }
            "content_block_delta" => {
                assert_eq!(d["index"].as_u64(), open, "a delta outside its block");
                let block = content.last_mut().expect("open block");
                match d["delta"]["type"].as_str() {
                    Some("text_delta") => block["text"] = d["delta"]["text"].clone(),
                    _ => {
                        json_text.push_str(d["delta"]["partial_json"].as_str().unwrap_or(""));
                        block["input"] = serde_json::from_str(&json_text).unwrap_or(Value::Null);
                    }
                }
            }
            "content_block_stop" => open = None,
            _ => {}
        }
    }
    assert_eq!(
        Value::Array(content),
        from_chat(Dialect::Anthropic, &plain)["content"]
    );
    // Responses: the completed response's output is the plain one
    let mut s = Stream::new(Dialect::Responses);
    let events: Vec<(String, Value)> = lines
        .iter()
        .flat_map(|l| parse(&s.line(l.as_bytes())))
        .collect();
    let (_, completed) = events.last().expect("events");
    let want = from_chat(Dialect::Responses, &plain);
    assert_eq!(completed["response"]["output"], want["output"]);
    let done: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    assert_eq!(
        done,
        want["output"]
            .as_array()
            .expect("output")
            .iter()
            .collect::<Vec<_>>()
    );
}
