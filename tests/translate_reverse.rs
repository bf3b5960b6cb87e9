//! Issue 21, the other direction: Chat Completions clients on a model only an `anthropic`
//! endpoint serves. The fixture upstream is strict as Anthropic is (`max_tokens` required,
//! alternating turns, `tool_result` ids paired with the `tool_use` before): the relay sends a
//! Messages request with the endpoint's key and version, and answers chat completions (plain
//! and streamed, a tool call round trip), refuses what Messages cannot express, translates
//! errors, and caches the Messages answer (a hit is translated like a live one).

use serde_json::{json, Value};

use crate::common::*;

/// A relay with the cache on, whose only endpoint speaks `anthropic`.
fn anthropic_only(up: &Upstream, dir: &TempDir) -> Relay {
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
    });
    Relay::start(&cfg.to_string())
}

fn strict_anthropic() -> Upstream {
    Upstream::start(|r| {
        anthropic_reply(r).unwrap_or_else(|| Reply::json(404, json!({"error": "not messages"})))
    })
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "stream": stream, "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": content},
        {"role": "user", "content": "please"},
    ]})
}

/// The `data:` payloads of a chat stream.
fn chunks(r: &StreamResp) -> Vec<String> {
    r.event_texts()
        .iter()
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

/// The JSON `data:` payloads of a stream (`[DONE]` left out).
fn parsed(r: &StreamResp) -> Vec<Value> {
    chunks(r)
        .iter()
        .filter_map(|c| serde_json::from_str(c).ok())
        .collect()
}

fn streamed_text(r: &StreamResp) -> String {
    parsed(r)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_chat_client_gets_chat_completions_from_an_anthropic_only_model_plain_streamed_and_cached() {
    let up = strict_anthropic();
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    let url = relay.url("/v1/chat/completions");

    let first = post_json(&url, &chat("hi", false));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let answer = first.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], ANTHROPIC_TEXT);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    assert_eq!(answer["usage"]["completion_tokens"], 8);
    let sent = up.requests();
    let sent = sent.last().expect("one upstream request");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert!(sent.header("anthropic-version").is_some());
    let body = sent.json();
    assert_eq!(body["max_tokens"], 4096, "the documented default");
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "Be brief"}])
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "text", "text": "please"}]}])
    );

    let again = post_json(&url, &chat("hi", false));
    assert_eq!(again.header("x-cache"), Some("HIT"), "{}", again.body);
    let mut hit = again.json();
    let mut live = answer.clone();
    hit["created"] = json!(0);
    live["created"] = json!(0);
    assert_eq!(hit, live, "a hit answers what the miss answered");
    let streamed_hit = stream_events(relay.addr(), "/v1/chat/completions", &chat("hi", true));
    assert_eq!(streamed_hit.header("x-cache"), Some("HIT"));
    assert_eq!(streamed_text(&streamed_hit), ANTHROPIC_TEXT);
    assert_eq!(
        up.requests().len(),
        1,
        "one upstream call for three answers"
    );

    // a live stream: role chunk, deltas, finish, usage when asked, [DONE]; then its hit
    let mut asked = chat("stream me", true);
    asked["stream_options"] = json!({"include_usage": true});
    let live = stream_events(relay.addr(), "/v1/chat/completions", &asked);
    assert_eq!(live.status, 200, "{}", live.body);
    assert_eq!(live.header("x-cache"), Some("MISS"));
    let data = chunks(&live);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let parsed = parsed(&live);
    assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(parsed[0]["object"], "chat.completion.chunk");
    let deltas: Vec<&str> = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(deltas, ANTHROPIC_DELTAS);
    let finish = parsed
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("stop"));
    let usage = parsed
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert_eq!(usage["choices"], json!([]));
    let without = stream_events(
        relay.addr(),
        "/v1/chat/completions",
        &chat("stream me", true),
    );
    assert_eq!(without.header("x-cache"), Some("HIT"));
    assert_eq!(streamed_text(&without), ANTHROPIC_DELTAS.concat());
    assert!(
        !streamed_text(&without).is_empty()
            && chunks(&without).iter().all(|c| !c.contains("\"usage\"")),
        "no usage chunk unasked"
    );
    let plain = post_json(&url, &chat("stream me", false));
    assert_eq!(plain.header("x-cache"), Some("HIT"), "{}", plain.body);
    assert_eq!(
        plain.json()["choices"][0]["message"]["content"],
        ANTHROPIC_TEXT
    );
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn a_tool_call_round_trip_pairs_ids_plain_and_streamed() {
    let up = strict_anthropic();
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    let url = relay.url("/v1/chat/completions");
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}}}}]);
    let ask = json!({"model": "claude-sonnet-4-5", "tools": tools, "max_tokens": 200,
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let first = post_json(&url, &ask);
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let message = &first["choices"][0]["message"];
    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    assert_eq!(call["id"], "toolu_fixture1");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let sent = up.requests().last().unwrap().json();
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let live = stream_events(relay.addr(), "/v1/chat/completions", &streamed);
    let parsed = parsed(&live);
    let calls: Vec<&Value> = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["id"], "toolu_fixture1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let joined: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&joined).unwrap(),
        json!({"city": "Paris"})
    );

    // the round trip: the assistant's call and the tool's answer go back, ids paired
    let mut back = ask.clone();
    back["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        message,
        {"role": "tool", "tool_call_id": "toolu_fixture1", "content": "sunny"},
    ]);
    let done = post_json(&url, &back);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        done.json()["choices"][0]["message"]["content"],
        ANTHROPIC_TOOL_TEXT
    );
    let sent = up.requests().last().unwrap().json();
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_fixture1",
               "content": [{"type": "text", "text": "sunny"}]})
    );
}

#[test]
fn what_messages_cannot_express_and_upstream_errors_arrive_in_the_openai_shape() {
    let up = strict_anthropic();
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    let url = relay.url("/v1/chat/completions");
    for (extra, field) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
    ] {
        let mut body = chat("hi", false);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = post_json(&url, &body);
        assert_eq!(r.status, 400, "{}", r.body);
        let e = r.json();
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{}",
            r.body
        );
    }
    assert!(up.requests().is_empty(), "refused before any upstream call");

    // a turn order Anthropic refuses (a tool answer with no call before it): its 400, in
    // OpenAI's error shape, and nothing cached
    let body = json!({"model": "claude-sonnet-4-5", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "nope", "content": "x"}]});
    for _ in 0..2 {
        let r = post_json(&url, &body);
        assert_eq!(r.status, 400, "{}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{}", r.body);
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tool_use_id"));
    }
    assert_eq!(up.requests().len(), 2, "an error is not cached");
}

#[test]
fn a_cut_messages_stream_ends_with_an_error_chunk_and_is_not_cached() {
    let up = Upstream::start(|r| {
        let body = r.json();
        let mut events = anthropic_events(&body);
        events.truncate(4); // message_start, ping, the text block's start and first delta
        Reply::sse_then_die(
            events
                .into_iter()
                .map(|e| (std::time::Duration::ZERO, e))
                .collect(),
        )
    });
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    for _ in 0..2 {
        let r = stream_events(relay.addr(), "/v1/chat/completions", &chat("cut", true));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-cache"),
            Some("MISS"),
            "a cut stream is not cached"
        );
        let data = chunks(&r);
        assert_eq!(streamed_text(&r), ANTHROPIC_DELTAS[0]);
        let last: Value = serde_json::from_str(data.last().expect("chunks")).expect("JSON");
        assert!(last["error"]["message"].is_string(), "{data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    }
    assert_eq!(up.requests().len(), 2);
}

/// The official openai Python SDK (chat.completions plain, streamed with usage, a tool call
/// round trip plain and streamed, a cache hit) through the relay to the strict fixture.
#[test]
fn openai_python_sdk_chat_completions_on_an_anthropic_only_model() {
    require_python_module("openai");
    let up = strict_anthropic();
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    let out = run_e2e_script(
        "translate_reverse.py",
        &[&relay.url("")],
        std::time::Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "translate_reverse.py failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n--- relay ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        relay.stderr_text()
    );
    assert!(
        stdout.contains("all reverse translation SDK checks passed"),
        "{stdout}"
    );
    assert!(up.requests().iter().all(|r| r.path == "/v1/messages"));
}

/// A Responses client on an anthropic-only model: Responses → Chat → Messages and back, plain
/// and streamed, the second of each a cache hit.
#[test]
fn a_responses_client_reaches_an_anthropic_only_model_through_the_chat_pivot() {
    let up = strict_anthropic();
    let dir = TempDir::new();
    let relay = anthropic_only(&up, &dir);
    let url = relay.url("/v1/responses");
    let ask = |stream: bool| {
        json!({"model": "claude-sonnet-4-5", "stream": stream, "store": false,
               "instructions": "Be brief", "input": "hi", "max_output_tokens": 100})
    };
    let plain = post_json(&url, &ask(false));
    assert_eq!(plain.status, 200, "{}", plain.body);
    let answer = plain.json();
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["output"][0]["content"][0]["text"], ANTHROPIC_TEXT);
    assert_eq!(answer["usage"]["input_tokens"], 12);
    let sent = up.requests().last().unwrap().json();
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief"}])
    );
    let hit = post_json(&url, &ask(false));
    assert_eq!(hit.header("x-cache"), Some("HIT"), "{}", hit.body);

    let live = stream_events(relay.addr(), "/v1/responses", &ask(true));
    assert_eq!(live.status, 200, "{}", live.body);
    let events = parsed(&live);
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(text, ANTHROPIC_TEXT);
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.completed", "{events:?}");
    assert_eq!(done["response"]["usage"]["output_tokens"], 8);
    let again = stream_events(relay.addr(), "/v1/responses", &ask(true));
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert!(up.requests().iter().all(|r| r.path == "/v1/messages"));
    assert_eq!(
        up.requests().len(),
        1,
        "the stream is served from the plain answer"
    );

    // an Anthropic error reaches the Responses client in OpenAI's shape
    let bad = json!({"model": "claude-sonnet-4-5", "store": false, "input": [
        {"type": "function_call_output", "call_id": "nope", "output": "x"}]});
    let r = post_json(&url, &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    let e = r.json();
    assert!(e["error"]["message"].is_string(), "{}", r.body);
    assert!(e.get("type").is_none(), "not Anthropic's shape: {}", r.body);
    assert_eq!(up.requests().len(), 2, "{}", r.body);
}
