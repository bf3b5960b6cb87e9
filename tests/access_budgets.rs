//! Usage that survives a `kill -9`, budgets and prices, model allow-lists, and `PATCH
//! /admin/keys/{id}` (#14), on one machine (`state.dir`); tests/access_redis.rs does the same
//! across replicas.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "sk-budget-client-000000001";
const ADMIN: &str = "sk-budget-admin-0000000002";

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The id the relay gives the config key [`KEY`] (its only config key).
fn config_key_id(relay: &Relay) -> String {
    let keys = admin_call(relay, ADMIN, "GET", "/admin/keys", None).json();
    keys["data"][0]["id"].as_str().unwrap().to_string()
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn usage_survives_kill_9_and_restart() {
    let up = Upstream::openai();
    let state = TempDir::new();
    let cfg = config_json(
        &up.base_url(),
        json!({
            "auth": {"keys": [KEY], "admin_key": ADMIN},
            "state": {"dir": state.path()},
        }),
    );
    let relay = Relay::start(&cfg);
    let id = config_key_id(&relay);
    for _ in 0..3 {
        assert_eq!(chat_as(&relay, KEY, &chat("m")).status, 200);
    }
    let bad = post_raw(
        &relay.url("/v1/chat/completions"),
        b"{not json",
        &[("X-API-Key", KEY), ("Content-Type", "application/json")],
    );
    bad.assert_error(400, "invalid_json");
    // the writer runs every second: wait for the file to hold all four, then kill -9
    let file = state.path().join("usage.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc: Value = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if doc["keys"][&id]["total"]["requests"] == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage.json never showed 4 requests: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.signal("KILL");
    drop(relay);
    let relay = Relay::start(&cfg);
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["requests"], 4, "{u}");
    assert_eq!(u["total"]["errors"], 1);
    assert_eq!(u["total"]["prompt_tokens"], 15);
    assert_eq!(u["total"]["completion_tokens"], 12);
    assert_eq!(u["today"]["requests"], 4);
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{u}");
    // counting goes on from there
    assert_eq!(chat_as(&relay, KEY, &chat("m")).status, 200);
    let stats = admin_call(&relay, ADMIN, "GET", "/admin/stats", None).json();
    assert_eq!(stats["data"][0]["requests"], 5, "{stats}");
    let date = days[0]["date"].as_str().unwrap();
    let since = admin_call(
        &relay,
        ADMIN,
        "GET",
        &format!("/admin/stats?since={date}"),
        None,
    );
    assert_eq!(since.json()["data"][0]["requests"], 5, "{}", since.body);
    let later = admin_call(&relay, ADMIN, "GET", "/admin/stats?since=2999-01-01", None);
    assert_eq!(later.json()["data"][0]["requests"], 0, "{}", later.body);
    admin_call(&relay, ADMIN, "GET", "/admin/stats?since=yesterday", None)
        .assert_error(400, "invalid_request");
}

#[test]
fn a_graceful_restart_loses_no_usage() {
    let up = Upstream::openai();
    let state = TempDir::new();
    let cfg = config_json(
        &up.base_url(),
        json!({"auth": {"keys": [KEY], "admin_key": ADMIN}, "state": {"dir": state.path()}}),
    );
    let mut relay = Relay::start(&cfg);
    let id = config_key_id(&relay);
    for _ in 0..3 {
        assert_eq!(chat_as(&relay, KEY, &chat("m")).status, 200);
    }
    // SIGTERM at once: the drain writes the book before the process exits
    relay.signal("TERM");
    assert_eq!(relay.wait_exit(Duration::from_secs(30)), Some(Some(0)));
    let relay = Relay::start(&cfg);
    assert_eq!(key_usage(&relay, ADMIN, &id)["total"]["requests"], 3);
}

/// An upstream whose streams end with a usage chunk of `tokens` completion tokens.
fn streaming_upstream(tokens: u64) -> Upstream {
    Upstream::start(move |req| {
        if req.json()["stream"] != json!(true) {
            return openai_reply(req);
        }
        let tick = Duration::from_millis(5);
        let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}});
        Reply::sse(vec![
            (
                tick,
                chat_chunk("m", json!({"role": "assistant", "content": "part"}), None),
            ),
            (tick, chat_chunk("m", json!({}), Some("stop"))),
            (tick, sse_data(&usage)),
            (tick, sse_done()),
        ])
    })
}

#[test]
fn budget_admits_the_request_that_crosses_it_and_refuses_the_next_with_the_reset_time() {
    let up = streaming_upstream(30);
    let cfg = json!({
        "auth": {"keys": [{"key": KEY, "budget": {"tokens_per_day": 20}}], "admin_key": ADMIN},
    });
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    // 9 tokens each: 0 → 9 → 18 → 27; the third crosses the cap and is served
    for _ in 0..3 {
        assert_eq!(chat_as(&relay, KEY, &chat("m")).status, 200);
    }
    let r = chat_as(&relay, KEY, &chat("m"));
    let msg = r.assert_error(429, "budget_exceeded");
    assert!(msg.contains("tokens_per_day"), "{msg}");
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "Retry-After {retry}");
    let reset = r.header("x-budget-reset").unwrap();
    assert!(reset.ends_with("T00:00:00Z"), "{reset}");
    assert!(msg.contains(reset), "{msg}");
    assert_eq!(
        up.requests().len(),
        3,
        "the refused request never reached the upstream"
    );

    // a stream that crosses the budget finishes; the next request is refused
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"auth": {"keys": [{"key": KEY, "budget": {"tokens_per_day": 20}}]}}),
    ));
    let mut body = chat("m");
    body["stream"] = json!(true);
    let s = chat_as(&relay, KEY, &body);
    assert_eq!(s.status, 200);
    assert!(s.body.trim_end().ends_with("data: [DONE]"), "{}", s.body);
    chat_as(&relay, KEY, &body).assert_error(429, "budget_exceeded");
}

#[test]
fn prices_give_the_cost_and_cached_hits_count_as_saved() {
    let up = Upstream::openai();
    let cache = TempDir::new();
    let extra = json!({
        "auth": {"keys": [{"key": KEY, "budget": {"usd_per_day": 0.0001}}], "admin_key": ADMIN},
        "prices": [
            {"match_model": "gpt-4o*", "input_per_million": 2.5, "output_per_million": 10},
            {"match_model": "*", "input_per_million": 0, "output_per_million": 0},
        ],
    });
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        cache.path(),
        json!({}),
        extra,
    ));
    let id = config_key_id(&relay);
    let ask = |content: &str| json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]});
    // 5 prompt × 2.5 + 4 completion × 10 = 52.5 micro-dollars, rounded to 53
    assert_eq!(chat_as(&relay, KEY, &ask("one")).status, 200);
    let hit = chat_as(&relay, KEY, &ask("one"));
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["total"]["cost_micro_usd"], 53, "{u}");
    assert_eq!(u["total"]["saved_micro_usd"], 53, "{u}");
    assert_eq!(u["total"]["saved_tokens"], 9, "{u}");
    assert_eq!(u["total"]["cache_hits"], 1);
    assert_eq!(u["total"]["prompt_tokens"], 5, "a hit spends no tokens");
    assert_eq!(u["budget"]["usd_per_day"], 0.0001);
    assert_eq!(u["budget_exceeded"], false);
    // a cheap model costs nothing
    assert_eq!(chat_as(&relay, KEY, &chat("llama3")).status, 200);
    assert_eq!(chat_as(&relay, KEY, &ask("two")).status, 200); // 106 ≥ 100
    chat_as(&relay, KEY, &ask("one")).assert_error(429, "budget_exceeded");
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(u["today"]["cost_micro_usd"], 106, "{u}");
    assert_eq!(u["budget_exceeded"], true);
}

#[test]
fn model_allow_list_holds_before_and_after_rules_and_models_shows_only_allowed() {
    let up = Upstream::openai();
    let other = "sk-budget-unlimited-000003";
    let cfg = json!({
        "auth": {"keys": [
            {"key": KEY, "models": ["fixture-model-a", "gpt-4o*", "fast"]},
            other,
        ]},
        "model_rules": [
            {"match_model": "fast", "set": {"model": "gpt-4o-mini"}},
            {"match_model": "sneaky", "set": {"model": "gpt-4o-mini"}},
            {"match_model": "gpt-4o-big", "set": {"model": "o1-pro"}},
        ],
    });
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    assert_eq!(chat_as(&relay, KEY, &chat("gpt-4o-mini")).status, 200);
    assert_eq!(chat_as(&relay, KEY, &chat("fast")).status, 200);
    for model in ["llama3", "sneaky", "gpt-4o-big"] {
        let r = chat_as(&relay, KEY, &chat(model));
        let msg = r.assert_error(403, "model_not_allowed");
        assert!(msg.contains("/v1/models"), "{msg}");
    }
    assert_eq!(
        up.requests().len(),
        2,
        "refused models never reach the upstream"
    );
    assert_eq!(chat_as(&relay, other, &chat("llama3")).status, 200);
    let ids = |key: &str| -> Vec<String> {
        let r = request("GET", &relay.url("/v1/models"), &[("X-API-Key", key)], None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(KEY), ["fixture-model-a", "fast"]);
    assert_eq!(
        ids(other),
        [
            "fixture-model-a",
            "fixture-model-b",
            "fast",
            "sneaky",
            "gpt-4o-big"
        ]
    );
}

#[test]
fn patch_changes_name_limits_budget_models_and_expiry() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let cfg = json!({"auth": {"keys": [KEY], "admin_key": ADMIN, "keys_file": dir.path().join("k.json")}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let (id, key) = new_key(&relay, ADMIN, json!({"name": "before", "models": ["m"]}));
    let path = format!("/admin/keys/{id}");
    assert_eq!(chat_as(&relay, &key, &chat("m")).status, 200);
    let patch = |body: Value| admin_call(&relay, ADMIN, "PATCH", &path, Some(body));
    // the refused model below counts against the window too: 2 admit it and one x1
    let r = patch(json!({"name": "after", "models": ["x*"], "rate_limit": {"per_minute": 2}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["name"], "after");
    chat_as(&relay, &key, &chat("m")).assert_error(403, "model_not_allowed");
    assert_eq!(chat_as(&relay, &key, &chat("x1")).status, 200);
    chat_as(&relay, &key, &chat("x1")).assert_error(429, "rate_limit_exceeded");
    let r = patch(json!({"rate_limit": null, "models": null, "budget": {"tokens_per_day": 1}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["budget"]["tokens_per_day"], 1);
    // the budget counts what this key already used (9 + 9 tokens)
    chat_as(&relay, &key, &chat("m")).assert_error(429, "budget_exceeded");
    assert_eq!(patch(json!({"budget": null})).status, 200);
    let r = chat_as(&relay, &key, &chat("m"));
    assert_eq!(r.status, 200, "{}", r.body);
    patch(json!({"expires_at": 1})).assert_error(400, "invalid_request");
    patch(json!({"colour": "red"})).assert_error(400, "invalid_request");
    patch(json!({"budget": {"tokens_per_day": 0}})).assert_error(400, "invalid_request");
    assert_eq!(patch(json!({"expires_at": today() + 3600})).status, 200);
    let listed = admin_call(&relay, ADMIN, "GET", "/admin/keys", None).json();
    let mine = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(mine["name"], "after");
    assert_eq!(mine["models"], json!([]));
    assert!(mine["expires_at"].as_u64().is_some(), "{mine}");
    let cfg_id = config_key_id(&relay);
    admin_call(
        &relay,
        ADMIN,
        "PATCH",
        &format!("/admin/keys/{cfg_id}"),
        Some(json!({"name": "x"})),
    )
    .assert_error(409, "config_key");
    admin_call(
        &relay,
        ADMIN,
        "PATCH",
        "/admin/keys/key_nope",
        Some(json!({"name": "x"})),
    )
    .assert_error(404, "key_not_found");
    // the change is in keys_file: it survives a restart
    let cfg = std::fs::read_to_string(relay.config_path()).unwrap();
    drop(relay);
    let relay = Relay::start(&cfg);
    let listed = admin_call(&relay, ADMIN, "GET", "/admin/keys", None).json();
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "after"));
}

#[test]
fn state_and_budget_config_errors_name_the_field() {
    let up = Upstream::openai();
    for (extra, needle) in [
        (
            json!({"state": {"on_unavailable": "allow"}}),
            "state.on_unavailable",
        ),
        (json!({"state": {"redis": "http://x"}}), "state.redis"),
        (json!({"budget": {"usd_per_day": -1}}), "budget.usd_per_day"),
        (
            json!({"prices": [{"match_model": "a", "input_per_million": 1}]}),
            "output_per_million",
        ),
        (
            json!({"auth": {"keys": [{"key": KEY, "models": [""]}]}}),
            "auth.keys[0].models",
        ),
    ] {
        let dir = TempDir::new();
        let path = dir.write("c.jsonc", &config_json(&up.base_url(), extra.clone()));
        let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.code, Some(1), "{extra}: {}", out.stdout);
        assert!(out.stderr.contains(needle), "{extra}: {}", out.stderr);
    }
}

#[test]
fn anthropic_messages_keep_the_allow_list_and_budget_in_anthropics_shape() {
    let up = Upstream::apis();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ],
        "auth": {"keys": [{"key": KEY, "models": ["claude-*"], "budget": {"tokens_per_day": 1}}]},
    });
    let relay = Relay::start(&cfg.to_string());
    let ask = |model: &str| {
        let body = json!({"model": model, "max_tokens": 64,
                          "messages": [{"role": "user", "content": "hi"}]});
        post_json_with(&relay.url("/v1/messages"), &body, &[("x-api-key", KEY)])
    };
    let r = ask("gpt-4o");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-4o"));
    let ok = ask("claude-fixture");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let r = ask("claude-fixture");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    assert!(r.header("x-budget-reset").is_some());
}
