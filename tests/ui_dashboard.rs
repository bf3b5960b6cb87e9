//! The built-in dashboard (issue 23): `/ui` only with `ui.enabled`, every data route under
//! `/admin/ui/` only with the admin key (plain HTTP here), the figures it shows against
//! `/admin/stats` after a workload, a request's bodies with the key redacted, and the whole
//! page driven in a real headless browser (`tests/e2e/ui_browser.py`: Selenium and Debian's
//! chromium), which writes a screenshot of each page under `target/ui-screenshots/`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const ADMIN: &str = "ui-admin-key-0123456789";
const CLIENT: &str = "ui-client-key-0123456789";

/// A relay with auth, the cache, the body log, prices and the dashboard on.
fn ui_relay(up: &Upstream, dir: &TempDir) -> Relay {
    ui_relay_in_mode(up, dir, "read_write")
}

/// [`ui_relay`] with `cache.mode`.
fn ui_relay_in_mode(up: &Upstream, dir: &TempDir, mode: &str) -> Relay {
    let cfg = json!({
        "auth": {"admin_key": ADMIN, "keys": [{"key": CLIENT, "name": "team-a"}],
                 "keys_file": dir.path().join("keys.json")},
        "cache": {"enabled": true, "dir": dir.path().join("cache"), "mode": mode},
        "body_log": dir.path().join("bodies.jsonl"),
        "prices": [{"match_model": "*", "input_per_million": 1000.0, "output_per_million": 2000.0}],
        "ui": {"enabled": true},
    });
    Relay::start(&config_json(&up.base_url(), cfg))
}

fn admin(relay: &Relay, method: &str, path: &str, body: Option<Value>) -> Resp {
    admin_call(relay, ADMIN, method, path, body)
}

/// Every data route of the dashboard: method, path, body.
fn data_routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/admin/ui/overview", None),
        ("GET", "/admin/ui/overview?window=day", None),
        ("GET", "/admin/ui/keys", None),
        ("GET", "/admin/ui/upstreams", None),
        ("GET", "/admin/ui/requests", None),
        ("GET", "/admin/ui/requests/1", None),
        ("GET", "/admin/ui/cache?q=hello", None),
        ("GET", "/admin/ui/cache/entries/00", None),
        (
            "POST",
            "/admin/ui/cache/why",
            Some(json!({"body": {"model": "m", "messages": []}})),
        ),
        ("POST", "/admin/ui/cache/export", Some(json!({"keys": []}))),
    ]
}

#[test]
fn the_dashboard_is_off_by_default_and_then_every_path_is_a_404() {
    let up = Upstream::openai();
    let cfg = json!({"auth": {"admin_key": ADMIN}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
        get(&relay.url(path)).assert_error(404, "not_found");
    }
    for (method, path, body) in data_routes() {
        admin(&relay, method, path, body).assert_error(404, "not_found");
    }
}

#[test]
fn ui_enabled_needs_the_admin_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "relay.jsonc",
        "{\n  \"auth\": {\"keys\": [\"client-key-123\"]},\n  \"ui\": {\n    \"enabled\": true\n  }\n}\n",
    );
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("`ui.enabled` needs `auth.admin_key`") && out.stderr.contains("line 4"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_page_is_open_but_every_data_call_needs_the_admin_key() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = ui_relay(&up, &dir);
    let page = get(&relay.url("/ui"));
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("id=\"login-form\""));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(get(&relay.url("/ui/app.js"))
        .body
        .contains("sessionStorage"));
    for (method, path, body) in data_routes() {
        let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
        let ct = ("Content-Type", "application/json");
        let none = request(method, &relay.url(path), &[ct], bytes.as_deref());
        none.assert_error(401, "invalid_api_key");
        let as_client = format!("Bearer {CLIENT}");
        let client = request(
            method,
            &relay.url(path),
            &[ct, ("Authorization", &as_client)],
            bytes.as_deref(),
        );
        client.assert_error(401, "invalid_api_key");
        let ok = admin(&relay, method, path, body);
        let expected = if path.contains("/requests/1") || path.contains("/entries/") {
            404 // no request 1 yet, no such entry: but admitted
        } else {
            200
        };
        assert_eq!(ok.status, expected, "{method} {path}: {}", ok.body);
    }
}

#[test]
fn the_figures_match_admin_stats_and_a_detail_shows_the_body_redacted() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = ui_relay(&up, &dir);
    let ask = |text: &str| {
        json!({"model": "gpt-fixture", "messages": [{"role": "user", "content": text}],
               "api_key": "sk-live-secret-in-body"})
    };
    // a request is counted and listed once its exchange is dropped, just after the client has
    // its answer, and the list is in the order requests finished: wait for each to be listed
    // before the next is sent
    let listed = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while admin(&relay, "GET", "/admin/ui/requests", None).json()["data"]
            .as_array()
            .map_or(0, Vec::len)
            < n
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for (i, text) in ["one", "two", "one", "one"].into_iter().enumerate() {
        let r = chat_as(&relay, CLIENT, &ask(text));
        assert_eq!(r.status, 200, "{}", r.body);
        listed(i + 1);
    }
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &json!({"messages": []}),
        &[("X-API-Key", CLIENT)],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    listed(5);
    let stats = admin(&relay, "GET", "/admin/stats", None).json();
    let team = &stats["data"][0];
    let overview = admin(&relay, "GET", "/admin/ui/overview", None).json();
    let total = &overview["overview"]["total"];
    assert_eq!(total["requests"], team["requests"], "{overview}\n{stats}");
    assert_eq!(total["requests"], 5);
    assert_eq!(total["cache_hits"], team["cache_hits"]);
    assert_eq!(total["cache_hits"], 2);
    assert_eq!(total["saved_tokens"], team["saved_tokens"]);
    assert_eq!(total["saved_usd"], team["saved_usd"]);
    assert_eq!(total["errors"], 1);
    assert_eq!(total["errors_by_kind"]["invalid_request"], 1, "{total}");
    assert!(total["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(overview["replica"]["hostname"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));

    let keys = admin(&relay, "GET", "/admin/ui/keys", None).json();
    let k = &keys["data"][0];
    assert_eq!(k["total"]["requests"], team["requests"]);
    assert_eq!(k["today"]["requests"], 5);

    let list = admin(&relay, "GET", "/admin/ui/requests", None).json();
    let items = list["data"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{list}");
    assert_eq!(items[0]["status"], 400);
    assert_eq!(items[1]["cache"], "hit");
    assert_eq!(items[4]["key_name"], "team-a");
    assert_eq!(items[4]["model"], "gpt-fixture");
    // the first call went upstream: its bodies come from the body log, redacted
    let id = items[4]["id"].as_u64().unwrap();
    let detail = admin(&relay, "GET", &format!("/admin/ui/requests/{id}"), None).json();
    assert_eq!(detail["bodies"]["source"], "body_log", "{detail}");
    assert_eq!(detail["bodies"]["request"]["messages"][0]["content"], "one");
    assert_eq!(detail["bodies"]["request"]["api_key"], "[redacted]");
    assert!(!detail.to_string().contains("sk-live-secret"), "{detail}");
    assert!(!detail.to_string().contains(CLIENT), "{detail}");
    // a hit never went upstream: its bodies come from the cache entry, redacted the same way
    let hit = items[1]["id"].as_u64().unwrap();
    let detail = admin(&relay, "GET", &format!("/admin/ui/requests/{hit}"), None).json();
    assert_eq!(detail["bodies"]["source"], "cache", "{detail}");
    assert!(!detail.to_string().contains("sk-live-secret"), "{detail}");

    // the cache page: the index holds both entries, search finds one, open, why, export
    let cache = admin(&relay, "GET", "/admin/ui/cache?q=%22two%22", None).json();
    assert_eq!(cache["index"]["indexed"], 2, "{cache}");
    assert_eq!(cache["search"]["matches"], 1, "{cache}");
    let key = cache["search"]["data"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = admin(
        &relay,
        "GET",
        &format!("/admin/ui/cache/entries/{key}"),
        None,
    )
    .json();
    assert_eq!(entry["request"]["messages"][0]["content"], "two");
    let why = admin(
        &relay,
        "POST",
        "/admin/ui/cache/why",
        Some(json!({"body": ask("twi")})),
    )
    .json();
    assert!(
        why["text"]
            .as_str()
            .unwrap()
            .contains("messages[0].content"),
        "{why}"
    );
    let export = admin(
        &relay,
        "POST",
        "/admin/ui/cache/export",
        Some(json!({"keys": [key]})),
    );
    assert_eq!(export.status, 200);
    assert_eq!(export.header("x-relay-exported"), Some("1"));
    assert_eq!(export.body.lines().count(), 2, "{}", export.body);
    assert!(export.body.contains(&key));
    assert_eq!(export.header("x-relay-left-out-secrets"), Some("0"));

    // an entry holding a credential-shaped string is never exported from the page
    let leaked = "my key is sk-proj-4f9aXb2c8d7e6f5a4b3c2d1e";
    let r = chat_as(&relay, CLIENT, &ask(leaked));
    assert_eq!(r.status, 200, "{}", r.body);
    let found = admin(&relay, "GET", "/admin/ui/cache?q=sk-proj", None).json();
    assert_eq!(found["search"]["matches"], 1, "{found}");
    let secret_key = found["search"]["data"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let export = admin(
        &relay,
        "POST",
        "/admin/ui/cache/export",
        Some(json!({"keys": [key, secret_key]})),
    );
    assert_eq!(export.status, 200);
    assert_eq!(export.header("x-relay-exported"), Some("1"));
    assert_eq!(export.header("x-relay-left-out-secrets"), Some("1"));
    assert!(
        !export.body.contains("sk-proj-4f9aXb2c8d7e6f5a4b3c2d1e"),
        "{}",
        export.body
    );
}

#[test]
fn the_last_requests_are_bounded_by_bytes() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let cfg = json!({
        "auth": {"admin_key": ADMIN, "keys": [CLIENT]},
        "ui": {"enabled": true, "recent_bytes": 65536},
    });
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let _ = dir;
    let model = "m".repeat(250);
    for _ in 0..200 {
        let r = chat_as(&relay, CLIENT, &json!({"model": model, "messages": []}));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let list = admin(&relay, "GET", "/admin/ui/requests?limit=500", None).json();
    let held = list["held"].as_u64().unwrap();
    assert!(
        list["bytes"].as_u64().unwrap() <= 65536,
        "{}",
        list["bytes"]
    );
    assert!(held > 50 && held < 200, "held {held}");
    assert_eq!(list["data"].as_array().unwrap().len() as u64, held);
    admin(&relay, "GET", "/admin/ui/requests?limit=0", None).assert_error(400, "invalid_request");
    admin(&relay, "GET", "/admin/ui/overview?window=week", None)
        .assert_error(400, "invalid_request");
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    require_python_module("selenium");
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = ui_relay(&up, &dir);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/ui-screenshots");
    std::fs::create_dir_all(shots).unwrap();
    let root = format!("http://{}", relay.addr());
    let out = run_e2e_script(
        "ui_browser.py",
        &[&root, ADMIN, CLIENT, shots],
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        // the script exits 3 only when the browser itself cannot start, and says why
        eprintln!("SKIPPED: the headless browser cannot start here:\n{stdout}\n{stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "ui_browser.py failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- relay ---\n{}",
        out.status,
        relay.stderr_text()
    );
    assert!(
        stdout.contains("all dashboard browser checks passed"),
        "{stdout}"
    );
}

#[test]
fn the_keys_page_covers_the_fleet_with_redis_and_the_overview_is_this_replicas() {
    let up = Upstream::openai();
    let redis = RedisServer::start();
    let cfg = json!({
        "auth": {"admin_key": ADMIN, "keys": [{"key": CLIENT, "name": "team-a"}]},
        "state": {"redis": redis.url()},
        "ui": {"enabled": true},
    });
    let text = config_json(&up.base_url(), cfg);
    let (a, b) = (Relay::start(&text), Relay::start(&text));
    let ask = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        assert_eq!(chat_as(&a, CLIENT, &ask).status, 200);
    }
    // usage is charged before the answer's last bytes, so b reads it from Redis at once
    let keys = admin_call(&b, ADMIN, "GET", "/admin/ui/keys", None).json();
    assert_eq!(keys["shared_state"], true, "{keys}");
    assert_eq!(keys["data"][0]["total"]["requests"], 3, "{keys}");
    assert_eq!(keys["data"][0]["today"]["requests"], 3, "{keys}");
    let on = |r: &Relay| {
        admin_call(r, ADMIN, "GET", "/admin/ui/overview", None).json()["overview"]["total"]
            ["requests"]
            .clone()
    };
    assert_eq!((on(&a), on(&b)), (json!(3), json!(0)));
    let replica = |r: &Relay| {
        admin_call(r, ADMIN, "GET", "/admin/ui/overview", None).json()["replica"]["instance_id"]
            .clone()
    };
    assert_ne!(replica(&a), replica(&b), "each replica names itself");
}

#[test]
fn refusals_errors_by_kind_upstream_latency_and_a_recorded_stream() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let cfg = json!({
        "auth": {"admin_key": ADMIN,
                 "keys": [{"key": CLIENT, "name": "limited", "rate_limit": {"per_minute": 2}}]},
        "cache": {"enabled": true, "dir": dir.path().join("cache")},
        "ui": {"enabled": true},
    });
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let stream = json!({"model": "m", "stream": true,
                        "messages": [{"role": "user", "content": "stream me"}]});
    let first = chat_as(&relay, CLIENT, &stream);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(chat_as(&relay, CLIENT, &stream).status, 200); // a hit
    let refused = chat_as(&relay, CLIENT, &stream);
    refused.assert_error(429, "rate_limit_exceeded");

    let keys = admin(&relay, "GET", "/admin/ui/keys", None).json();
    assert_eq!(keys["data"][0]["refusals"]["rate_limited"], 1, "{keys}");
    assert_eq!(keys["data"][0]["refusals"]["budget_exceeded"], 0);
    let total =
        admin(&relay, "GET", "/admin/ui/overview", None).json()["overview"]["total"].clone();
    assert_eq!(
        total["errors_by_kind"],
        json!({"rate_limit_exceeded": 1}),
        "{total}"
    );
    assert_eq!(
        (total["cache_hits"].clone(), total["cache_misses"].clone()),
        (json!(1), json!(1))
    );
    assert!((total["hit_ratio"].as_f64().unwrap() - 0.5).abs() < 1e-9);

    let ups = admin(&relay, "GET", "/admin/ui/upstreams", None).json();
    let hour = &ups["data"][0]["last_hour"];
    assert_eq!(hour["requests"], 1, "only the miss went upstream: {ups}");
    assert!(hour["p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ups["data"][0]["healthy"], true);

    // no body log: the stream's bodies come from its cache entry, as events
    let list = admin(&relay, "GET", "/admin/ui/requests", None).json();
    // found by what it is: a request is listed when its exchange ends, just after its answer's
    // last byte, so the next request (the hit) may be listed before it
    let listed = list["data"].as_array().unwrap();
    let misses: Vec<&Value> = listed.iter().filter(|r| r["cache"] == "miss").collect();
    assert_eq!(misses.len(), 1, "{list}");
    let miss = misses[0];
    let detail = admin(
        &relay,
        "GET",
        &format!("/admin/ui/requests/{}", miss["id"]),
        None,
    )
    .json();
    assert_eq!(detail["bodies"]["source"], "cache", "{detail}");
    let events = detail["bodies"]["events"].as_array().unwrap();
    assert!(events.len() > 3, "{detail}");
    assert_eq!(events.last().unwrap(), "data: [DONE]");
    assert_eq!(
        detail["bodies"]["request"]["messages"][0]["content"],
        "stream me"
    );
}

#[test]
fn a_detail_never_shows_another_requests_line_of_a_truncated_body_log() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let log = dir.path().join("bodies.jsonl");
    let cfg = json!({"auth": {"admin_key": ADMIN, "keys": [CLIENT]}, "body_log": log,
                     "ui": {"enabled": true}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let ask = |text: &str| json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    assert_eq!(chat_as(&relay, CLIENT, &ask("alpha")).status, 200);
    // the n-th last of `listed` requests: a request is listed once its exchange is dropped,
    // just after the client has its answer, so wait until all of them are
    let detail = |n: usize, listed: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let list = loop {
            let list = admin(&relay, "GET", "/admin/ui/requests", None).json();
            let len = list["data"].as_array().map_or(0, Vec::len);
            if len >= listed || std::time::Instant::now() > deadline {
                break list;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let id = list["data"][n]["id"].as_u64().unwrap();
        admin(&relay, "GET", &format!("/admin/ui/requests/{id}"), None).json()
    };
    assert_eq!(
        detail(0, 1)["bodies"]["request"]["messages"][0]["content"],
        "alpha"
    );
    // rotated away: the next line starts where alpha's did, and is the same length
    std::fs::write(&log, b"").unwrap();
    assert_eq!(chat_as(&relay, CLIENT, &ask("gamma")).status, 200);
    assert_eq!(
        detail(0, 2)["bodies"]["request"]["messages"][0]["content"],
        "gamma"
    );
    let alpha = detail(1, 2);
    assert_eq!(alpha["bodies"]["source"], "none", "{alpha}");
    assert!(!alpha.to_string().contains("gamma"), "{alpha}");
}

/// Issue 19/23 follow-up: the cache page and a replay miss read one index of recorded requests,
/// filled once at start from the directory (entries recorded by an earlier process).
#[test]
fn the_cache_page_and_a_replay_miss_share_one_index_filled_at_start() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    {
        let relay = ui_relay(&up, &dir);
        for text in ["first recorded question", "second recorded question"] {
            let r = chat_as(&relay, CLIENT, &ask(text));
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let relay = ui_relay_in_mode(&up, &dir, "replay");
    let filled = relay.wait_for_log_line(Duration::from_secs(30), |l| l.contains("cache index:"));
    assert!(
        filled
            .as_ref()
            .is_some_and(|l| l.contains("2 recorded requests read")),
        "{filled:?}"
    );
    let cache = admin(&relay, "GET", "/admin/ui/cache?q=second", None).json();
    assert_eq!(cache["index"]["indexed"], 2, "{cache}");
    assert_eq!(cache["index"]["searchable"], 2, "{cache}");
    assert_eq!(cache["index"]["filled"], true, "{cache}");
    assert_eq!(cache["search"]["matches"], 1, "{cache}");
    let second = cache["search"]["data"][0]["key"].clone();
    // nothing was stored by this process: the miss finds its closest entry in the same index
    // (one field away from the second entry, two from the first)
    let mut asked = ask("second recorded question");
    asked["temperature"] = json!(0.5);
    let r = chat_as(&relay, CLIENT, &asked);
    r.assert_error(404, "cache_miss");
    let closest = &r.json()["error"]["closest"];
    assert_eq!(closest["key"], second, "{}", r.body);
    assert_eq!(closest["differs"], json!(["temperature"]), "{}", r.body);
    assert_eq!(up.requests().len(), 2, "replay never calls the upstream");
}

/// A reload that turns the dashboard on: the index was filled without request texts (the
/// dashboard was off), so they are read then, and the search covers the earlier entries.
#[test]
fn a_reload_that_turns_the_dashboard_on_makes_earlier_entries_searchable() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let cfg = |ui: bool| {
        config_json(
            &up.base_url(),
            json!({
                "auth": {"admin_key": ADMIN, "keys": [{"key": CLIENT, "name": "team-a"}]},
                "cache": {"enabled": true, "dir": dir.path().join("cache")},
                "ui": {"enabled": ui},
            }),
        )
    };
    let relay = Relay::start(&cfg(false));
    relay
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains("cache index:"))
        .expect("the index is filled");
    for text in ["first recorded question", "second recorded question"] {
        let r = chat_as(&relay, CLIENT, &ask(text));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    std::fs::write(relay.config_path(), cfg(true)).unwrap();
    relay.signal("HUP");
    relay
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains("config reloaded"))
        .expect("a `config reloaded` log line");
    // the texts are read on a thread of their own: wait for them
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let cache = loop {
        let cache = admin(&relay, "GET", "/admin/ui/cache?q=second", None).json();
        if cache["index"]["searchable"] == 2 || std::time::Instant::now() > deadline {
            break cache;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(cache["index"]["indexed"], 2, "{cache}");
    assert_eq!(cache["index"]["searchable"], 2, "{cache}");
    assert_eq!(cache["search"]["matches"], 1, "{cache}");
    assert_eq!(cache["search"]["data"][0]["namespace"], "shared", "{cache}");
}
