//! Cache replay (issue #3): a streamed hit replays the recorded events one by one; an answer
//! stored from a stream serves a plain request and the other way round, tool calls included.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// A tool-call stream, ending with the usage chunk when the request asks for it.
fn tool_call_stream(req: &RecordedRequest) -> Vec<String> {
    let mut events = vec![
        chat_chunk("m", json!({"role": "assistant", "content": null}), None),
        chat_chunk(
            "m",
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        chat_chunk(
            "m",
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            None,
        ),
        chat_chunk(
            "m",
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        ),
        chat_chunk("m", json!({}), Some("tool_calls")),
    ];
    if wants_usage(req) {
        events.push(usage_chunk("m", "chat.completion.chunk"));
    }
    events.push(sse_done());
    events
}

fn ask_tools(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "weather?"}],
           "tools": [{"type": "function", "function": {"name": "get_weather",
                      "parameters": {"type": "object"}}}]})
}

#[test]
fn cache_streamed_hit_replays_recorded_events_flushed_per_event() {
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    let first = stream_events(relay.addr(), "/v1/chat/completions", &ask_stream("s"));
    assert_eq!(first.header("x-cache"), Some("MISS"), "{:?}", first.headers);
    assert!(first.clean_end);
    let second = stream_events(relay.addr(), "/v1/chat/completions", &ask_stream("s"));
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header("x-cache"),
        Some("HIT"),
        "{:?}",
        second.headers
    );
    assert!(second
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    assert_eq!(
        second.event_texts(),
        first.event_texts(),
        "replay = recorded events"
    );
    assert_eq!(second.events.len(), 6, "{:?}", second.event_texts());
    assert!(second.clean_end);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn cache_stream_answer_serves_plain_request_with_tool_calls() {
    let up = Upstream::start(|r| {
        Reply::sse(
            tool_call_stream(r)
                .into_iter()
                .map(|e| (Duration::ZERO, e))
                .collect(),
        )
    });
    let (_dir, relay) = cached_relay(&up);
    let s = stream_events(relay.addr(), "/v1/chat/completions", &ask_tools(true));
    assert_eq!(s.header("x-cache"), Some("MISS"));
    let r = post_json(&relay.url("/v1/chat/completions"), &ask_tools(false));
    assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["id"], "chatcmpl-fixture");
    assert_eq!(v["model"], "m");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(
        c["message"]["tool_calls"],
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]),
        "{v}"
    );
    assert_eq!(up.requests().len(), 1);

    // text deltas too: the openai fixture's stream assembles into its plain text
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    stream_events(relay.addr(), "/v1/chat/completions", &ask_stream("t"));
    let r = post_json(&relay.url("/v1/chat/completions"), &ask("t"));
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], FIXTURE_TEXT);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn cache_plain_answer_serves_streamed_request_as_chunks_with_tool_calls() {
    let answer = json!({
        "id": "chatcmpl-plain", "object": "chat.completion", "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_9", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    });
    let reply = Reply::json(200, answer.clone());
    let up = Upstream::start(move |_| reply.clone());
    let (_dir, relay) = cached_relay(&up);
    let r = post_json(&relay.url("/v1/chat/completions"), &ask_tools(false));
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let mut body = ask_tools(true);
    body["stream_options"] = json!({"include_usage": true});
    let s = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(s.header("x-cache"), Some("HIT"), "{:?}", s.headers);
    assert!(s
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    assert!(s.clean_end);
    let texts = s.event_texts();
    assert_eq!(texts.last().copied(), Some("data: [DONE]"), "{texts:?}");
    let chunks: Vec<Value> = texts
        .iter()
        .filter_map(|t| t.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-plain"));
    let calls = &chunks[0]["choices"][0]["delta"]["tool_calls"];
    assert_eq!(calls[0]["index"], 0, "{calls}");
    assert_eq!(calls[0]["id"], "call_9");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")]);
    let usage = chunks
        .iter()
        .find(|c| !c["usage"].is_null())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["total_tokens"], 9);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn cache_completions_cross_mode_and_embeddings_are_cached() {
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    let s = stream_events(
        relay.addr(),
        "/v1/completions",
        &json!({"model": "m", "prompt": "p", "stream": true}),
    );
    assert_eq!(s.header("x-cache"), Some("MISS"));
    let r = post_json(
        &relay.url("/v1/completions"),
        &json!({"model": "m", "prompt": "p"}),
    );
    assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion", "{v}");
    assert_eq!(v["choices"][0]["text"], FIXTURE_TEXT, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    let e = json!({"model": "m", "input": "hello"});
    let first = post_json(&relay.url("/v1/embeddings"), &e);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = post_json(&relay.url("/v1/embeddings"), &e);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
    // same body on another route is another entry
    let chat = post_json(
        &relay.url("/v1/chat/completions"),
        &json!({"model": "m", "prompt": "p"}),
    );
    assert_eq!(chat.header("x-cache"), Some("MISS"));
    assert_eq!(up.requests().len(), 3);
}
