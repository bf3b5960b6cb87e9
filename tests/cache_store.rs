//! Cache store (issue #3): hit after miss with one upstream call, the canonical key, which
//! answers are stored, `Cache-Control`, scopes, stats, the memory tier.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn chat_url(relay: &Relay) -> String {
    relay.url("/v1/chat/completions")
}

fn echo_upstream() -> Upstream {
    Upstream::start(|r| echo_reply(r, Duration::ZERO))
}

#[test]
fn cache_second_identical_request_is_a_hit_without_upstream_call() {
    let up = echo_upstream();
    let (dir, relay) = cached_relay(&up);
    let first = post_json(&chat_url(&relay), &ask("q1"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let key = first.header("x-cache-key").unwrap_or("").to_string();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "key {key:?}"
    );

    let second = post_json(&chat_url(&relay), &ask("q1"));
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(second.body, first.body, "a hit answers the stored bytes");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(
        up.requests().len(),
        1,
        "the hit must not reach the upstream"
    );

    // layout: <dir>/<first two hex>/<key>.request + <key>.<sha256 of the answer>.txt
    let sub = dir.path().join(&key[..2]);
    let answer = entry_files(dir.path(), &key).1;
    assert_eq!(
        answer,
        sub.join(format!("{key}.{}.txt", sha256_hex(&first.body)))
    );
    let txt = std::fs::read_to_string(answer).unwrap();
    assert_eq!(txt, first.body);
    let request = std::fs::read_to_string(sub.join(format!("{key}.request"))).unwrap();
    let meta: Value = serde_json::from_str(request.lines().next().unwrap()).unwrap();
    assert_eq!(meta["route"], "/chat/completions");
    assert_eq!(meta["version"], 1);
    assert!(meta["created"].as_f64().unwrap() > 1.7e9, "{meta}");
    assert!(request.contains("\"q1\""), "{request}");
}

#[test]
fn cache_key_ignores_key_order_and_whitespace_but_not_other_fields() {
    let up = echo_upstream();
    let (_dir, relay) = cached_relay(&up);
    let base = br#"{"model":"m","temperature":0.5,"messages":[{"role":"user","content":"k"}]}"#;
    let r = post_raw(&chat_url(&relay), base, &[]);
    assert_eq!(r.header("x-cache"), Some("MISS"), "{}", r.body);
    let same: &[&[u8]] = &[
        b"{ \"messages\" : [ { \"content\":\"k\", \"role\":\"user\" } ],\n \"temperature\": 0.5, \"model\":\"m\" }",
        br#"{"temperature":0.5,"model":"m","messages":[{"content":"k","role":"user"}],"stream":false}"#,
    ];
    for body in same {
        let r = post_raw(&chat_url(&relay), body, &[]);
        assert_eq!(
            r.header("x-cache"),
            Some("HIT"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let different = [
        json!({"model": "m2", "temperature": 0.5, "messages": [{"role": "user", "content": "k"}]}),
        json!({"model": "m", "temperature": 0.6, "messages": [{"role": "user", "content": "k"}]}),
        json!({"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": "K"}]}),
        json!({"model": "m", "temperature": 0.5, "seed": 1, "messages": [{"role": "user", "content": "k"}]}),
        json!({"model": "m", "temperature": 0.5, "tools": [{"type": "function", "function": {"name": "f"}}],
               "messages": [{"role": "user", "content": "k"}]}),
    ];
    for body in &different {
        let r = post_json(&chat_url(&relay), body);
        assert_eq!(r.header("x-cache"), Some("MISS"), "{body}");
    }
    assert_eq!(up.requests().len(), 1 + different.len());
}

#[test]
fn cache_errors_truncated_streams_and_empty_answers_are_not_stored() {
    let cases: Vec<(&str, Reply, bool)> = vec![
        (
            "429",
            Reply::json(
                429,
                json!({"error": {"message": "slow down", "type": "rate_limit"}}),
            ),
            false,
        ),
        (
            "500",
            Reply::raw(500, &[("Content-Type", "text/plain")], "boom"),
            false,
        ),
        (
            "200 error body",
            Reply::json(200, json!({"error": {"message": "x"}})),
            false,
        ),
        (
            "200 empty",
            Reply::raw(200, &[("Content-Type", "application/json")], ""),
            false,
        ),
        (
            "200 no choices",
            Reply::json(200, json!({"id": "x", "choices": []})),
            false,
        ),
        (
            "200 not JSON",
            Reply::raw(
                200,
                &[("Content-Type", "application/json")],
                "{\"choices\":[",
            ),
            false,
        ),
        (
            "truncated stream",
            Reply::sse_then_die(vec![(
                Duration::ZERO,
                chat_chunk("m", json!({"content": "par"}), None),
            )]),
            true,
        ),
        (
            "stream closed without finish",
            Reply::sse(vec![(
                Duration::ZERO,
                chat_chunk("m", json!({"content": "par"}), None),
            )]),
            true,
        ),
    ];
    for (name, reply, stream) in cases {
        let up = Upstream::start(move |_| reply.clone());
        let dir = TempDir::new();
        let relay = Relay::start(&cache_config(
            &up.base_url(),
            dir.path(),
            json!({}),
            json!({"idle_timeout_ms": 2000}),
        ));
        for _ in 0..2 {
            if stream {
                let r = stream_events(relay.addr(), "/v1/chat/completions", &ask_stream(name));
                assert_eq!(r.header("x-cache"), Some("MISS"), "{name}: {:?}", r.headers);
            } else {
                let r = post_json(&chat_url(&relay), &ask(name));
                assert_eq!(r.header("x-cache"), Some("MISS"), "{name}: {}", r.body);
            }
        }
        assert_eq!(up.requests().len(), 2, "{name}: must not be stored");
        assert!(
            files_ending(dir.path(), ".txt").is_empty(),
            "{name}: a file was written"
        );
    }
}

#[test]
fn cache_control_no_cache_refreshes_no_store_bypasses_max_age_limits() {
    let up = echo_upstream();
    let (dir, relay) = cached_relay(&up);
    let url = chat_url(&relay);
    let cc = |v: &'static str| [("Cache-Control", v)];

    // no-store: neither read nor write
    let r = post_json_with(&url, &ask("a"), &cc("no-store"));
    assert_eq!((r.status, r.header("x-cache")), (200, Some("BYPASS")));
    assert!(
        files_ending(dir.path(), ".txt").is_empty(),
        "no-store wrote an entry"
    );
    assert_eq!(post_json(&url, &ask("a")).header("x-cache"), Some("MISS"));
    assert_eq!(
        post_json_with(&url, &ask("a"), &cc("no-store")).header("x-cache"),
        Some("BYPASS")
    );
    assert_eq!(post_json(&url, &ask("a")).header("x-cache"), Some("HIT"));
    assert_eq!(up.requests().len(), 3);

    // no-cache: upstream, and the entry is replaced
    let key = post_json(&url, &ask("a"))
        .header("x-cache-key")
        .unwrap()
        .to_string();
    let txt = entry_files(dir.path(), &key).1;
    std::fs::write(
        &txt,
        std::fs::read_to_string(&txt)
            .unwrap()
            .replace("echo[a]", "stale"),
    )
    .unwrap();
    let r = post_json_with(&url, &ask("a"), &cc("no-cache"));
    assert_eq!(r.header("x-cache"), Some("REFRESH"));
    assert_eq!(up.requests().len(), 4);
    assert!(
        std::fs::read_to_string(&txt).unwrap().contains("echo[a]"),
        "entry not replaced"
    );
    let r = post_json(&url, &ask("a"));
    assert_eq!(
        (r.header("x-cache"), answer_text(&r.body)),
        (Some("HIT"), "echo[a]".to_string())
    );

    // max-age: only entries younger than N seconds count
    assert_eq!(
        post_json_with(&url, &ask("a"), &cc("max-age=3600")).header("x-cache"),
        Some("HIT")
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = post_json_with(&url, &ask("a"), &cc("max-age=1"));
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(up.requests().len(), 5);
    // the answer just stored is young enough (a bound far above any request's time here)
    assert_eq!(
        post_json_with(&url, &ask("a"), &cc("max-age=60")).header("x-cache"),
        Some("HIT")
    );
}

#[test]
fn cache_scope_key_keeps_clients_apart_shared_scope_does_not() {
    for (scope, shared) in [("key", false), ("shared", true)] {
        let up = echo_upstream();
        let dir = TempDir::new();
        let relay = Relay::start(&cache_config(
            &up.base_url(),
            dir.path(),
            json!({"scope": scope}),
            json!({}),
        ));
        let url = chat_url(&relay);
        let alice = [("Authorization", "Bearer sk-alice-secret")];
        let bob = [("X-API-Key", "sk-bob-secret")];
        assert_eq!(
            post_json_with(&url, &ask("s"), &alice).header("x-cache"),
            Some("MISS")
        );
        assert_eq!(
            post_json_with(&url, &ask("s"), &alice).header("x-cache"),
            Some("HIT")
        );
        let expected = if shared { "HIT" } else { "MISS" };
        assert_eq!(
            post_json_with(&url, &ask("s"), &bob).header("x-cache"),
            Some(expected),
            "{scope}"
        );
        assert_eq!(
            post_json_with(&url, &ask("s"), &bob).header("x-cache"),
            Some("HIT"),
            "{scope}"
        );
        for f in files_ending(dir.path(), "") {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            assert!(
                !text.contains("secret"),
                "{scope}: a credential was stored in {f:?}"
            );
        }
        assert!(!relay.stderr_text().contains("secret"), "credential logged");
    }
}

#[test]
fn cache_stats_counts_hits_misses_and_tokens_saved() {
    let up = echo_upstream();
    let (_dir, relay) = cached_relay(&up);
    for q in ["x", "x", "x", "y"] {
        assert_eq!(post_json(&chat_url(&relay), &ask(q)).status, 200);
    }
    let s = get(&relay.url("/cache/stats")).json();
    assert_eq!(s["hits"], 2, "{s}");
    assert_eq!(s["misses"], 2, "{s}");
    assert_eq!(s["entries"], 2, "{s}");
    assert_eq!(s["tokens_saved"], 18, "two hits of 9 tokens: {s}");
    assert_eq!(s["hit_ratio"], 0.5, "{s}");
    assert!(s["bytes"].as_u64().unwrap() > 200, "{s}");

    let off = Upstream::openai();
    let plain = Relay::start(&config_json(&off.base_url(), json!({})));
    assert_eq!(
        get(&plain.url("/cache/stats")).json(),
        json!({"enabled": false})
    );
    let r = post_json(&plain.url("/v1/chat/completions"), &ask("x"));
    assert_eq!(r.header("x-cache"), None, "cache off: no X-Cache header");
}

#[test]
fn cache_memory_tier_answers_without_touching_disk() {
    for (items, expected) in [(10, "HIT"), (0, "MISS")] {
        let up = echo_upstream();
        let dir = TempDir::new();
        let relay = Relay::start(&cache_config(
            &up.base_url(),
            dir.path(),
            json!({"memory_items": items}),
            json!({}),
        ));
        assert_eq!(
            post_json(&chat_url(&relay), &ask("m")).header("x-cache"),
            Some("MISS")
        );
        for f in files_ending(dir.path(), ".txt") {
            std::fs::remove_file(f).unwrap();
        }
        let r = post_json(&chat_url(&relay), &ask("m"));
        assert_eq!(r.header("x-cache"), Some(expected), "memory_items {items}");
        assert_eq!(answer_text(&r.body), "echo[m]");
    }
}

#[test]
fn cache_durability_none_stores_and_serves_as_fsync_does() {
    for durability in ["fsync", "none"] {
        let up = echo_upstream();
        let dir = TempDir::new();
        let relay = Relay::start(&cache_config(
            &up.base_url(),
            dir.path(),
            json!({"durability": durability, "memory_items": 0}),
            json!({}),
        ));
        let first = post_json(&chat_url(&relay), &ask("d"));
        assert_eq!(first.header("x-cache"), Some("MISS"), "{durability}");
        let key = first.header("x-cache-key").unwrap_or("").to_string();
        // the pair is on disk, whole, and answers from disk
        let answer = entry_files(dir.path(), &key).1;
        assert_eq!(std::fs::read_to_string(answer).unwrap(), first.body);
        let second = post_json(&chat_url(&relay), &ask("d"));
        assert_eq!(second.header("x-cache"), Some("HIT"), "{durability}");
        assert_eq!(second.body, first.body);
        assert_eq!(up.requests().len(), 1);
    }
    let dir = TempDir::new();
    let cfg = json!({"cache": {"enabled": true, "durability": "sometimes"}});
    let path = dir.write("c.jsonc", &config_json("http://127.0.0.1:9/v1", cfg));
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("`cache.durability` must be \"fsync\" or \"none\""),
        "{}",
        out.stderr
    );
}
