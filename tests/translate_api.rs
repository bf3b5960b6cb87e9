//! Translation through the relay (raw HTTP): the cache keeps working across translation
//! (plain and streamed hits from one chat entry), translated stream events reach the client
//! while the upstream still holds the next chunk, upstream errors and cut streams arrive in
//! the client API's shape and are not cached.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn anthropic_body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

fn responses_body(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-5", "stream": stream, "input": text})
}

/// (event name, data) of a translated stream.
fn named_events(r: &StreamResp) -> Vec<(String, Value)> {
    r.event_texts()
        .iter()
        .filter_map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).ok()?))
        })
        .collect()
}

fn anthropic_stream_text(r: &StreamResp) -> String {
    named_events(r)
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_repeated_translated_request_is_a_hit_plain_and_streamed() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let (_dir, relay) = cached_relay(&up);
    let url = relay.url("/v1/messages");

    let first = post_json(&url, &anthropic_body("cache me", false));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let answer = first.json();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], echo_text("cache me"));

    let again = post_json(&url, &anthropic_body("cache me", false));
    assert_eq!(again.header("x-cache"), Some("HIT"), "{}", again.body);
    assert_eq!(again.json(), answer, "a hit answers what the miss answered");

    let streamed = stream_events(
        relay.addr(),
        "/v1/messages",
        &anthropic_body("cache me", true),
    );
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert_eq!(streamed.header("x-cache"), Some("HIT"));
    let names: Vec<String> = named_events(&streamed)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(anthropic_stream_text(&streamed), echo_text("cache me"));
    assert_eq!(
        up.requests().len(),
        1,
        "one upstream call for three answers"
    );

    // a Responses stream first (recorded as a chat stream), then the plain answer from it
    let url = relay.url("/v1/responses");
    let live = stream_events(
        relay.addr(),
        "/v1/responses",
        &responses_body("stream me", true),
    );
    assert_eq!(live.header("x-cache"), Some("MISS"));
    let completed = named_events(&live).last().cloned().expect("events");
    assert_eq!(completed.0, "response.completed");
    let plain = post_json(&url, &responses_body("stream me", false));
    assert_eq!(plain.header("x-cache"), Some("HIT"), "{}", plain.body);
    let plain = plain.json();
    assert_eq!(
        plain["output"][0]["content"][0]["text"],
        echo_text("stream me")
    );
    // the same answer; each a stored response of its own, with fresh ids (issue 21)
    assert_eq!(
        without_ids(&plain["output"]),
        without_ids(&completed.1["response"]["output"])
    );
    assert_ne!(plain["id"], completed.1["response"]["id"]);
    let hit = stream_events(
        relay.addr(),
        "/v1/responses",
        &responses_body("stream me", true),
    );
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(
        named_events(&hit)
            .last()
            .map(|(n, d)| (n.clone(), without_ids(&d["response"]["output"]))),
        Some((
            "response.completed".to_string(),
            without_ids(&plain["output"])
        ))
    );
    assert_eq!(up.requests().len(), 2);
}

/// Output items without their `id`s (every stored answer has fresh ones).
fn without_ids(output: &serde_json::Value) -> serde_json::Value {
    let mut output = output.clone();
    for item in output.as_array_mut().into_iter().flatten() {
        if let Some(o) = item.as_object_mut() {
            o.remove("id");
        }
    }
    output
}

/// A chat upstream that sends chunk `i + 1` only after the test saw chunk `i`'s translated
/// event at the client: if the relay buffered, the client would never see it and the wait
/// would time out.
#[test]
fn translated_deltas_reach_the_client_while_the_upstream_holds_the_next() {
    for (path, body, marker) in [
        (
            "/v1/messages",
            anthropic_body("hi", true),
            "\"text\":\"part",
        ),
        (
            "/v1/responses",
            responses_body("hi", true),
            "\"delta\":\"part",
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen_rx) = mpsc::channel::<usize>();
        let upstream = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            read_raw_request(&mut reader).unwrap();
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let mut held = Vec::new();
            for i in 0..4 {
                let chunk = chat_chunk("m", json!({"content": format!("part{i} ")}), None);
                conn.write_all(chunk.as_bytes()).unwrap();
                conn.flush().unwrap();
                // hold the next chunk until the client has this one's event
                held.push(seen_rx.recv_timeout(Duration::from_secs(20)) == Ok(i));
            }
            conn.write_all(chat_chunk("m", json!({}), Some("stop")).as_bytes())
                .unwrap();
            conn.write_all(sse_done().as_bytes()).unwrap();
            held
        });
        let relay = Relay::start(&config_json(
            &format!("http://127.0.0.1:{port}/v1"),
            json!({}),
        ));
        let mut s = TcpStream::connect(relay.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let payload = body.to_string();
        write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}", payload.len()).unwrap();
        let mut received = String::new();
        let mut next = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            received.push_str(&String::from_utf8_lossy(&buf[..n]));
            while next < 4 && received.contains(&format!("{marker}{next} ")) {
                seen_tx.send(next).unwrap();
                next += 1;
            }
        }
        let held = upstream.join().unwrap();
        assert_eq!(held, vec![true; 4], "{path}: each translated delta arrived before the upstream sent the next chunk; got:\n{received}");
        assert!(
            received.contains(if path == "/v1/messages" {
                "message_stop"
            } else {
                "response.completed"
            }),
            "{received}"
        );
    }
}

#[test]
fn upstream_errors_and_cut_streams_arrive_in_the_client_shape_and_are_not_cached() {
    let up = Upstream::start(|r| {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let asked = body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if asked == "limit" {
            return Reply::json(
                429,
                json!({"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limited"}}),
            );
        }
        Reply::sse_then_die(vec![(
            Duration::ZERO,
            chat_chunk("m", json!({"content": "half"}), None),
        )])
    });
    let (_dir, relay) = cached_relay(&up);

    let limited = post_json(&relay.url("/v1/messages"), &anthropic_body("limit", false));
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
    let limited = post_json(&relay.url("/v1/responses"), &responses_body("limit", false));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error"]["message"], "slow down");

    for (path, body, error_marker) in [
        (
            "/v1/messages",
            anthropic_body("cut", true),
            "\"type\":\"error\"",
        ),
        (
            "/v1/responses",
            responses_body("cut", true),
            "upstream_stream_interrupted",
        ),
    ] {
        let r = stream_events(relay.addr(), path, &body);
        let events = named_events(&r);
        let last = events.last().expect("events");
        assert_eq!(last.0, "error", "{path}: {:?}", r.events);
        assert!(
            last.1.to_string().contains(error_marker.trim_matches('"'))
                || r.body.contains(error_marker),
            "{path}: {}",
            r.body
        );
        let again = stream_events(relay.addr(), path, &body);
        assert_eq!(
            again.header("x-cache"),
            Some("MISS"),
            "{path}: a cut stream is not cached"
        );
    }

    // a field that cannot be translated: 400 naming it, in each API's shape
    let refused = post_json(
        &relay.url("/v1/messages"),
        &json!({"model": "m", "max_tokens": 5, "container": "c",
        "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(refused.status, 400);
    let v = refused.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`container`"),
        "{v}"
    );
    let refused = post_json(
        &relay.url("/v1/responses"),
        &json!({"model": "m", "input": "x", "background": true}),
    );
    assert!(refused
        .assert_error(400, "untranslatable_field")
        .contains("`background`"));
}

/// With endpoints of several APIs, a request is translated only when no endpoint that serves
/// its model (as the rules leave it) speaks the client's API.
#[test]
fn translation_only_where_no_endpoint_speaks_the_clients_api() {
    let native = Upstream::apis();
    let chat = Upstream::chat_model();
    let config = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "anthropic-like", "url": native.base_url(), "api": "anthropic",
             "api_key": ANTHROPIC_KEY, "models": ["claude-opus-*"]},
            {"name": "responses-like", "url": native.base_url(), "api": "responses",
             "models": ["gpt-*"]},
            {"name": "chat-only", "url": chat.base_url(), "models": ["deepseek-*", "qwen*"]},
        ],
        "model_rules": [{"match_model": "claude-sonnet-*", "set": {"model": "deepseek-chat"}}],
    });
    let relay = Relay::start(&config.to_string());
    let messages = |model: &str| {
        post_json(
            &relay.url("/v1/messages"),
            &json!({"model": model, "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let responses = |model: &str| {
        post_json(
            &relay.url("/v1/responses"),
            &json!({"model": model, "input": "hi"}),
        )
    };
    // (request, the answer text)
    let cases: Vec<(Resp, &str)> = vec![
        (messages("claude-opus-4"), ANTHROPIC_TEXT),
        (messages("claude-sonnet-4-5"), FIXTURE_TEXT),
        (messages("qwen3"), FIXTURE_TEXT),
        (responses("gpt-5"), RESPONSES_TEXT),
        (responses("deepseek-chat"), FIXTURE_TEXT),
    ];
    for (i, (r, text)) in cases.iter().enumerate() {
        assert_eq!(r.status, 200, "case {i}: {}", r.body);
        let v = r.json();
        let got = v["content"][0]["text"]
            .as_str()
            .or_else(|| v["output"][0]["content"][0]["text"].as_str());
        assert_eq!(got, Some(*text), "case {i}: {v}");
    }
    let paths = |up: &Upstream| -> Vec<String> {
        up.requests()
            .iter()
            .map(|r| r.path.split('?').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(paths(&native), ["/v1/messages", "/v1/responses"]);
    assert_eq!(paths(&chat), ["/v1/chat/completions"; 3]);
    assert_eq!(
        chat.requests()[0].json()["model"],
        "deepseek-chat",
        "the rule's model"
    );
}

/// A Messages request translated for a chat endpoint: the client API's own `anthropic-*`
/// headers stay behind and the client's other headers go along, whole, streamed, and streamed
/// with `stream_keepalive_ms` (where the call is sent once the head is out).
#[test]
fn a_translated_messages_request_leaves_its_anthropic_headers_behind() {
    let up = Upstream::start(openai_reply);
    for keepalive in [None, Some(20)] {
        let mut cfg = json!({"listen": "127.0.0.1:0", "upstreams": [{"url": up.base_url()}],
            "cache": {"enabled": false}});
        if let Some(ms) = keepalive {
            cfg["stream_keepalive_ms"] = json!(ms);
        }
        let relay = Relay::start(&cfg.to_string());
        for stream in [false, true] {
            let headers = [
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("Anthropic-Beta", "tools-2024-04-04"),
                ("x-request-tag", "t1"),
            ];
            let body = anthropic_body("leave them", stream).to_string();
            let r = request(
                "POST",
                &relay.url("/v1/messages"),
                &headers,
                Some(body.as_bytes()),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let seen = up.requests().pop().unwrap();
            let case = format!("stream {stream}, keepalive {keepalive:?}");
            assert_eq!(seen.path, "/v1/chat/completions", "{case}");
            assert_eq!(seen.header("x-request-tag"), Some("t1"), "{case}");
            assert_eq!(seen.header("anthropic-version"), None, "{case}");
            assert_eq!(seen.header("anthropic-beta"), None, "{case}");
        }
    }
}
