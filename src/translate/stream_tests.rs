//! The stream translators, fed a chat stream line by line.

use serde_json::{json, Value};

use super::{from_chat, Dialect, Stream};

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
fn anthropic_events_in_order_each_chunk_at_once() {
    let (per_line, s) = run(Dialect::Anthropic);
    assert!(s.finished());
    // every content chunk yields its delta at once
    for (i, want) in [
        (1, "thinking_delta"),
        (2, "text_delta"),
        (3, "text_delta"),
        (5, "input_json_delta"),
        (6, "input_json_delta"),
    ] {
        let last = per_line[i].last().expect("events for the chunk");
        assert_eq!(last.1["delta"]["type"], want, "line {i}: {:?}", per_line[i]);
    }
    let all: Vec<(String, Value)> = per_line.into_iter().flatten().collect();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &all {
        assert_eq!(data["type"], name.as_str());
    }
    // what an accumulator builds equals the plain translation
    let mut content: Vec<Value> = Vec::new();
    let mut json_parts = String::new();
    for (name, d) in &all {
        match name.as_str() {
            "content_block_start" => content.push(d["content_block"].clone()),
            "content_block_delta" => {
                let block = &mut content[d["index"].as_u64().expect("index") as usize];
                match d["delta"]["type"].as_str() {
                    Some("text_delta") => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or(""),
                            d["delta"]["text"].as_str().unwrap_or("")
                        ))
                    }
                    Some("thinking_delta") => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap_or(""),
                            d["delta"]["thinking"].as_str().unwrap_or("")
                        ))
                    }
                    _ => json_parts.push_str(d["delta"]["partial_json"].as_str().unwrap_or("")),
                }
            }
            _ => {}
        }
    }
    content[2]["input"] = serde_json::from_str(&json_parts).expect("arguments");
    let plain = from_chat(Dialect::Anthropic, &chat_answer());
    assert_eq!(Value::Array(content), plain["content"]);
    let (_, delta) = &all[all.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"], plain["usage"]);
    assert_eq!(all[0].1["message"]["id"], plain["id"]);
}

#[test]
fn responses_events_in_order_each_chunk_at_once() {
    let (per_line, s) = run(Dialect::Responses);
    assert!(s.finished());
    for (i, want) in [
        (1, "response.reasoning_text.delta"),
        (2, "response.output_text.delta"),
        (3, "response.output_text.delta"),
        (5, "response.function_call_arguments.delta"),
        (6, "response.function_call_arguments.delta"),
    ] {
        let last = per_line[i].last().expect("events for the chunk");
        assert_eq!(last.0, want, "line {i}");
    }
    let all: Vec<(String, Value)> = per_line.into_iter().flatten().collect();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, (name, data)) in all.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], n as u64);
    }
    // added and done items keep their identity; the final response equals the plain translation
    let plain = from_chat(Dialect::Responses, &chat_answer());
    let done: Vec<&Value> = all
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    let added: Vec<&Value> = all
        .iter()
        .filter(|(n, _)| n == "response.output_item.added")
        .map(|(_, d)| &d["item"])
        .collect();
    for (a, d) in added.iter().zip(&done) {
        assert_eq!(
            (&a["id"], &a["type"], &a.get("call_id")),
            (&d["id"], &d["type"], &d.get("call_id"))
        );
    }
    let completed = &all[all.len() - 1].1["response"];
    assert_eq!(completed["output"], plain["output"]);
    assert_eq!(completed["usage"], plain["usage"]);
    assert_eq!(completed["id"], plain["id"]);
    assert_eq!(all[0].1["response"]["id"], plain["id"]);
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

/// The other direction: an Anthropic stream (thinking, text, two tool calls, cache usage) as
/// chat chunks, whose pieces add up to the plain answer of the same message.
#[test]
fn a_messages_stream_becomes_chat_chunks_that_add_up_to_the_plain_answer() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "cache_read_input_tokens": 10,
                      "cache_creation_input_tokens": 2, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "t1", "name": "a", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "t2", "name": "b", "input": {}}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ];
    let mut t = Stream::new(Dialect::Chat);
    if let super::StreamState::Chat(s) = &mut t.state {
        s.include_usage = true;
    }
    let mut out = Vec::new();
    for e in &events {
        out.extend(t.line(b"event: x\n"));
        out.extend(t.line(format!("data: {e}\n").as_bytes()));
    }
    out.extend(t.end());
    let text = String::from_utf8(out).expect("utf-8");
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let delta = |k: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][k].as_str())
            .collect()
    };
    assert_eq!(delta("reasoning_content"), "Hmm");
    assert_eq!(delta("content"), "Hi");
    // the thinking block goes out whole with its signature, as in the plain answer
    let thinking: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("thinking_blocks"))
        .collect();
    let plain = super::messages_answer::answer(&json!({"content": [
        {"type": "thinking", "thinking": "Hmm", "signature": "s"}, {"type": "text", "text": "Hi"}]}));
    assert_eq!(
        thinking,
        vec![&plain["choices"][0]["message"]["thinking_blocks"]]
    );
    assert_eq!(
        thinking[0],
        &json!([{"type": "thinking", "thinking": "Hmm", "signature": "s"}])
    );
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    let heads: Vec<(Value, Value)> = calls
        .iter()
        .filter(|c| c.get("id").is_some())
        .map(|c| (c["index"].clone(), c["id"].clone()))
        .collect();
    assert_eq!(
        heads,
        vec![(json!(0), json!("t1")), (json!(1), json!("t2"))]
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage");
    assert_eq!(usage["usage"]["prompt_tokens"], 17);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
    assert_eq!(usage["usage"]["completion_tokens"], 9);
}
