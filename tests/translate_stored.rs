//! Stored translated responses: a `/v1/responses` request translated to the chat-only fixture
//! (`tests/common/chat_model.rs`) is kept, owned by its key, so `GET`/`DELETE
//! /v1/responses/{id}` (also replayed as stream events), `…/input_items` and
//! `previous_response_id` work
//! (`tests/e2e/stored_responses.py` drives the openai SDK), across a restart with `state.dir`;
//! `store: false` is never kept; cache hits get fresh ids and are kept too.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY_A: &str = "sk-stored-team-a-0000001";
const KEY_B: &str = "sk-stored-team-b-0000002";

fn config(up: &Upstream, extra: Value) -> String {
    let mut all = json!({"auth": {"keys": [{"key": KEY_A, "name": "a"},
                                           {"key": KEY_B, "name": "b"}]}});
    if let (Some(all), Value::Object(extra)) = (all.as_object_mut(), extra) {
        all.extend(extra);
    }
    config_json(&up.base_url(), all)
}

fn call(relay: &Relay, key: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
    keyed_call(method, &relay.url(path), key, body)
}

#[test]
fn the_openai_sdk_retrieves_continues_lists_and_deletes_and_a_restart_keeps_them() {
    require_python_module("openai");
    let up = Upstream::chat_model();
    let state = TempDir::new();
    let cfg = config(&up, json!({"state": {"dir": state.path()}}));
    let relay = Relay::start(&cfg);
    let out = run_e2e_script(
        "stored_responses.py",
        &[&relay.url(""), KEY_A, KEY_B],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "stored_responses.py: {}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("check stored passed"), "{stdout}");
    let ids: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ids "))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("ids line");
    // the continuation reached the upstream as the whole conversation
    let requests = up.requests();
    let second = requests
        .iter()
        .map(|r| r.json())
        .find(|b| b.to_string().contains("Which colour?"))
        .expect("the continuation reached the upstream");
    let turns: Vec<(Value, Value)> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].clone(), m["content"].clone()))
        .collect();
    assert_eq!(
        turns,
        vec![
            (json!("user"), json!("My favourite colour is blue.")),
            (json!("assistant"), json!(FIXTURE_TEXT)),
            (json!("user"), json!("Which colour?")),
        ],
        "{second}"
    );
    let first = ids["first"].as_str().unwrap();
    let before = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/responses/{first}"),
        None,
    );
    assert_eq!(before.status, 200, "{}", before.body);
    drop(relay);
    // a restart with the same state.dir keeps them, and their owners
    let relay = Relay::start(&cfg);
    let after = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/responses/{first}"),
        None,
    );
    assert_eq!((after.status, after.json()), (200, before.json()));
    let other = call(
        &relay,
        KEY_B,
        "GET",
        &format!("/v1/responses/{first}"),
        None,
    );
    assert_eq!(other.status, 404, "{}", other.body);
    let second = ids["second"].as_str().unwrap();
    let items = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/responses/{second}/input_items?order=asc"),
        None,
    );
    assert_eq!(items.status, 200, "{}", items.body);
    assert_eq!(items.json()["object"], "list");
    assert_eq!(
        items.json()["data"][0]["content"][0]["text"],
        "Which colour?"
    );
    let deleted = call(
        &relay,
        KEY_A,
        "DELETE",
        &format!("/v1/responses/{second}"),
        None,
    );
    assert_eq!(
        deleted.json(),
        json!({"id": second, "object": "response", "deleted": true})
    );
    let cont = call(
        &relay,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "x", "previous_response_id": second})),
    );
    assert_eq!(cont.status, 400, "{}", cont.body);
    assert_eq!(cont.json()["error"]["code"], "previous_response_not_found");
}

#[test]
fn store_false_is_never_kept_and_cache_hits_get_fresh_kept_ids() {
    let up = Upstream::chat_model();
    let cache = TempDir::new();
    let relay = Relay::start(&config(
        &up,
        json!({"cache": {"enabled": true, "dir": cache.path()}}),
    ));
    let ask = |body: &Value| {
        let r = call(&relay, KEY_A, "POST", "/v1/responses", Some(body));
        assert_eq!(r.status, 200, "{}", r.body);
        (
            r.json()["id"].as_str().unwrap().to_string(),
            r.header("x-cache").map(str::to_string),
        )
    };
    let unstored = json!({"model": "gpt-5", "input": "not me", "store": false});
    let (id, _) = ask(&unstored);
    let got = call(&relay, KEY_A, "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(got.status, 404, "{}", got.body);
    let body = json!({"model": "gpt-5", "input": "keep me"});
    let (live, _) = ask(&body);
    let (hit, cached) = ask(&body);
    assert_eq!(cached.as_deref(), Some("HIT"));
    assert_ne!(live, hit, "a cache hit gets a fresh id");
    for id in [&live, &hit] {
        let got = call(&relay, KEY_A, "GET", &format!("/v1/responses/{id}"), None);
        assert_eq!(got.status, 200, "{id}: {}", got.body);
        assert_eq!(got.json()["id"], json!(id));
    }
    // the streamed hit too
    let streamed = call(
        &relay,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "keep me", "stream": true})),
    );
    let completed: Value = streamed
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.completed")
        .expect("response.completed");
    let id = completed["response"]["id"].as_str().unwrap();
    let got = call(&relay, KEY_A, "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(got.status, 200, "{}", got.body);
}

#[test]
fn with_redis_a_response_kept_by_one_replica_is_read_continued_and_expires_on_another() {
    let up = Upstream::chat_model();
    let redis = RedisServer::start();
    let cfg = config(&up, json!({"state": {"redis": redis.url()}}));
    let (one, two) = (Relay::start(&cfg), Relay::start(&cfg));
    let first = call(
        &one,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "first turn"})),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let got = call(&two, KEY_A, "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!((got.status, got.json()), (200, first.json()));
    assert_eq!(
        call(&two, KEY_B, "GET", &format!("/v1/responses/{id}"), None).status,
        404
    );
    let next = call(
        &two,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "second turn", "previous_response_id": id})),
    );
    assert_eq!(next.status, 200, "{}", next.body);
    let sent = up.requests().last().unwrap().json();
    assert_eq!(sent["messages"][0]["content"], "first turn", "{sent}");
    assert_eq!(sent["messages"][2]["content"], "second turn", "{sent}");
    // kept for responses_store_days (30 by default), as a key that expires by itself
    let ttl: u64 = redis
        .command(&["TTL", &format!("llm-relay:response:{id}")])
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(ttl > 29 * 86_400 && ttl <= 30 * 86_400, "TTL {ttl}");
}

/// `cache why` on a request that continues a stored response keys it as the relay does (the
/// stored conversation in front of its input: the key the relay then records); an id that is
/// not stored, and stored responses the command cannot read, are explained instead of
/// answered with the translation's 400.
#[test]
fn cache_why_keys_a_continuation_with_the_stored_conversation() {
    let up = Upstream::chat_model();
    let (state, cache, files) = (TempDir::new(), TempDir::new(), TempDir::new());
    let cfg = config_json(
        &up.base_url(),
        json!({"state": {"dir": state.path()}, "cache": {"enabled": true, "dir": cache.path()}}),
    );
    let relay = Relay::start(&cfg);
    let first = post_json(
        &relay.url("/v1/responses"),
        &json!({"model": "gpt-5", "input": "first turn"}),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let next = json!({"model": "gpt-5", "input": "second turn", "previous_response_id": id});
    let cfg_path = files.write("relay.jsonc", &cfg);
    let why_on = |body: &Value, cfg: &std::path::Path, route: Option<&str>| {
        let request = files.write("request.json", &body.to_string());
        let mut args = vec!["cache", "why", request.to_str().unwrap()];
        if let Some(route) = route {
            args.extend(["--route", route]);
        }
        args.extend(["--config", cfg.to_str().unwrap()]);
        let out = run_relay(&args, &[]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        out.stdout
    };
    let why = |body: &Value, cfg: &std::path::Path| why_on(body, cfg, Some("/v1/responses"));
    let before = why(&next, &cfg_path);
    assert!(
        before.contains(&format!(
            "continues the stored response {id}: its conversation (2 items)"
        )),
        "{before}"
    );
    // without --route, a body only the Responses API takes is read as one (not as embeddings)
    assert_eq!(why_on(&next, &cfg_path, None), before);
    assert!(before.contains("not recorded"), "{before}");
    let answered = post_json(&relay.url("/v1/responses"), &next);
    assert_eq!(answered.status, 200, "{}", answered.body);
    let key = answered.header("x-cache-key").expect("a key").to_string();
    let after = why(&next, &cfg_path);
    assert!(after.contains(&format!("key {key}, recorded")), "{after}");

    let mut unknown = next.clone();
    unknown["previous_response_id"] = json!("resp_0000000000000000000000000000dead");
    let text = why(&unknown, &cfg_path);
    assert!(
        text.contains("is not a stored response") && text.contains("previous_response_not_found"),
        "{text}"
    );
    let memory = files.write(
        "memory.jsonc",
        &config_json(
            &up.base_url(),
            json!({"cache": {"enabled": true, "dir": cache.path()}}),
        ),
    );
    let text = why(&next, &memory);
    assert!(
        text.contains("reads stored responses only from `state.dir`")
            && text.contains("in the relay's memory"),
        "{text}"
    );
}

/// The dashboard's `why` reads stored responses where the relay keeps them (memory here, which
/// the command cannot read), so a continuation is keyed there too.
#[test]
fn the_dashboards_why_keys_a_continuation_from_the_relays_own_store() {
    const ADMIN: &str = "sk-stored-admin-000000003";
    let up = Upstream::chat_model();
    let cache = TempDir::new();
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"auth": {"admin_key": ADMIN, "keys": [{"key": KEY_A, "name": "a"}]},
               "cache": {"enabled": true, "dir": cache.path()}, "ui": {"enabled": true}}),
    ));
    let first = call(
        &relay,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "first turn"})),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let next = json!({"model": "gpt-5", "input": "second turn", "previous_response_id": id});
    let why = admin_call(
        &relay,
        ADMIN,
        "POST",
        "/admin/ui/cache/why",
        Some(json!({"route": "/v1/responses", "body": next})),
    );
    assert_eq!(why.status, 200, "{}", why.body);
    let text = why.json()["text"].as_str().unwrap_or("").to_string();
    assert!(
        text.contains(&format!(
            "continues the stored response {id}: its conversation (2 items)"
        )),
        "{text}"
    );
}

/// `GET /v1/responses/{id}?stream=true` is an event stream; a `starting_after` that is not a
/// whole number is a 400 naming it.
#[test]
fn a_replayed_response_is_an_event_stream_and_a_bad_starting_after_is_refused() {
    let up = Upstream::chat_model();
    let relay = Relay::start(&config(&up, json!({})));
    let first = call(
        &relay,
        KEY_A,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "gpt-5", "input": "first turn"})),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}?stream=true");
    let replayed = call(&relay, KEY_A, "GET", &path, None);
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert_eq!(replayed.header("content-type"), Some("text/event-stream"));
    assert!(
        replayed.body.starts_with("event: response.created\n"),
        "{}",
        replayed.body
    );
    let bad = call(
        &relay,
        KEY_A,
        "GET",
        &format!("{path}&starting_after=x"),
        None,
    );
    let message = bad.assert_error(400, "invalid_value");
    assert!(message.contains("starting_after"), "{message}");
    // another key cannot replay it either
    assert_eq!(call(&relay, KEY_B, "GET", &path, None).status, 404);
}
