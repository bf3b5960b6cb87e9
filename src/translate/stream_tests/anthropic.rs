//! Anthropic Messages: a chat stream as Messages events, and a Messages stream as chat chunks.

use super::*;

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
    if let crate::translate::StreamState::Chat(s) = &mut t.state {
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
    let plain = crate::translate::messages_answer::answer(&json!({"content": [
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
