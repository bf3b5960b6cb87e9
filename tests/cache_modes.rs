//! Cache modes, cassettes and `cache why` (issue #11): `read_only`, `record` and offline
//! `replay` (with the per-request header where the config allows it), `ignore_fields`,
//! `llm-relay cache why`, `cache export`/`import`, and an eval-like workload recorded once,
//! carried in a cassette and replayed with the upstream stopped.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const CHAT: &str = "/v1/chat/completions";

fn relay_in(up: &str, dir: &Path, cache: Value) -> Relay {
    Relay::start(&cache_config(up, dir, cache, json!({})))
}

/// An echo upstream and a relay in front of it with the cache (keys of `cache` added) in a
/// fresh directory.
fn echo_relay(cache: Value) -> (Upstream, TempDir, Relay) {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let relay = relay_in(&up.base_url(), dir.path(), cache);
    (up, dir, relay)
}

fn cli(args: &[&str]) -> RunOutput {
    let out = run_relay(args, &[]);
    assert_eq!(out.code, Some(0), "{args:?}: {}{}", out.stdout, out.stderr);
    out
}

/// Writes a config for a cache in `cache_dir` into `dir` and returns its path.
fn config_file(dir: &TempDir, up: &str, cache_dir: &Path, cache: Value) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = dir.write(
        &format!("c{}.jsonc", N.fetch_add(1, Ordering::SeqCst)),
        &cache_config(up, cache_dir, cache, json!({})),
    );
    path.to_str().unwrap().to_string()
}

#[test]
fn cache_read_only_serves_hits_and_stores_nothing() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    {
        let rw = relay_in(&up.base_url(), dir.path(), json!({}));
        post_json(&rw.url(CHAT), &ask("kept"));
    }
    let ro = relay_in(&up.base_url(), dir.path(), json!({"mode": "read_only"}));
    let hit = post_json(&ro.url(CHAT), &ask("kept"));
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    for _ in 0..2 {
        let r = post_json(&ro.url(CHAT), &ask("new"));
        assert_eq!(r.header("x-cache"), Some("MISS"));
        assert_eq!(answer_text(&r.body), echo_text("new"));
    }
    let s = stream_events(ro.addr(), CHAT, &ask_stream("new"));
    assert_eq!(s.header("x-cache"), Some("MISS"));
    assert!(
        up.requests()
            .last()
            .unwrap()
            .json()
            .get("stream_options")
            .is_none(),
        "nothing is stored, so nothing extra is asked"
    );
    assert_eq!(up.requests().len(), 4);
    assert_eq!(files_ending(dir.path(), ".request").len(), 1);
}

#[test]
fn cache_record_always_goes_upstream_and_replaces_the_entry() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    let up = Upstream::start(move |r| {
        let i = counter.fetch_add(1, Ordering::SeqCst);
        let mut answer = openai_reply(r);
        if let Reply::Raw { body, .. } = &mut answer {
            let mut v: Value = serde_json::from_slice(body).unwrap();
            v["choices"][0]["message"]["content"] = json!(format!("take {i}"));
            *body = serde_json::to_vec(&v).unwrap();
        }
        answer
    });
    let dir = TempDir::new();
    {
        let rec = relay_in(&up.base_url(), dir.path(), json!({"mode": "record"}));
        for i in 0..2 {
            let r = post_json(&rec.url(CHAT), &ask("take"));
            assert_eq!(r.header("x-cache"), Some("REFRESH"));
            assert_eq!(
                r.json()["choices"][0]["message"]["content"],
                format!("take {i}")
            );
        }
    }
    let rw = relay_in(&up.base_url(), dir.path(), json!({}));
    let r = post_json(&rw.url(CHAT), &ask("take"));
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "take 1");
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[test]
fn cache_mode_header_only_where_the_config_allows_it() {
    let (up, dir, relay) = echo_relay(json!({"mode_header": ["replay", "read_only"]}));
    let mut recorded = ask("h");
    recorded["temperature"] = json!(0.5);
    post_json(&relay.url(CHAT), &recorded);
    let hdr = [("X-Relay-Cache-Mode", "replay")];
    let r = post_json_with(&relay.url(CHAT), &recorded, &hdr);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    let mut changed = recorded.clone();
    changed["temperature"] = json!(0.9);
    let r = post_json_with(&relay.url(CHAT), &changed, &hdr);
    let msg = r.assert_error(404, "cache_miss");
    assert!(
        msg.contains("temperature (recorded 0.5, asked 0.9)"),
        "{msg}"
    );
    let e = &r.json()["error"];
    assert_eq!(e["closest"]["differs"], json!(["temperature"]), "{e}");
    assert!(e["key"].as_str().is_some_and(|k| k.len() == 64), "{e}");
    assert_eq!(up.requests().len(), 1, "replay never calls the upstream");
    let r = post_json_with(
        &relay.url(CHAT),
        &changed,
        &[("X-Relay-Cache-Mode", "record")],
    );
    let msg = r.assert_error(400, "cache_mode_not_allowed");
    assert!(msg.contains("replay, read_only"), "{msg}");

    let plain = relay_in(&up.base_url(), dir.path(), json!({}));
    let r = post_json_with(&plain.url(CHAT), &changed, &hdr);
    let msg = r.assert_error(400, "cache_mode_not_allowed");
    assert!(msg.contains("cache.mode_header"), "{msg}");
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn cache_ignore_fields_leaves_volatile_fields_out_of_the_key() {
    let (up, _dir, relay) = echo_relay(json!({"ignore_fields": ["user", "metadata"]}));
    let with = |user: &str| {
        let mut b = ask("ig");
        b["user"] = json!(user);
        b["metadata"] = json!({"run": user});
        b
    };
    assert_eq!(
        post_json(&relay.url(CHAT), &with("a")).header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        post_json(&relay.url(CHAT), &with("b")).header("x-cache"),
        Some("HIT")
    );
    assert_eq!(
        up.only_request().json()["user"],
        "a",
        "ignored fields still go upstream"
    );
    let mut other = with("c");
    other["temperature"] = json!(1);
    assert_eq!(
        post_json(&relay.url(CHAT), &other).header("x-cache"),
        Some("MISS")
    );

    let strict = TempDir::new();
    let relay = relay_in(&up.base_url(), strict.path(), json!({}));
    post_json(&relay.url(CHAT), &with("a"));
    assert_eq!(
        post_json(&relay.url(CHAT), &with("b")).header("x-cache"),
        Some("MISS")
    );

    let bad = TempDir::new();
    let path = bad.write("c.jsonc", r#"{"cache": {"ignore_fields": ["messages"]}}"#);
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("ignore_fields"), "{}", out.stderr);
}

#[test]
fn cache_why_prints_the_key_and_the_closest_requests_field_by_field() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let cfg_dir = TempDir::new();
    let config = config_file(&cfg_dir, &up.base_url(), dir.path(), json!({}));
    let mut recorded = ask("why");
    recorded["temperature"] = json!(0.5);
    let key = {
        let relay = relay_in(&up.base_url(), dir.path(), json!({}));
        let r = post_json(&relay.url(CHAT), &recorded);
        r.header("x-cache-key").unwrap().to_string()
    };
    let same = cfg_dir.write("same.json", &recorded.to_string());
    let out = cli(&["cache", "why", same.to_str().unwrap(), "--config", &config]);
    assert!(
        out.stdout.contains(&format!("key {key}, recorded")),
        "{}",
        out.stdout
    );
    let mut changed = recorded.clone();
    changed["temperature"] = json!(0.9);
    changed["messages"][0]["content"] = json!("why not");
    let file = cfg_dir.write("changed.json", &changed.to_string());
    let out = cli(&["cache", "why", file.to_str().unwrap(), "--config", &config]);
    let text = out.stdout;
    assert!(text.contains("not recorded"), "{text}");
    assert!(
        text.contains(&format!("1. key {key} (model m): 2 fields differ")),
        "{text}"
    );
    assert!(
        text.contains("messages[0].content (recorded \"why\", asked \"why not\")"),
        "{text}"
    );
    assert!(
        text.contains("temperature (recorded 0.5, asked 0.9)"),
        "{text}"
    );
    let out = run_relay(&["cache", "why", "--config", &config], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

/// `cache why --header`: a `/v1/messages` key includes the client's `anthropic-version` and
/// `anthropic-beta` (the relay keys by them), so `cache why` given the same header finds the
/// relay's key, and without it, or with another version or a beta, names the header as the
/// difference.
#[test]
fn cache_why_keys_messages_by_their_anthropic_headers() {
    let up = Upstream::apis();
    let dir = TempDir::new();
    let cfg_dir = TempDir::new();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "claude", "url": up.base_url(), "api": "anthropic",
                       "api_key": ANTHROPIC_KEY}],
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
    })
    .to_string();
    let config = cfg_dir.write("c.jsonc", &cfg);
    let config = config.to_str().unwrap();
    let body = json!({"model": "claude-fixture", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "why"}]});
    let key = {
        let relay = Relay::start(&cfg);
        let url = relay.url("/v1/messages");
        let version = [("anthropic-version", "2023-06-01")];
        let r = post_json_with(&url, &body, &version);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-cache"), Some("MISS"));
        let again = post_json_with(&url, &body, &version);
        assert_eq!(again.header("x-cache"), Some("HIT"), "recorded");
        r.header("x-cache-key").unwrap().to_string()
    };
    let file = cfg_dir.write("messages.json", &body.to_string());
    let why = |extra: &[&str]| {
        let mut args = vec!["cache", "why", file.to_str().unwrap(), "--config", config];
        args.extend_from_slice(extra);
        cli(&args).stdout
    };

    // the header alone tells the route: a body with `messages` and an anthropic- header
    let out = why(&["--header", "anthropic-version: 2023-06-01"]);
    assert!(
        out.contains(&format!(
            "/messages for model claude-fixture: key {key}, recorded"
        )),
        "{out}"
    );
    let cases: [(&[&str], &str); 3] = [
        (
            &["--route", "/v1/messages"],
            "relay:anthropic-version (recorded \"2023-06-01\", asked absent)",
        ),
        (
            &["-H", "anthropic-version: 2023-01-01"],
            "relay:anthropic-version (recorded \"2023-06-01\", asked \"2023-01-01\")",
        ),
        (
            &[
                "-H",
                "anthropic-version: 2023-06-01",
                "-H",
                "anthropic-beta: tools-2024-04-04",
            ],
            "relay:anthropic-beta (recorded absent, asked \"tools-2024-04-04\")",
        ),
    ];
    for (extra, named) in cases {
        let out = why(extra);
        assert!(out.contains("not recorded"), "{extra:?}: {out}");
        assert!(
            out.contains(&format!(
                "1. key {key} (model claude-fixture): 1 field differs"
            )),
            "{extra:?}: {out}"
        );
        assert!(out.contains(named), "{extra:?}: {out}");
    }
}

/// Every `.request`/`.txt` under `dir` by relative path, with its bytes.
fn entry_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files_ending(dir, ".request")
        .into_iter()
        .chain(files_ending(dir, ".txt"))
        .filter(|p| !p.to_string_lossy().contains("quarantine"))
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn cache_export_import_round_trip_is_byte_identical_and_checked() {
    let up = Upstream::openai();
    let (a, b, work) = (TempDir::new(), TempDir::new(), TempDir::new());
    let cfg_a = config_file(&work, &up.base_url(), a.path(), json!({}));
    let cfg_b = config_file(&work, &up.base_url(), b.path(), json!({}));
    {
        let relay = relay_in(&up.base_url(), a.path(), json!({}));
        post_json(&relay.url(CHAT), &ask("plain"));
        stream_events(relay.addr(), CHAT, &ask_stream("streamed"));
        post_json(
            &relay.url("/v1/embeddings"),
            &json!({"model": "emb-1", "input": "x"}),
        );
    }
    let first = work.path().join("one.jsonl");
    let out = cli(&[
        "cache",
        "export",
        "--config",
        &cfg_a,
        "--out",
        first.to_str().unwrap(),
    ]);
    assert!(out.stdout.contains("exported 3 entries"), "{}", out.stdout);
    let out = cli(&[
        "cache",
        "import",
        first.to_str().unwrap(),
        "--config",
        &cfg_b,
    ]);
    assert!(out.stdout.contains("3 added"), "{}", out.stdout);
    assert_eq!(entry_files(b.path()), entry_files(a.path()));
    let second = work.path().join("two.jsonl");
    cli(&[
        "cache",
        "export",
        "--config",
        &cfg_b,
        "--out",
        second.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    let out = cli(&[
        "cache",
        "import",
        first.to_str().unwrap(),
        "--config",
        &cfg_b,
    ]);
    assert!(out.stdout.contains("3 unchanged"), "{}", out.stdout);

    // filters
    let only = work.path().join("emb.jsonl");
    for (filter, value, exported) in [("--model", "emb-*", 1), ("--since", "2999-01-01", 0)] {
        let out = cli(&[
            "cache",
            "export",
            "--config",
            &cfg_a,
            "--out",
            only.to_str().unwrap(),
            filter,
            value,
        ]);
        let want = format!("exported {exported} entries");
        assert!(out.stdout.contains(&want), "{filter}: {}", out.stdout);
    }

    // imported entries serve plain and streamed hits, with the upstream gone
    drop(up);
    let replay = relay_in(&closed_port_url(), b.path(), json!({"mode": "replay"}));
    for q in ["plain", "streamed"] {
        let r = post_json(&replay.url(CHAT), &ask(q));
        assert_eq!(r.header("x-cache"), Some("HIT"), "{q}: {}", r.body);
        assert_eq!(r.json()["choices"][0]["message"]["content"], FIXTURE_TEXT);
        let s = stream_events(replay.addr(), CHAT, &ask_stream(q));
        assert_eq!(s.header("x-cache"), Some("HIT"), "{q}");
        assert_eq!(answer_text(&s.body), FIXTURE_TEXT);
        assert!(s.clean_end);
    }

    // a damaged cassette changes nothing and names the line
    let text = std::fs::read_to_string(&first).unwrap();
    let damaged = text.replacen("Hello from the fixture.", "Hello from elsewhere.", 1);
    assert_ne!(damaged, text);
    let bad = work.write("bad.jsonl", &damaged);
    let empty = TempDir::new();
    let cfg_e = config_file(&work, "http://127.0.0.1:9/v1", empty.path(), json!({}));
    let out = run_relay(
        &["cache", "import", bad.to_str().unwrap(), "--config", &cfg_e],
        &[],
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("line ") && out.stderr.contains("does not match its checksum"),
        "{}",
        out.stderr
    );
    assert!(entry_files(empty.path()).is_empty());
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    let cut = work.write("cut.jsonl", &cut);
    let out = run_relay(
        &["cache", "import", cut.to_str().unwrap(), "--config", &cfg_e],
        &[],
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("announces 3 entries"), "{}", out.stderr);
}

#[test]
fn cache_replay_never_calls_an_upstream_even_for_requests_it_does_not_cache() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let mut cfg: Value = serde_json::from_str(&upstreams_config(
        json!([{"name": "main", "url": up.base_url(), "api": "responses"}]),
        json!({}),
    ))
    .unwrap();
    cfg["cache"] = json!({"dir": dir.path().to_str().unwrap(), "mode": "replay"});
    let relay = Relay::start(&cfg.to_string());
    // a background Responses request is never answered from the cache; offline it is refused
    let body = json!({"model": "m", "input": "later", "background": true});
    let r = post_json(&relay.url("/v1/responses"), &body);
    r.assert_error(404, "cache_miss");
    let r = post_json(&relay.url(CHAT), &ask("never recorded"));
    let msg = r.assert_error(404, "cache_miss");
    assert!(msg.contains("Nothing was recorded"), "{msg}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}
