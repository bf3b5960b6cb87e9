//! Honest usage (issue 20): every API's cache and reasoning tokens reach the key's usage, its
//! budget, its cost and `/metrics`, plain and streamed; prices have cache rates and apply to
//! the model sent upstream, never to an alias.

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "sk-usage-client-0000000001";
const ADMIN: &str = "sk-usage-admin-00000000002";

/// The id the relay gives the config key [`KEY`] (its only config key).
fn key_id(relay: &Relay) -> String {
    let keys = admin_call(relay, ADMIN, "GET", "/admin/keys", None).json();
    keys["data"][0]["id"].as_str().unwrap().to_string()
}

/// `body` (plain or `stream: true`) to `path` with the client key; asserted 200.
fn call(relay: &Relay, path: &str, body: &Value) -> Resp {
    let r = post_json_with(
        &relay.url(path),
        body,
        &[("Authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// The token and cost figures of `u` (a `KeyUsage` as the admin API shows it).
fn figures(u: &Value) -> [u64; 6] {
    [
        "prompt_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cost_micro_usd",
    ]
    .map(|f| u[f].as_u64().unwrap_or_else(|| panic!("no `{f}` in {u}")))
}

/// A typed event stream (Messages, Responses) with each event's `data` re-written by `patch`,
/// as the fixture's reply.
fn patched(events: Vec<String>, patch: impl Fn(&mut Value)) -> Reply {
    let tick = std::time::Duration::from_millis(1);
    Reply::sse(
        events
            .into_iter()
            .map(|e| {
                let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                let mut v: Value = serde_json::from_str(data).unwrap();
                patch(&mut v);
                (tick, typed(&v))
            })
            .collect(),
    )
}

/// An Anthropic upstream whose answers report a Claude Code turn: 3 new input tokens, 50,000
/// read from the prompt cache, 1,000 written to it, 8 output.
fn claude_code_upstream() -> Upstream {
    Upstream::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(req.header("x-api-key"), Some(ANTHROPIC_KEY));
        if body["stream"] == json!(true) {
            return patched(anthropic_events(&body), |v| {
                if v["type"] == "message_start" {
                    v["message"]["usage"] = json!({"input_tokens": 3, "output_tokens": 1,
                        "cache_read_input_tokens": 50_000, "cache_creation_input_tokens": 1_000});
                }
            });
        }
        let mut m = anthropic_message(&body);
        m["usage"] = json!({"input_tokens": 3, "output_tokens": 8,
            "cache_read_input_tokens": 50_000, "cache_creation_input_tokens": 1_000});
        Reply::json(200, m)
    })
}

#[test]
fn messages_cache_reads_and_writes_count_in_usage_cost_and_budget_plain_and_streamed() {
    let up = claude_code_upstream();
    // two turns are 2 × 51,011 tokens: the budget is used up exactly by them
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "claude", "url": up.base_url(), "api": "anthropic",
                       "api_key": ANTHROPIC_KEY}],
        "auth": {"keys": [{"key": KEY, "budget": {"tokens_per_day": 102_022}}],
                 "admin_key": ADMIN},
        "prices": [{"match_model": "claude-*", "input_per_million": 3,
                    "output_per_million": 15, "cache_read_per_million": 0.3,
                    "cache_write_per_million": 3.75}],
    });
    let relay = Relay::start(&cfg.to_string());
    let id = key_id(&relay);
    let ask = |stream: bool| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    // 3 × 3 + 50,000 × 0.3 + 1,000 × 3.75 + 8 × 15 micro-dollars
    let cost = 9 + 15_000 + 3_750 + 120;
    call(&relay, "/v1/messages", &ask(false));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["total"]),
        [51_003, 50_000, 1_000, 8, 0, cost],
        "{u}"
    );
    let streamed = call(&relay, "/v1/messages", &ask(true));
    assert!(streamed.body.contains("message_stop"), "{}", streamed.body);
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["today"]),
        [102_006, 100_000, 2_000, 16, 0, 2 * cost],
        "the stream counts as the plain answer: {u}"
    );
    assert_eq!(u["budget_exceeded"], true, "{u}");
    let r = post_json_with(
        &relay.url("/v1/messages"),
        &ask(false),
        &[("x-api-key", KEY)],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error", "{}", r.body);
    assert_eq!(up.requests().len(), 2);
    // /admin/stats has them too, and /metrics without per-key labels
    let stats = admin_call(&relay, ADMIN, "GET", "/admin/stats", None).json();
    assert_eq!(stats["data"][0]["cache_write_tokens"], 2_000, "{stats}");
    for (kind, n) in [
        ("input", 6.0),
        ("cache_read", 100_000.0),
        ("cache_write", 2_000.0),
        ("output", 16.0),
    ] {
        let series = format!("llm_relay_tokens_total{{kind=\"{kind}\",served=\"upstream\"}}");
        assert_eq!(metric(&relay, &series), Some(n), "{series}");
    }
}

#[test]
fn a_stream_longer_than_its_recording_still_counts_the_usage_of_its_first_event() {
    // 300 deltas of 1 KiB after message_start: far past a 16 KiB recording, whose tail (the
    // last 64 KiB) no longer holds message_start and its cache counts
    let up = Upstream::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let mut events = anthropic_events(&body);
        let filler = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "x".repeat(1024)}});
        for _ in 0..300 {
            events.insert(3, typed(&filler));
        }
        patched(events, |v| {
            if v["type"] == "message_start" {
                v["message"]["usage"] = json!({"input_tokens": 3, "output_tokens": 1,
                    "cache_read_input_tokens": 50_000, "cache_creation_input_tokens": 1_000});
            }
        })
    });
    let cache = TempDir::new();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "claude", "url": up.base_url(), "api": "anthropic",
                       "api_key": ANTHROPIC_KEY}],
        "cache": {"enabled": true, "dir": cache.path().to_str().unwrap(),
                  "max_entry_bytes": 16_384},
        "auth": {"keys": [KEY], "admin_key": ADMIN},
    });
    let relay = Relay::start(&cfg.to_string());
    let id = key_id(&relay);
    let ask = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]});
    let s = call(&relay, "/v1/messages", &ask);
    assert!(s.body.contains("skip-too-large"), "recorded past its cap");
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["total"]),
        [51_003, 50_000, 1_000, 8, 0, 0],
        "{u}"
    );
}

#[test]
fn a_chat_stream_that_does_not_ask_for_usage_is_still_counted() {
    let up = reasoning_upstream();
    let cfg = config_json(
        &up.base_url(),
        json!({"auth": {"keys": [{"key": KEY, "budget": {"tokens_per_day": 1_500}}],
                        "admin_key": ADMIN}}),
    );
    let relay = Relay::start(&cfg);
    let id = key_id(&relay);
    let ask = json!({"model": "o4-mini", "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]});
    let s = call(&relay, "/v1/chat/completions", &ask);
    assert!(
        !s.body.contains("\"usage\""),
        "the client did not ask for the usage chunk: {}",
        s.body
    );
    assert!(s.body.trim_end().ends_with("data: [DONE]"), "{}", s.body);
    let sent = up.only_request().json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(figures(&u["total"]), [1_200, 1_024, 0, 300, 256, 0], "{u}");
    // and its 1,500 tokens used up the day's budget
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &ask,
        &[("Authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(r.status, 429, "{}", r.body);
}

/// A relay in front of [`claude_code_upstream`] with `state` as its `state` section.
fn claude_relay(up: &Upstream, state: Value) -> Relay {
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "claude", "url": up.base_url(), "api": "anthropic",
                       "api_key": ANTHROPIC_KEY}],
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "state": state,
    });
    Relay::start(&cfg.to_string())
}

#[test]
fn cache_and_reasoning_counters_are_kept_in_usage_json_and_in_redis() {
    let up = claude_code_upstream();
    let ask = json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                     "messages": [{"role": "user", "content": "hi"}]});
    let want = [51_003, 50_000, 1_000, 8, 0, 0];
    // usage.json: written, and read back by the next process
    let dir = TempDir::new();
    let state = json!({"dir": dir.path().to_str().unwrap()});
    let mut first = claude_relay(&up, state.clone());
    call(&first, "/v1/messages", &ask);
    first.signal("TERM");
    assert!(first
        .wait_exit(std::time::Duration::from_secs(20))
        .is_some());
    let second = claude_relay(&up, state);
    let u = key_usage(&second, ADMIN, &key_id(&second));
    assert_eq!(figures(&u["total"]), want, "{u}");
    // Redis: written by one replica, read by another
    let redis = RedisServer::start();
    let state = json!({"redis": redis.url()});
    let (a, b) = (claude_relay(&up, state.clone()), claude_relay(&up, state));
    call(&a, "/v1/messages", &ask);
    let u = key_usage(&b, ADMIN, &key_id(&b));
    assert_eq!(figures(&u["total"]), want, "{u}");
    assert_eq!(figures(&u["today"]), want, "{u}");
}

/// An OpenAI upstream for a reasoning model with prompt caching: 1,200 prompt tokens of which
/// 1,024 cached, 300 completion tokens of which 256 reasoning.
fn reasoning_upstream() -> Upstream {
    let usage = json!({"prompt_tokens": 1_200, "completion_tokens": 300, "total_tokens": 1_500,
        "prompt_tokens_details": {"cached_tokens": 1_024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}});
    Upstream::start(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let model = body["model"].as_str().unwrap().to_string();
        if body["stream"] == json!(true) {
            let tick = std::time::Duration::from_millis(1);
            let mut events = vec![
                (
                    tick,
                    chat_chunk(&model, json!({"role": "assistant", "content": "Hi"}), None),
                ),
                (tick, chat_chunk(&model, json!({}), Some("stop"))),
            ];
            if wants_usage(req) {
                let chunk = json!({"id": "chatcmpl-r", "object": "chat.completion.chunk",
                    "created": 1, "model": model, "choices": [], "usage": usage});
                events.push((tick, sse_data(&chunk)));
            }
            events.push((tick, sse_done()));
            return Reply::sse(events);
        }
        Reply::json(
            200,
            json!({"id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                                "finish_reason": "stop"}],
                   "usage": usage}),
        )
    })
}

#[test]
fn openai_cached_and_reasoning_tokens_count_plain_and_streamed() {
    let up = reasoning_upstream();
    let cfg = config_json(
        &up.base_url(),
        json!({
            "auth": {"keys": [KEY], "admin_key": ADMIN},
            // OpenAI bills cached input at a fraction of the input rate (check your provider)
            "prices": [{"match_model": "o4-mini*", "input_per_million": 1.1,
                        "output_per_million": 4.4, "cache_read_per_million": 0.275}],
        }),
    );
    let relay = Relay::start(&cfg);
    let id = key_id(&relay);
    let ask = json!({"model": "o4-mini", "messages": [{"role": "user", "content": "hi"}]});
    call(&relay, "/v1/chat/completions", &ask);
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let s = call(&relay, "/v1/chat/completions", &streamed);
    assert!(s.body.contains("\"reasoning_tokens\":256"), "{}", s.body);
    // 176 × 1.1 + 1,024 × 0.275 + 300 × 4.4 = 193.6 + 281.6 + 1,320 → 1,795
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["total"]),
        [2_400, 2_048, 0, 600, 512, 2 * 1_795],
        "{u}"
    );
    assert_eq!(
        metric(
            &relay,
            "llm_relay_tokens_total{kind=\"reasoning\",served=\"upstream\"}"
        ),
        Some(512.0)
    );
    assert_eq!(
        metric(
            &relay,
            "llm_relay_tokens_total{kind=\"cache_read\",served=\"upstream\"}"
        ),
        Some(2_048.0)
    );
}

/// A Responses upstream reporting 900 input tokens of which 800 cached, 50 output of which
/// 30 reasoning.
fn responses_upstream() -> Upstream {
    let usage = json!({"input_tokens": 900, "input_tokens_details": {"cached_tokens": 800},
        "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 950});
    Upstream::start(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        if body["stream"] == json!(true) {
            return patched(responses_events(&body), |v| {
                if v["type"] == "response.completed" {
                    v["response"]["usage"] = usage.clone();
                }
            });
        }
        let mut r = responses_answer(&body);
        r["usage"] = usage.clone();
        Reply::json(200, r)
    })
}

#[test]
fn responses_cached_and_reasoning_tokens_count_plain_and_streamed() {
    let up = responses_upstream();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}],
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "prices": [{"match_model": "gpt-5*", "input_per_million": 1.25,
                    "output_per_million": 10, "cache_read_per_million": 0.125}],
    });
    let relay = Relay::start(&cfg.to_string());
    let id = key_id(&relay);
    let ask = |stream: bool| json!({"model": "gpt-5", "input": "hi", "stream": stream});
    call(&relay, "/v1/responses", &ask(false));
    let s = call(&relay, "/v1/responses", &ask(true));
    assert!(s.body.contains("response.completed"), "{}", s.body);
    // 100 × 1.25 + 800 × 0.125 + 50 × 10 = 725
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["total"]),
        [1_800, 1_600, 0, 100, 60, 2 * 725],
        "{u}"
    );
}

#[test]
fn cost_is_priced_on_the_model_sent_upstream_not_on_an_alias() {
    let up = Upstream::openai();
    let cache = TempDir::new();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        // the endpoint sends every request as gpt-4o, whatever the client named
        "upstreams": [{"name": "main", "url": up.base_url(), "model": "gpt-4o"}],
        "cache": {"enabled": true, "dir": cache.path().to_str().unwrap()},
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "prices": [
            {"match_model": "cheap-alias", "input_per_million": 0, "output_per_million": 0},
            {"match_model": "gpt-4o*", "input_per_million": 2.5, "output_per_million": 10},
        ],
    });
    let relay = Relay::start(&cfg.to_string());
    let id = key_id(&relay);
    let ask = |content: &str, stream: bool| {
        json!({"model": "cheap-alias", "stream": stream,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": content}]})
    };
    let ask_plain = |content: &str| {
        let mut v = ask(content, false);
        v.as_object_mut().unwrap().remove("stream_options");
        v
    };
    call(&relay, "/v1/chat/completions", &ask_plain("one"));
    assert_eq!(up.requests()[0].json()["model"], "gpt-4o");
    call(&relay, "/v1/chat/completions", &ask("two", true));
    // 5 prompt × 2.5 + 4 completion × 10 = 52.5 → 53 micro-dollars each
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["cost_micro_usd"], 2 * 53, "{u}");
    // a hit saves what the upstream model would have cost
    let hit = call(&relay, "/v1/chat/completions", &ask_plain("one"));
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["saved_micro_usd"], 53, "{u}");
    assert_eq!(u["total"]["cost_micro_usd"], 2 * 53, "{u}");
    // /metrics tells the tokens hits saved from those the upstream served
    for (served, input) in [("upstream", 10.0), ("cache", 5.0)] {
        let series = format!("llm_relay_tokens_total{{kind=\"input\",served=\"{served}\"}}");
        assert_eq!(metric(&relay, &series), Some(input), "{series}");
    }
}

/// Claude Code's turns with one-hour cache writes and web searches: Anthropic splits
/// `cache_creation_input_tokens` by lifetime (`cache_creation.ephemeral_5m_input_tokens` /
/// `ephemeral_1h_input_tokens`) and bills one-hour writes at 2 × input, not 1.25 ×, and each
/// web search (`server_tool_use.web_search_requests`) at USD 10 a thousand; the cost prices
/// each at its rate, plain and streamed, the key counts the searches, and a hit saves what the
/// call would have cost.
#[test]
fn one_hour_cache_writes_and_web_searches_are_priced_at_their_own_rates() {
    let split = json!({"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600});
    let reported = json!({"input_tokens": 3, "output_tokens": 8, "cache_read_input_tokens": 50_000,
        "cache_creation_input_tokens": 1_000, "cache_creation": split,
        "server_tool_use": {"web_search_requests": 2}});
    let in_stream = reported.clone();
    let up = Upstream::start(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        if body["stream"] == json!(true) {
            let usage = in_stream.clone();
            return patched(anthropic_events(&body), move |v| {
                if v["type"] == "message_start" {
                    let mut start = usage.clone();
                    start["server_tool_use"] = json!({"web_search_requests": 0});
                    v["message"]["usage"] = start;
                }
                if v["type"] == "message_delta" {
                    // the counts so far: the searches ran during the turn
                    v["usage"] = json!({"output_tokens": 8,
                                        "server_tool_use": {"web_search_requests": 2}});
                }
            });
        }
        let mut m = anthropic_message(&body);
        m["usage"] = reported.clone();
        Reply::json(200, m)
    });
    let cache = TempDir::new();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "claude", "url": up.base_url(), "api": "anthropic",
                       "api_key": ANTHROPIC_KEY}],
        "cache": {"enabled": true, "dir": cache.path().to_str().unwrap()},
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "prices": [{"match_model": "claude-*", "input_per_million": 3,
                    "output_per_million": 15, "cache_read_per_million": 0.3,
                    "cache_write_per_million": 3.75, "cache_write_1h_per_million": 6,
                    "web_search_per_thousand": 10}],
    });
    let relay = Relay::start(&cfg.to_string());
    let id = key_id(&relay);
    let ask = |text: &str, stream: bool| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": text}]})
    };
    // 3 × 3 + 50,000 × 0.3 + 400 × 3.75 + 600 × 6 + 8 × 15 micro-dollars, and a cent a search
    let cost = 9 + 15_000 + 1_500 + 3_600 + 120 + 2 * 10_000;
    call(&relay, "/v1/messages", &ask("plain", false));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["total"]),
        [51_003, 50_000, 1_000, 8, 0, cost],
        "{u}"
    );
    assert_eq!(u["total"]["web_searches"], 2, "{u}");
    call(&relay, "/v1/messages", &ask("streamed", true));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["cost_micro_usd"], 2 * cost, "{u}");
    assert_eq!(u["total"]["web_searches"], 4, "{u}");
    let hit = call(&relay, "/v1/messages", &ask("plain", false));
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["saved_micro_usd"], cost, "{u}");
    assert_eq!(u["total"]["web_searches"], 4, "a hit runs no search: {u}");
    // /metrics has them too: the one-hour writes as a part of the cache writes
    for (series, n) in [
        (
            "llm_relay_tokens_total{kind=\"cache_write_1h\",served=\"upstream\"}",
            1_200.0,
        ),
        (
            "llm_relay_tokens_total{kind=\"cache_write\",served=\"upstream\"}",
            2_000.0,
        ),
        ("llm_relay_web_searches_total{served=\"upstream\"}", 4.0),
        ("llm_relay_web_searches_total{served=\"cache\"}", 2.0),
    ] {
        assert_eq!(metric(&relay, series), Some(n), "{series}");
    }
}
