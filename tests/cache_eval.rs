//! The eval workflow of issue #11: a few hundred mixed requests (plain and streamed chat, tool
//! calls, embeddings, legacy completions) recorded once in `record` mode, exported to a
//! cassette, imported into an empty directory and replayed in `replay` mode with the upstream
//! stopped: every answer a hit, byte for byte; then one changed parameter per request gives a
//! `cache_miss` that names it, never a hit.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// A deterministic upstream whose answers depend on the whole request (a tag of its hash), in
/// OpenAI's wire format: chat (text or tool calls), legacy completions, embeddings; streams
/// end with the usage chunk when asked.
fn eval_reply(req: &RecordedRequest) -> Reply {
    let body = req.json();
    let tag = sha256_hex(&String::from_utf8_lossy(&req.body))[..12].to_string();
    let model = body["model"].as_str().unwrap_or("m").to_string();
    let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
    let stream = body["stream"] == json!(true);
    let sse = |mut chunks: Vec<Value>, object: &str| {
        if wants_usage(req) {
            chunks.push(
                json!({"id": tag, "object": object, "created": 1, "model": model,
                               "choices": [], "usage": usage}),
            );
        }
        let mut events: Vec<(Duration, String)> = chunks
            .iter()
            .map(|c| (Duration::ZERO, sse_data(c)))
            .collect();
        events.push((Duration::ZERO, sse_done()));
        Reply::sse(events)
    };
    match req.path.as_str() {
        "/v1/embeddings" => Reply::json(
            200,
            json!({"object": "list", "model": model, "usage": {"prompt_tokens": 2, "total_tokens": 2},
                   "data": [{"object": "embedding", "index": 0,
                             "embedding": [tag.len() as f64 / 100.0, 0.25, -0.5]}]}),
        ),
        "/v1/completions" if stream => {
            let c = |text: &str, fin: Value| {
                json!({"id": tag, "object": "text_completion", "created": 1, "model": model,
                       "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": fin}]})
            };
            sse(
                vec![c("once ", Value::Null), c(&tag, json!("stop"))],
                "text_completion",
            )
        }
        "/v1/completions" => Reply::json(
            200,
            json!({"id": tag, "object": "text_completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "text": format!("once {tag}"), "logprobs": null,
                                "finish_reason": "stop"}], "usage": usage}),
        ),
        _ if body.get("tools").is_some() => {
            let args = format!("{{\"q\":\"{tag}\"}}");
            if stream {
                let c = |delta: Value, fin: Value| {
                    json!({"id": tag, "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]})
                };
                sse(
                    vec![
                        c(
                            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                            "id": format!("call_{tag}"), "type": "function",
                            "function": {"name": "lookup", "arguments": ""}}]}),
                            Value::Null,
                        ),
                        c(
                            json!({"tool_calls": [{"index": 0, "function": {"arguments": args}}]}),
                            Value::Null,
                        ),
                        c(json!({}), json!("tool_calls")),
                    ],
                    "chat.completion.chunk",
                )
            } else {
                Reply::json(
                    200,
                    json!({"id": tag, "object": "chat.completion", "created": 1, "model": model,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                               "tool_calls": [{"id": format!("call_{tag}"), "type": "function",
                                               "function": {"name": "lookup", "arguments": args}}]},
                               "logprobs": null, "finish_reason": "tool_calls"}],
                           "usage": usage}),
                )
            }
        }
        _ if stream => {
            let c = |delta: Value, fin: Value| {
                json!({"id": tag, "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": fin}]})
            };
            sse(
                vec![
                    c(json!({"role": "assistant", "content": ""}), Value::Null),
                    c(json!({"content": "answer "}), Value::Null),
                    c(json!({"content": tag}), Value::Null),
                    c(json!({}), json!("stop")),
                ],
                "chat.completion.chunk",
            )
        }
        _ => Reply::json(
            200,
            json!({"id": tag, "object": "chat.completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant",
                                "content": format!("answer {tag}")},
                                "logprobs": null, "finish_reason": "stop"}],
                   "usage": usage}),
        ),
    }
}

/// One request of the workload: its path, body, and the top-level field a changed copy alters.
struct Case {
    path: &'static str,
    body: Value,
    stream: bool,
}

/// 300 requests, each unique in its text and in `max_tokens`/`dimensions`, so any two differ
/// in at least two fields.
fn workload() -> Vec<Case> {
    (0..300)
        .map(|i| {
            let text = format!("question {i}");
            let chat = |stream: bool| {
                json!({"model": "gpt-eval", "stream": stream, "temperature": 0.2,
                       "max_tokens": 100 + i,
                       "messages": [{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": text}]})
            };
            match i % 6 {
                0 => Case { path: "/v1/chat/completions", body: chat(false), stream: false },
                1 => Case { path: "/v1/chat/completions", body: chat(true), stream: true },
                2 => {
                    let mut b = chat(true);
                    b["stream_options"] = json!({"include_usage": true});
                    Case { path: "/v1/chat/completions", body: b, stream: true }
                }
                3 => {
                    let stream = i % 12 == 3;
                    let mut b = chat(stream);
                    b["tools"] = json!([{"type": "function", "function": {"name": "lookup",
                        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
                    Case { path: "/v1/chat/completions", body: b, stream }
                }
                4 => Case {
                    path: "/v1/embeddings",
                    body: json!({"model": "emb-eval", "input": text, "dimensions": 100 + i}),
                    stream: false,
                },
                _ => {
                    let stream = i % 12 == 5;
                    Case {
                        path: "/v1/completions",
                        body: json!({"model": "gpt-eval-instruct", "prompt": text, "stream": stream,
                                     "max_tokens": 100 + i, "temperature": 0.2}),
                        stream,
                    }
                }
            }
        })
        .collect()
}

/// Sends a case; returns (status, X-Cache, body bytes as received).
fn send(relay: &Relay, case: &Case, body: &Value) -> (u16, String, String) {
    if case.stream {
        let s = stream_events(relay.addr(), case.path, body);
        let x = s.header("x-cache").unwrap_or("-").to_string();
        (s.status, x, s.body)
    } else {
        let r = post_json(&relay.url(case.path), body);
        let x = r.header("x-cache").unwrap_or("-").to_string();
        (r.status, x, r.body)
    }
}

/// A copy of `case`'s body with one parameter changed, and that parameter's path.
fn changed(case: &Case, i: usize) -> (Value, &'static str) {
    let mut b = case.body.clone();
    let field = if case.path == "/v1/embeddings" {
        match i % 2 {
            0 => {
                b["input"] = json!(format!("question {i}?"));
                "input"
            }
            _ => {
                b["encoding_format"] = json!("float");
                "encoding_format"
            }
        }
    } else {
        match i % 4 {
            0 => {
                b["temperature"] = json!(0.7);
                "temperature"
            }
            1 => {
                b["seed"] = json!(42);
                "seed"
            }
            2 => {
                b["max_tokens"] = json!(5000 + i);
                "max_tokens"
            }
            _ if case.path == "/v1/completions" => {
                b["prompt"] = json!(format!("question {i}!"));
                "prompt"
            }
            _ => {
                b["messages"][1]["content"] = json!(format!("question {i}!"));
                "messages[1].content"
            }
        }
    };
    (b, field)
}

#[test]
fn cache_eval_recorded_once_replays_offline_from_a_cassette() {
    let up = Upstream::start(eval_reply);
    let (recorded_dir, replay_dir, work) = (TempDir::new(), TempDir::new(), TempDir::new());
    let cases = workload();

    // 1. record
    let record_cfg = work.write(
        "record.jsonc",
        &cache_config(
            &up.base_url(),
            recorded_dir.path(),
            json!({"mode": "record"}),
            json!({}),
        ),
    );
    let recorded: Vec<String> = {
        let relay = Relay::start(&std::fs::read_to_string(&record_cfg).unwrap());
        cases
            .iter()
            .map(|c| {
                let (status, x, body) = send(&relay, c, &c.body);
                assert_eq!((status, x.as_str()), (200, "REFRESH"), "{}: {body}", c.body);
                body
            })
            .collect()
    };
    assert_eq!(up.requests().len(), cases.len());

    // 2. export, 3. import into an empty directory
    let cassette = work.path().join("evals.jsonl");
    let out = run_relay(
        &[
            "cache",
            "export",
            "--config",
            record_cfg.to_str().unwrap(),
            "--out",
            cassette.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("exported {} entries", cases.len())),
        "{}",
        out.stdout
    );
    let upstream_url = up.base_url();
    drop(up); // the upstream is stopped from here on
    let replay_cfg = work.write(
        "replay.jsonc",
        &cache_config(
            &upstream_url,
            replay_dir.path(),
            json!({"mode": "replay"}),
            json!({}),
        ),
    );
    let out = run_relay(
        &[
            "cache",
            "import",
            cassette.to_str().unwrap(),
            "--config",
            replay_cfg.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // 4. replay: every request a hit, byte for byte
    let relay = Relay::start_with(
        &std::fs::read_to_string(&replay_cfg).unwrap(),
        &[("LLM_RELAY_CACHE_MODE", "replay")],
        &[],
    );
    for (c, want) in cases.iter().zip(&recorded) {
        let (status, x, body) = send(&relay, c, &c.body);
        assert_eq!((status, x.as_str()), (200, "HIT"), "{}: {body}", c.body);
        assert_eq!(&body, want, "replayed answer differs for {}", c.body);
    }

    // 5. one changed parameter per request: a cache_miss naming it, never a hit
    for (i, c) in cases.iter().enumerate() {
        let (body, field) = changed(c, i);
        let r = post_json(&relay.url(c.path), &body);
        let msg = r.assert_error(404, "cache_miss");
        let differs = &r.json()["error"]["closest"]["differs"];
        assert_eq!(differs, &json!([field]), "{body}: {msg}");
        assert!(msg.contains(field), "{msg}");
    }
    let stats = get(&relay.url("/cache/stats")).json();
    assert_eq!(stats["hits"], cases.len(), "{stats}");
    assert_eq!(stats["misses"], cases.len(), "{stats}");
}
