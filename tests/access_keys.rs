//! Client keys and the admin API (#5): keys from the config and from `keys_file`, Bearer and
//! X-API-Key, 401s, the admin key, creation / listing / revocation, persistence across a
//! restart, per-key stats, and no key ever in the log or upstream.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const CLIENT_KEY: &str = "sk-client-alpha-0123456789";
const ADMIN_KEY: &str = "sk-admin-omega-9876543210";

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Relay with one config key, the admin key and a keys_file in `dir`.
fn start(up: &Upstream, dir: &TempDir, extra: Value) -> Relay {
    let mut cfg = json!({"auth": {
        "keys": [{"key": CLIENT_KEY, "name": "alpha"}],
        "admin_key": ADMIN_KEY,
        "keys_file": dir.path().join("keys.json"),
    }});
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    Relay::start(&config_json(&up.base_url(), cfg))
}

fn chat_with(relay: &Relay, headers: &[(&str, &str)]) -> Resp {
    post_json_with(&relay.url("/v1/chat/completions"), &chat(), headers)
}

fn admin(relay: &Relay, method: &str, path: &str, body: Option<Value>) -> Resp {
    admin_call(relay, ADMIN_KEY, method, path, body)
}

fn create_key(relay: &Relay, body: Value) -> (String, String) {
    new_key(relay, ADMIN_KEY, body)
}

#[test]
fn missing_or_wrong_key_is_401_and_bearer_or_x_api_key_is_admitted() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({}));
    let r = chat_with(&relay, &[]);
    r.assert_error(401, "invalid_api_key");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let wrong = bearer("sk-client-alpha-0123456780");
    let msg = chat_with(&relay, &[("Authorization", &wrong)]).assert_error(401, "invalid_api_key");
    assert!(!msg.contains("0123456780"), "the key is echoed: {msg}");
    chat_with(&relay, &[("X-API-Key", "nope-nope-nope")]).assert_error(401, "invalid_api_key");
    get(&relay.url("/v1/models")).assert_error(401, "invalid_api_key");
    assert_eq!(
        up.requests().len(),
        0,
        "refused requests must not reach the upstream"
    );

    let ok = bearer(CLIENT_KEY);
    assert_eq!(chat_with(&relay, &[("Authorization", &ok)]).status, 200);
    let lower = format!("bearer {CLIENT_KEY}");
    assert_eq!(chat_with(&relay, &[("Authorization", &lower)]).status, 200);
    assert_eq!(chat_with(&relay, &[("X-API-Key", CLIENT_KEY)]).status, 200);
    // open routes
    assert_eq!(get(&relay.url("/health")).status, 200);
    assert_eq!(get(&relay.url("/openapi.json")).status, 200);
}

#[test]
fn relay_key_is_never_forwarded_upstream() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({"api_key": "sk-upstream-key-42"}));
    let ok = bearer(CLIENT_KEY);
    assert_eq!(chat_with(&relay, &[("Authorization", &ok)]).status, 200);
    assert_eq!(chat_with(&relay, &[("X-API-Key", CLIENT_KEY)]).status, 200);
    for seen in up.requests() {
        assert_eq!(
            seen.header("authorization"),
            Some("Bearer sk-upstream-key-42")
        );
        assert_eq!(seen.header("x-api-key"), None);
        let all = format!("{:?}", seen.headers);
        assert!(!all.contains(CLIENT_KEY), "relay key sent upstream: {all}");
    }
    // without an upstream key nothing is sent in its place
    let up2 = Upstream::openai();
    let dir2 = TempDir::new();
    let relay2 = start(&up2, &dir2, json!({}));
    assert_eq!(chat_with(&relay2, &[("Authorization", &ok)]).status, 200);
    assert_eq!(up2.only_request().header("authorization"), None);
}

#[test]
fn forward_auth_with_client_keys_is_refused_at_load() {
    let dir = TempDir::new();
    let cfg = json!({"forward_auth": true, "auth": {"keys": [CLIENT_KEY]}});
    let path = dir.write("c.jsonc", &config_json("http://127.0.0.1:9/v1", cfg));
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("forward_auth"), "{}", out.stderr);
    assert!(!out.stderr.contains(CLIENT_KEY), "{}", out.stderr);
}

#[test]
fn bad_auth_config_names_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "c.jsonc",
        "{\n  auth: {\n    keys: [\"sk-long-enough-key\"],\n    admin_keys: \"x\",\n  },\n}\n",
    );
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
    assert!(out.stderr.contains("admin_keys"), "{}", out.stderr);
}

#[test]
fn admin_routes_need_the_admin_key() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({}));
    for path in ["/admin/keys", "/admin/stats"] {
        get(&relay.url(path)).assert_error(401, "invalid_api_key");
        let client = bearer(CLIENT_KEY);
        request("GET", &relay.url(path), &[("Authorization", &client)], None)
            .assert_error(401, "invalid_api_key");
        assert_eq!(admin(&relay, "GET", path, None).status, 200);
    }
    request("DELETE", &relay.url("/admin/keys/key_x"), &[], None)
        .assert_error(401, "invalid_api_key");
    // the admin key is not a client key
    let a = bearer(ADMIN_KEY);
    chat_with(&relay, &[("Authorization", &a)]).assert_error(401, "invalid_api_key");
}

#[test]
fn admin_created_key_works_survives_restart_and_is_stored_hashed() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let (id, key) = {
        let relay = start(&up, &dir, json!({}));
        let (id, key) = create_key(
            &relay,
            json!({"name": "bob", "rate_limit": {"per_minute": 50}}),
        );
        assert!(key.len() >= 40, "{key}");
        let auth = bearer(&key);
        assert_eq!(chat_with(&relay, &[("Authorization", &auth)]).status, 200);
        let list = admin(&relay, "GET", "/admin/keys", None);
        assert_eq!(list.status, 200);
        assert!(!list.body.contains(&key), "secret listed: {}", list.body);
        assert!(
            !list.body.contains(CLIENT_KEY),
            "secret listed: {}",
            list.body
        );
        let names: Vec<_> = list.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["name"].as_str().unwrap().to_string(), k["source"].clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("alpha".to_string(), json!("config")),
                ("bob".to_string(), json!("admin_api"))
            ]
        );
        (id, key)
    };
    let file = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    assert!(!file.contains(&key), "keys_file holds the secret: {file}");
    assert!(file.contains(&id) && file.contains("sha256"), "{file}");

    let relay = start(&up, &dir, json!({}));
    let auth = bearer(&key);
    assert_eq!(chat_with(&relay, &[("Authorization", &auth)]).status, 200);
}

#[test]
fn revoked_key_is_refused_on_its_very_next_request() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({}));
    let (id, key) = create_key(&relay, json!({"name": "temp"}));
    let auth = bearer(&key);
    assert_eq!(chat_with(&relay, &[("Authorization", &auth)]).status, 200);
    let del = admin(&relay, "DELETE", &format!("/admin/keys/{id}"), None);
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(del.json()["deleted"], true);
    chat_with(&relay, &[("Authorization", &auth)]).assert_error(401, "invalid_api_key");
    admin(&relay, "DELETE", &format!("/admin/keys/{id}"), None).assert_error(404, "key_not_found");
    // config keys are revoked in the config file, not here
    let list = admin(&relay, "GET", "/admin/keys", None).json();
    let cfg_id = list["data"][0]["id"].as_str().unwrap().to_string();
    admin(&relay, "DELETE", &format!("/admin/keys/{cfg_id}"), None).assert_error(409, "config_key");
}

#[test]
fn create_key_validates_its_body() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({}));
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "extra": 1}),
        json!({"name": "x", "rate_limit": {"per_minute": 0}}),
        json!({"name": "x", "expires_at": 1000}),
        json!([1, 2]),
    ] {
        admin(&relay, "POST", "/admin/keys", Some(bad.clone()))
            .assert_error(400, "invalid_request");
    }
    let future = 4_102_444_800u64;
    let r = admin(
        &relay,
        "POST",
        "/admin/keys",
        Some(json!({"name": "x", "expires_at": future})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["expires_at"], future);
}

#[test]
fn expired_key_in_keys_file_is_refused() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    // sha256("sk-expired-key-000000")
    let key = "sk-expired-key-000000";
    let relay = {
        let r = start(&up, &dir, json!({}));
        let (_, fresh) = create_key(&r, json!({"name": "fresh"}));
        drop(r);
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        let mut expired = doc["keys"][0].clone();
        expired["id"] = json!("key_expired");
        expired["sha256"] = json!(sha256_hex(key));
        expired["expires_at"] = json!(1000);
        doc["keys"].as_array_mut().unwrap().push(expired);
        std::fs::write(dir.path().join("keys.json"), doc.to_string()).unwrap();
        let relay = start(&up, &dir, json!({}));
        let ok = bearer(&fresh);
        assert_eq!(chat_with(&relay, &[("Authorization", &ok)]).status, 200);
        relay
    };
    let auth = bearer(key);
    let msg = chat_with(&relay, &[("Authorization", &auth)]).assert_error(401, "invalid_api_key");
    assert!(msg.contains("expired"), "{msg}");
}

#[test]
fn corrupt_keys_file_stops_start_up_with_its_name() {
    let dir = TempDir::new();
    let keys = dir.write("keys.json", "{\"keys\": [oops]}");
    let cfg = json!({"auth": {"keys_file": keys}});
    let path = dir.write("c.jsonc", &config_json("http://127.0.0.1:9/v1", cfg));
    let out = run_relay(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("keys.json") && out.stderr.contains("line 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn keys_file_entries_are_checked_like_config_keys() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let secret = {
        let r = start(&up, &dir, json!({}));
        create_key(&r, json!({"name": "b"}));
        create_key(&r, json!({"name": "a"})).1
    };
    let file = dir.path().join("keys.json");
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let cases = [
        (
            1,
            "rate_limit",
            json!({"per_minute": 0}),
            "`keys[1].rate_limit.per_minute` must be positive",
        ),
        (
            0,
            "rate_limit",
            json!({"per_hour": 0}),
            "`keys[0].rate_limit.per_hour` must be positive",
        ),
        (1, "id", good["keys"][0]["id"].clone(), "`keys[1].id`"),
        (0, "sha256", json!("not-a-hash"), "`keys[0].sha256`"),
    ];
    for (i, field, value, says) in cases {
        let mut doc = good.clone();
        doc["keys"][i][field] = value;
        // pretty-printed as the relay writes it: the error names the entry's line
        std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let cfg = json!({"auth": {"keys_file": file, "admin_key": ADMIN_KEY}});
        let path = dir.write("c.jsonc", &config_json(&up.base_url(), cfg));
        let out = run_relay(&["--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.code, Some(1), "{field}: {out:?}");
        assert!(out.stderr.contains("keys.json"), "{}", out.stderr);
        assert!(out.stderr.contains(says), "{field}: {}", out.stderr);
        assert!(out.stderr.contains("line "), "{field}: {}", out.stderr);
        // `--check` reads the keys_file as the start does, and says the same
        let check = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(check.code, Some(1), "--check, {field}: {check:?}");
        let said = |o: &RunOutput| {
            o.stderr
                .lines()
                .find(|l| l.contains("keys.json"))
                .map(str::to_string)
        };
        assert_eq!(said(&check), said(&out), "--check, {field}");
    }
    // and a usage.json the start cannot read fails `--check` too, naming its line and column
    std::fs::write(&file, serde_json::to_string_pretty(&good).unwrap()).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("usage.json"), "{\n  \"version\": 1,\n  oops\n}").unwrap();
    let cfg = json!({"auth": {"keys_file": file, "admin_key": ADMIN_KEY}, "state": {"dir": state}});
    let path = dir.write("c.jsonc", &config_json(&up.base_url(), cfg));
    let check = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check.stderr.contains("usage.json: line 3, column"),
        "{}",
        check.stderr
    );
    // and a reload that meets one keeps the running keys
    std::fs::write(&file, serde_json::to_string_pretty(&good).unwrap()).unwrap();
    let relay = start(&up, &dir, json!({}));
    let mut bad = good.clone();
    bad["keys"][0]["rate_limit"] = json!({"per_minute": 0});
    std::fs::write(&file, bad.to_string()).unwrap();
    relay.signal("HUP");
    relay
        .wait_for_log_line(Duration::from_secs(30), |l| {
            l.contains("config reload failed") && l.contains("per_minute")
        })
        .expect("the reload is refused, naming the entry");
    let auth = bearer(&secret);
    assert_eq!(chat_with(&relay, &[("Authorization", &auth)]).status, 200);
}

#[test]
fn admin_stats_count_requests_tokens_and_errors_per_key() {
    // streams end with a usage chunk, as with `stream_options.include_usage`
    let up = Upstream::start(|req| {
        if req.json()["stream"] != json!(true) {
            return openai_reply(req);
        }
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}});
        Reply::sse(vec![
            (
                Duration::ZERO,
                chat_chunk("m", json!({"content": "x"}), Some("stop")),
            ),
            (Duration::ZERO, sse_data(&usage)),
            (Duration::ZERO, sse_done()),
        ])
    });
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({}));
    let (id, key) = create_key(&relay, json!({"name": "counted"}));
    let auth = bearer(&key);
    assert_eq!(chat_with(&relay, &[("Authorization", &auth)]).status, 200);
    let streamed = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let s = post_json_with(
        &relay.url("/v1/chat/completions"),
        &streamed,
        &[("Authorization", &auth)],
    );
    assert_eq!(s.status, 200);
    post_raw(
        &relay.url("/v1/chat/completions"),
        b"{not json",
        &[("Authorization", &auth)],
    )
    .assert_error(400, "invalid_json");
    let ok = bearer(CLIENT_KEY);
    assert_eq!(chat_with(&relay, &[("Authorization", &ok)]).status, 200);

    let stats = admin(&relay, "GET", "/admin/stats", None).json();
    let mine = stats["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no stats for {id}: {stats}"))
        .clone();
    assert_eq!(mine["name"], "counted");
    assert_eq!(mine["requests"], 3, "{mine}");
    assert_eq!(mine["errors"], 1, "{mine}");
    assert_eq!(mine["cache_hits"], 0, "{mine}");
    // 5 + 4 from the whole answer (the fixture's usage), 7 + 3 from the stream's last chunk
    assert_eq!(mine["prompt_tokens"], 12, "{mine}");
    assert_eq!(mine["completion_tokens"], 7, "{mine}");
    assert!(
        mine["last_used_at"].as_u64().unwrap() > 1_700_000_000,
        "{mine}"
    );
    let alpha = &stats["data"][0];
    assert_eq!(
        (alpha["name"].clone(), alpha["requests"].clone()),
        (json!("alpha"), json!(1))
    );
}

#[test]
fn no_key_appears_in_the_log() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = start(&up, &dir, json!({"rate_limit": {"per_minute": 2}}));
    let (_, created) = create_key(&relay, json!({"name": "logged"}));
    let wrong = "sk-wrong-key-in-log-7777";
    for key in [CLIENT_KEY, created.as_str(), wrong, ADMIN_KEY] {
        let a = bearer(key);
        for _ in 0..3 {
            chat_with(&relay, &[("Authorization", &a)]);
        }
        chat_with(&relay, &[("X-API-Key", key)]);
        request(
            "GET",
            &relay.url("/admin/stats"),
            &[("X-API-Key", key)],
            None,
        );
    }
    relay.wait_for_log_line(Duration::from_secs(3), |l| l.contains("/admin/stats"));
    let log = relay.stderr_text();
    for key in [CLIENT_KEY, created.as_str(), wrong, ADMIN_KEY] {
        assert!(!log.contains(key), "{key} found in the log:\n{log}");
        assert!(
            !log.contains(&key[3..15]),
            "part of {key} found in the log:\n{log}"
        );
    }
}

#[test]
fn metrics_needs_a_key_only_with_protect_metrics() {
    let up = Upstream::openai();
    let open = Relay::start(&config_json(
        &up.base_url(),
        json!({"auth": {"keys": [CLIENT_KEY]}}),
    ));
    assert_ne!(get(&open.url("/metrics")).status, 401);
    let closed = Relay::start(&config_json(
        &up.base_url(),
        json!({"auth": {"keys": [CLIENT_KEY], "admin_key": ADMIN_KEY, "protect_metrics": true}}),
    ));
    get(&closed.url("/metrics")).assert_error(401, "invalid_api_key");
    for key in [CLIENT_KEY, ADMIN_KEY] {
        let r = request("GET", &closed.url("/metrics"), &[("X-API-Key", key)], None);
        assert_ne!(r.status, 401, "{key}: {}", r.body);
    }
    assert_eq!(get(&closed.url("/health")).status, 200);
}

#[test]
fn check_summarises_auth_without_keys() {
    let dir = TempDir::new();
    let cfg = json!({"auth": {"keys": [CLIENT_KEY], "admin_key": ADMIN_KEY},
        "rate_limit": {"per_minute": 30}});
    let path = dir.write("c.jsonc", &config_json("http://127.0.0.1:9/v1", cfg));
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(
            "auth: 1 config keys, no keys_file, admin API on, rate_limit per_minute 30 per_hour -"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(CLIENT_KEY) && !out.stdout.contains(ADMIN_KEY));
}

#[test]
fn non_loopback_listen_warns_only_without_keys() {
    let up = Upstream::openai();
    let open = Relay::start(&config_json(&up.base_url(), json!({"listen": "0.0.0.0:0"})));
    let warned = open.wait_for_log_line(Duration::from_secs(3), |l| {
        l.contains("warn") && l.contains("not a loopback address")
    });
    assert!(warned.is_some(), "{}", open.stderr_text());
    let keyed = Relay::start(&config_json(
        &up.base_url(),
        json!({"listen": "0.0.0.0:0", "auth": {"keys": [CLIENT_KEY]}}),
    ));
    keyed.wait_for_log_line(Duration::from_secs(3), |l| l.contains("serving on"));
    assert!(
        !keyed.stderr_text().contains("not a loopback address"),
        "{}",
        keyed.stderr_text()
    );
}

#[test]
fn admin_stats_count_cache_hits_per_key() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let cache_dir = dir.path().join("cache");
    let relay = start(
        &up,
        &dir,
        json!({"cache": {"enabled": true, "dir": cache_dir}}),
    );
    let auth = bearer(CLIENT_KEY);
    let first = chat_with(&relay, &[("Authorization", &auth)]);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = chat_with(&relay, &[("Authorization", &auth)]);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(up.requests().len(), 1, "the hit never reached the upstream");
    let stats = admin(&relay, "GET", "/admin/stats", None).json();
    let alpha = stats["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "alpha")
        .cloned()
        .unwrap_or_else(|| panic!("no stats for alpha in {stats}"));
    assert_eq!(alpha["requests"], 2, "{alpha}");
    assert_eq!(alpha["cache_hits"], 1, "{alpha}");
    // a hit is charged before its answer goes out, as a miss is: stats read right after each
    // answer count it (they once lagged the answer by the time the exchange took to end)
    for n in 2..42 {
        let hit = chat_with(&relay, &[("Authorization", &auth)]);
        assert_eq!(hit.header("x-cache"), Some("HIT"));
        let stats = admin(&relay, "GET", "/admin/stats", None).json();
        let hits = stats["data"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["name"] == "alpha"))
            .map(|k| k["cache_hits"].clone());
        assert_eq!(hits, Some(json!(n)), "{stats}");
    }
}

/// A streamed hit replayed at its recorded pace (`X-Relay-Cache-Timing: recorded`) is charged
/// before its first event: stats read while the client still waits for the rest count it.
/// (Hits were charged when their exchange ended, after the answer's last byte.)
#[test]
fn a_streamed_hit_is_charged_before_its_first_event() {
    let up = Upstream::start(|_| {
        Reply::sse(vec![
            (
                Duration::ZERO,
                chat_chunk("m", json!({"content": "a"}), None),
            ),
            // a gap the replay keeps: the client reads the first event long before the last
            (
                Duration::from_millis(1500),
                chat_chunk("m", json!({"content": "b"}), Some("stop")),
            ),
            (Duration::ZERO, sse_done()),
        ])
    });
    let dir = TempDir::new();
    let cache_dir = dir.path().join("cache");
    let relay = start(
        &up,
        &dir,
        json!({"cache": {"dir": cache_dir, "client_controls": ["timing"]}}),
    );
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"paced"}]}"#;
    let ask = |timing: bool| {
        let mut s = std::net::TcpStream::connect(relay.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let timing = if timing {
            "X-Relay-Cache-Timing: recorded\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {CLIENT_KEY}\r\n{timing}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
        s
    };
    let hits = || {
        let stats = admin(&relay, "GET", "/admin/stats", None).json();
        stats["data"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["name"] == "alpha"))
            .map(|k| k["cache_hits"].clone())
    };
    // the miss records the stream with its gap
    let mut first = String::new();
    std::io::Read::read_to_string(&mut ask(false), &mut first).unwrap();
    assert!(first.contains("[DONE]"), "{first}");
    // the hit: its first event, then the stats, while the rest is 1.5 s away
    let mut hit = ask(true);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = std::io::Read::read(&mut hit, &mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.contains("x-cache: hit"), "{text}");
    assert!(
        !text.contains("[done]"),
        "the rest is still to come: {text}"
    );
    assert_eq!(hits(), Some(json!(1)));
    std::io::Read::read_to_end(&mut hit, &mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("[DONE]"));
}
