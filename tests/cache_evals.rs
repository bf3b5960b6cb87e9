//! What an eval team needs from the cache (issue #22): request controls allowed by
//! `cache.client_controls`, samples (pass@k) and `cache.repeat: "sequence"` (per process and in
//! Redis), namespaces with fallback, the replay miss log and `cache misses`, secret-scanned
//! deterministic cassettes, `cache prune --unused-since`, recorded stream timing, and the
//! issue's eval: 1,000 requests recorded with samples on two replicas sharing a directory and
//! replayed offline on a third.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::*;

const CHAT: &str = "/v1/chat/completions";
const ALL_CONTROLS: &str = r#"["sample", "namespace", "timing"]"#;

/// An upstream whose every answer is new: `call N: CONTENT` (N counts its calls), as JSON.
fn counting_upstream() -> (Upstream, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&n);
    let up = Upstream::start(move |r| {
        let i = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let body = r.json();
        let content = body["messages"][0]["content"].as_str().unwrap_or("");
        Reply::json(
            200,
            json!({"id": format!("c{i}"), "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant",
                                "content": format!("call {i}: {content}")},
                                "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        )
    });
    (up, n)
}

fn controls() -> Value {
    serde_json::from_str(ALL_CONTROLS).unwrap()
}

fn relay_in(up: &str, dir: &Path, cache: Value, extra: Value) -> Relay {
    Relay::start(&cache_config(up, dir, cache, extra))
}

fn chat(relay: &Relay, content: &str, headers: &[(&str, &str)]) -> Resp {
    post_json_with(&relay.url(CHAT), &ask(content), headers)
}

fn content(r: &Resp) -> String {
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {} {}", r.status, r.body))
        .to_string()
}

fn cli(args: &[&str]) -> RunOutput {
    let out = run_relay(args, &[]);
    assert_eq!(out.code, Some(0), "{args:?}: {}{}", out.stdout, out.stderr);
    out
}

/// `llm-relay cache export --out OUT FLAGS... --config CFG`, which must succeed.
fn export(cfg: &str, out: &Path, flags: &[&str]) -> RunOutput {
    let mut args = vec!["cache", "export", "--out", out.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--config", cfg]);
    cli(&args)
}

/// Writes a config for a cache in `cache_dir` into `work` and returns its path.
fn config_file(work: &TempDir, cache_dir: &Path, cache: Value) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = work.write(
        &format!("e{}.jsonc", N.fetch_add(1, Ordering::SeqCst)),
        &cache_config("http://127.0.0.1:9/v1", cache_dir, cache, json!({})),
    );
    path.to_str().unwrap().to_string()
}

/// The metadata lines of every `.request` under `dir`.
fn metas(dir: &Path) -> Vec<Value> {
    files_ending(dir, ".request")
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("quarantine"))
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(text.lines().next().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn cache_client_controls_are_refused_unless_listed() {
    let (up, _) = counting_upstream();
    let dir = TempDir::new();
    let relay = relay_in(&up.base_url(), dir.path(), json!({}), json!({}));
    for (header, value) in [
        ("X-Relay-Cache-Sample", "2"),
        ("X-Relay-Cache-Namespace", "suite"),
        ("X-Relay-Cache-Timing", "recorded"),
    ] {
        let r = chat(&relay, "q", &[(header, value)]);
        let msg = r.assert_error(400, "cache_control_not_allowed");
        assert!(
            msg.contains(header) && msg.contains("`cache.client_controls`"),
            "{msg}"
        );
    }
    assert!(up.requests().is_empty());
    drop(relay);
    let only = relay_in(
        &up.base_url(),
        dir.path(),
        json!({"client_controls": ["namespace"]}),
        json!({}),
    );
    assert_eq!(
        chat(&only, "q", &[("X-Relay-Cache-Namespace", "suite")]).status,
        200
    );
    chat(&only, "q", &[("X-Relay-Cache-Sample", "2")])
        .assert_error(400, "cache_control_not_allowed");
    let bad = chat(&only, "q", &[("X-Relay-Cache-Namespace", "../../etc")]);
    bad.assert_error(400, "invalid_cache_control");
    drop(only);
    let all = relay_in(
        &up.base_url(),
        dir.path(),
        json!({"client_controls": controls()}),
        json!({}),
    );
    for (header, value) in [
        ("X-Relay-Cache-Sample", "0"),
        ("X-Relay-Cache-Timing", "slow"),
    ] {
        let msg = chat(&all, "q", &[(header, value)]).assert_error(400, "invalid_cache_control");
        assert!(msg.contains(header), "{msg}");
    }
    let only = all;
    // the mode header stays under `cache.mode_header`
    chat(&only, "q", &[("X-Relay-Cache-Mode", "replay")])
        .assert_error(400, "cache_mode_not_allowed");
    // a bad setting names itself
    let work = TempDir::new();
    let cfg = config_file(&work, dir.path(), json!({"client_controls": ["epochs"]}));
    let out = run_relay(&["--check", "--config", &cfg], &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("cache.client_controls"),
        "{}",
        out.stderr
    );
}

#[test]
fn cache_samples_keep_k_answers_and_replay_names_a_missing_sample() {
    let (up, calls) = counting_upstream();
    let dir = TempDir::new();
    let cache = json!({"client_controls": controls()});
    let relay = relay_in(&up.base_url(), dir.path(), cache.clone(), json!({}));
    let plain = content(&chat(&relay, "pass@k", &[]));
    let mut answers = vec![plain.clone()];
    for k in ["2", "3"] {
        let r = chat(&relay, "pass@k", &[("X-Relay-Cache-Sample", k)]);
        assert_eq!(r.header("x-cache"), Some("MISS"), "sample {k}");
        answers.push(content(&r));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let distinct: std::collections::HashSet<_> = answers.iter().collect();
    assert_eq!(distinct.len(), 3, "{answers:?}");
    // each sample is its own entry; sample 1 is the entry without the header
    for (i, k) in ["1", "2", "3"].into_iter().enumerate() {
        let r = chat(&relay, "pass@k", &[("X-Relay-Cache-Sample", k)]);
        assert_eq!(r.header("x-cache"), Some("HIT"), "sample {k}");
        assert_eq!(content(&r), answers[i]);
    }
    assert_eq!(content(&chat(&relay, "pass@k", &[])), plain);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let mut samples: Vec<u64> = metas(dir.path())
        .iter()
        .map(|m| m.get("sample").and_then(Value::as_u64).unwrap_or(1))
        .collect();
    samples.sort();
    assert_eq!(samples, [1, 2, 3]);
    drop(relay);
    // `cache why` keys a sample as the relay does
    let work = TempDir::new();
    let cfg = config_file(&work, dir.path(), cache.clone());
    let req = work.write("q.json", &ask("pass@k").to_string());
    let mut last = String::new();
    for (k, recorded) in [("3", true), ("4", false)] {
        let out = cli(&[
            "cache",
            "why",
            req.to_str().unwrap(),
            "-H",
            &format!("X-Relay-Cache-Sample: {k}"),
            "--config",
            &cfg,
        ]);
        assert_eq!(
            out.stdout.contains("not recorded"),
            !recorded,
            "sample {k}: {}",
            out.stdout
        );
        last = out.stdout;
    }
    // the closest entries name their samples: 3 first, then 2
    let near = last.find("shared sample 3): 0 fields differ");
    assert!(near.is_some(), "{last}");
    assert!(near < last.find("shared sample 2)"), "{last}");
    // offline: an unrecorded sample is a cache_miss naming it
    let mut replay_cache = cache.clone();
    replay_cache["mode"] = json!("replay");
    let replay = relay_in(&closed_port_url(), dir.path(), replay_cache, json!({}));
    let r = chat(&replay, "pass@k", &[("X-Relay-Cache-Sample", "3")]);
    assert_eq!(content(&r), answers[2]);
    let r = chat(&replay, "pass@k", &[("X-Relay-Cache-Sample", "4")]);
    let msg = r.assert_error(404, "cache_miss");
    assert!(msg.contains("sample 4"), "{msg}");
    assert!(msg.contains("This request was recorded"), "{msg}");
    assert_eq!(r.json()["error"]["sample"], 4, "{}", r.body);
}

#[test]
fn cache_repeat_sequence_gives_the_ith_identical_request_the_ith_sample() {
    // per process
    let (up, calls) = counting_upstream();
    let dir = TempDir::new();
    let relay = relay_in(
        &up.base_url(),
        dir.path(),
        json!({"repeat": "sequence", "mode": "record"}),
        json!({}),
    );
    let recorded: Vec<String> = (0..3)
        .map(|_| content(&chat(&relay, "poll", &[])))
        .collect();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    drop(relay);
    let replay = relay_in(
        &closed_port_url(),
        dir.path(),
        json!({"repeat": "sequence", "mode": "replay"}),
        json!({}),
    );
    let replayed: Vec<String> = (0..3)
        .map(|_| content(&chat(&replay, "poll", &[])))
        .collect();
    assert_eq!(replayed, recorded);
    let msg = chat(&replay, "poll", &[]).assert_error(404, "cache_miss");
    assert!(msg.contains("sample 4"), "{msg}");

    // counted in Redis: two replicas share one sequence
    let redis = RedisServer::start();
    let (up, calls) = counting_upstream();
    let dir = TempDir::new();
    let state = json!({"state": {"redis": redis.url()}});
    let cache = json!({"repeat": "sequence", "mode": "record"});
    let a = relay_in(&up.base_url(), dir.path(), cache.clone(), state.clone());
    let b = relay_in(&up.base_url(), dir.path(), cache, state.clone());
    let recorded: Vec<String> = (0..4)
        .map(|i| content(&chat(if i % 2 == 0 { &a } else { &b }, "agent loop", &[])))
        .collect();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(metas(dir.path()).len(), 4, "four samples on disk");
    let replay_cache = json!({"repeat": "sequence", "mode": "replay"});
    let c = relay_in(
        &closed_port_url(),
        dir.path(),
        replay_cache.clone(),
        state.clone(),
    );
    let d = relay_in(&closed_port_url(), dir.path(), replay_cache, state);
    let replayed: Vec<String> = (0..4)
        .map(|i| content(&chat(if i % 2 == 0 { &d } else { &c }, "agent loop", &[])))
        .collect();
    assert_eq!(replayed, recorded);
}

#[test]
fn cache_namespaces_record_apart_fall_back_to_shared_and_select_in_the_cli() {
    let (up, calls) = counting_upstream();
    let dir = TempDir::new();
    let cache = json!({"client_controls": controls(), "mode_header": ["record", "replay"]});
    let relay = relay_in(&up.base_url(), dir.path(), cache.clone(), json!({}));
    let shared = content(&chat(&relay, "q", &[]));
    let ns = |name: &'static str| ("X-Relay-Cache-Namespace", name);
    // a namespace without its own entry reads the shared one
    let r = chat(&relay, "q", &[ns("test_a")]);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(content(&r), shared);
    // recorded into the namespace, it answers there and only there
    let own = content(&chat(
        &relay,
        "q",
        &[ns("test_a"), ("X-Relay-Cache-Mode", "record")],
    ));
    assert_ne!(own, shared);
    assert_eq!(content(&chat(&relay, "q", &[ns("test_a")])), own);
    assert_eq!(content(&chat(&relay, "q", &[ns("test_b")])), shared);
    assert_eq!(content(&chat(&relay, "q", &[])), shared);
    content(&chat(&relay, "only in b", &[ns("test_b")]));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // the relay's own controls never reach the provider
    for r in up.requests() {
        for h in ["x-relay-cache-namespace", "x-relay-cache-mode"] {
            assert_eq!(r.header(h), None, "{h} forwarded");
        }
    }
    drop(relay);
    // without the fallback a namespace sees only its own entries
    let mut strict = cache.clone();
    strict["namespace_fallback"] = json!(false);
    strict["mode"] = json!("replay");
    let work = TempDir::new();
    let log = work.path().join("misses.jsonl");
    strict["miss_log"] = json!(log.to_str().unwrap());
    let replay = relay_in(&closed_port_url(), dir.path(), strict, json!({}));
    assert_eq!(content(&chat(&replay, "q", &[ns("test_a")])), own);
    let msg = chat(&replay, "q", &[ns("test_c")]).assert_error(404, "cache_miss");
    assert!(msg.contains("namespace \"test_c\""), "{msg}");
    drop(replay);
    // the miss report names the namespace (the test) that missed
    let out = cli(&["cache", "misses", log.to_str().unwrap()]);
    assert!(
        out.stdout.contains("by namespace:\n       1  test_c\n"),
        "{}",
        out.stdout
    );

    // stats, export, import, prune by namespace
    let cfg = config_file(&work, dir.path(), json!({}));
    let out = cli(&["cache", "stats", "--namespace", "test_b", "--config", &cfg]);
    assert!(out.stdout.contains("entries 1 "), "{}", out.stdout);
    let tape = work.path().join("a.jsonl");
    let out = export(&cfg, &tape, &["--namespace", "test_a"]);
    assert!(out.stdout.contains("exported 1 entries"), "{}", out.stdout);
    let all = work.path().join("all.jsonl");
    export(&cfg, &all, &[]);
    let other = TempDir::new();
    let cfg_o = config_file(&work, other.path(), json!({}));
    let out = cli(&[
        "cache",
        "import",
        all.to_str().unwrap(),
        "--namespace",
        "test_b",
        "--config",
        &cfg_o,
    ]);
    assert!(out.stdout.contains("imported 1 entries"), "{}", out.stdout);
    let out = cli(&["cache", "prune", "--namespace", "test_a", "--config", &cfg]);
    assert!(out.stdout.contains("pruned 1 entries"), "{}", out.stdout);
    assert_eq!(metas(dir.path()).len(), 2);
    let out = run_relay(
        &["cache", "stats", "--namespace", "a/../b", "--config", &cfg],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

#[test]
fn cache_miss_log_lists_every_replay_miss_and_cache_misses_summarises_it() {
    let (up, _) = counting_upstream();
    let dir = TempDir::new();
    let work = TempDir::new();
    let log = work.path().join("misses.jsonl");
    let recorded = |user: &str, t: f64| {
        json!({"model": "m", "user": user, "temperature": t,
               "messages": [{"role": "user", "content": "graded"}]})
    };
    {
        let relay = relay_in(&up.base_url(), dir.path(), json!({}), json!({}));
        post_json(&relay.url(CHAT), &recorded("run-1", 0.0));
    }
    let replay = relay_in(
        &closed_port_url(),
        dir.path(),
        json!({"mode": "replay", "miss_log": log.to_str().unwrap()}),
        json!({}),
    );
    assert_eq!(
        post_json(&replay.url(CHAT), &recorded("run-1", 0.0)).status,
        200
    );
    for (user, t) in [
        ("run-2", 0.0),
        ("run-2", 0.5),
        ("sk-live-0123456789abcdefghij", 0.0),
    ] {
        post_json(&replay.url(CHAT), &recorded(user, t)).assert_error(404, "cache_miss");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines {
        assert_eq!(l["route"], "/chat/completions");
        assert_eq!(l["model"], "m");
        assert!(l["key"].as_str().unwrap().len() == 64, "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert_eq!(l["sample"], 1);
        assert_eq!(l["namespace"], "");
        assert_eq!(l["client"], Value::Null, "no auth: no key id");
        // auth off: no tenants, so the values show (as in the cache_miss error), redacted
        assert!(l["closest"]["values"].is_array(), "{l}");
    }
    assert_eq!(
        lines[1]["closest"]["differs"],
        json!(["temperature", "user"])
    );
    assert!(!text.contains("sk-live"), "{text}");
    let out = cli(&["cache", "misses", log.to_str().unwrap()]);
    assert!(out.stdout.contains(": 3 cache misses"), "{}", out.stdout);
    assert!(
        out.stdout.contains("     3  /chat/completions  m"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("     3  user"), "{}", out.stdout);
    assert!(out.stdout.contains("     1  temperature"), "{}", out.stdout);
    assert!(
        out.stdout.contains(r#""ignore_fields": ["user"]"#),
        "{}",
        out.stdout
    );
    drop(replay);

    // with keys: the values of an entry show only to the key that recorded it, redacted
    let dir = TempDir::new();
    let log = work.path().join("own.jsonl");
    let (up, _) = counting_upstream();
    let auth = [("Authorization", "Bearer client-one-secret")];
    let other = [("Authorization", "Bearer client-two-secret")];
    let keys = json!({"auth": {"keys": [{"key": "client-one-secret", "name": "ci"},
                                        {"key": "client-two-secret", "name": "other"}]}});
    {
        let relay = relay_in(&up.base_url(), dir.path(), json!({}), keys.clone());
        post_json_with(
            &relay.url(CHAT),
            &recorded("sk-live-0123456789abcdefghij", 0.0),
            &auth,
        );
    }
    let replay = relay_in(
        &closed_port_url(),
        dir.path(),
        json!({"mode": "replay", "miss_log": log.to_str().unwrap()}),
        keys,
    );
    post_json_with(&replay.url(CHAT), &recorded("u", 0.0), &auth).assert_error(404, "cache_miss");
    post_json_with(&replay.url(CHAT), &recorded("u", 0.0), &other).assert_error(404, "cache_miss");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let line = &lines[0];
    assert_eq!(
        line["closest"]["values"],
        json!([{"path": "user", "recorded": "[redacted]", "asked": "u"}]),
        "{line}"
    );
    // the caller's key id, never the key
    let client = line["client"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(!client.is_empty() && !client.contains("secret"), "{line}");
    // another key: the paths that differ, never the values
    assert_eq!(lines[1]["closest"]["differs"], json!(["user"]), "{text}");
    assert!(lines[1]["closest"].get("values").is_none(), "{text}");
    assert_ne!(lines[1]["client"], line["client"]);
}

#[test]
fn cache_export_refuses_credential_shaped_strings_and_is_reviewable() {
    let (up, _) = counting_upstream();
    let dir = TempDir::new();
    {
        let relay = relay_in(&up.base_url(), dir.path(), json!({}), json!({}));
        for q in ["clean one", "clean two"] {
            chat(&relay, q, &[]);
        }
        chat(
            &relay,
            "please debug: client = OpenAI(api_key=\"sk-proj-4f9aXb2c8d7e6f5a4b3c2d1e\")",
            &[],
        );
        chat(&relay, "my AWS id is AKIAIOSFODNN7EXAMPLE", &[]);
    }
    let work = TempDir::new();
    let cfg = config_file(&work, dir.path(), json!({}));
    let tape = work.path().join("tape.jsonl");
    let out = run_relay(
        &[
            "cache",
            "export",
            "--out",
            tape.to_str().unwrap(),
            "--config",
            &cfg,
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(!tape.exists(), "nothing written");
    assert!(out.stderr.contains("2 entries hold"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("request messages[0].content holds OpenAI-style API key"),
        "{}",
        out.stderr
    );
    // the answer echoes the prompt: named too
    assert!(
        out.stderr
            .contains("answer choices[0].message.content holds AWS access key id"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("4f9aXb2c"),
        "the secret is never printed"
    );
    let out = export(&cfg, &tape, &["--skip-secrets"]);
    assert!(out.stdout.contains("exported 2 entries"), "{}", out.stdout);
    let text = std::fs::read_to_string(&tape).unwrap();
    assert!(
        !text.contains("AKIA") && !text.contains("sk-proj"),
        "{text}"
    );
    // reviewable: a header, then one line per entry sorted by key, the request as JSON and
    // the answer as its exact text
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"llm_relay_cassette": 2, "entries": 2}));
    let keys: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let answers: Vec<String> = files_ending(dir.path(), ".txt")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for l in &lines[1..] {
        assert_eq!(l["request"]["messages"][0]["role"], "user", "{l}");
        let response = l["response"].as_str().unwrap();
        assert!(answers.iter().any(|a| a == response), "{l}");
    }
    let out = export(&cfg, &tape, &["--allow-secrets"]);
    assert!(out.stdout.contains("exported 4 entries"), "{}", out.stdout);
    // deterministic, and byte-exact through an import
    let again = work.path().join("again.jsonl");
    let copy = TempDir::new();
    let cfg_c = config_file(&work, copy.path(), json!({}));
    cli(&[
        "cache",
        "import",
        tape.to_str().unwrap(),
        "--config",
        &cfg_c,
    ]);
    export(&cfg_c, &again, &["--allow-secrets"]);
    assert_eq!(
        std::fs::read(&tape).unwrap(),
        std::fs::read(&again).unwrap()
    );
    for suffix in [".request", ".txt"] {
        let mut a: Vec<Vec<u8>> = files_ending(dir.path(), suffix)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let mut b: Vec<Vec<u8>> = files_ending(copy.path(), suffix)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{suffix}");
    }
    // a format 1 cassette (the `.request` file as text) still imports
    let req = &files_ending(copy.path(), ".request")[0];
    let request = std::fs::read_to_string(req).unwrap();
    let meta: Value = serde_json::from_str(request.lines().next().unwrap()).unwrap();
    let response = files_ending(copy.path(), ".txt")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| sha256_hex(t) == meta["sha256"].as_str().unwrap())
        .unwrap();
    let key = req.file_stem().unwrap().to_str().unwrap();
    let v1 = format!(
        "{}\n{}\n",
        json!({"llm_relay_cassette": 1, "entries": 1}),
        json!({"key": key, "request": request, "response": response})
    );
    let v1 = work.write("v1.jsonl", &v1);
    let fresh = TempDir::new();
    let cfg_f = config_file(&work, fresh.path(), json!({}));
    let out = cli(&["cache", "import", v1.to_str().unwrap(), "--config", &cfg_f]);
    assert!(out.stdout.contains("1 added"), "{}", out.stdout);
}

#[test]
fn cache_prune_unused_since_drops_entries_neither_created_nor_hit_since() {
    let (up, _) = counting_upstream();
    let dir = TempDir::new();
    let relay = relay_in(&up.base_url(), dir.path(), json!({}), json!({}));
    for q in ["used", "unused one", "unused two"] {
        chat(&relay, q, &[]);
    }
    // a whole second after every entry was written (hit times are whole seconds)
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let since = now.as_secs() + 1;
    wait_until(Duration::from_secs(5), "the next second", || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            >= since
    });
    let hit = chat(&relay, "used", &[]);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let key = hit.header("x-cache-key").unwrap().to_string();
    let hits_log = dir.path().join("hits.log");
    wait_until(Duration::from_secs(20), "the hit in hits.log", || {
        std::fs::read_to_string(&hits_log).is_ok_and(|t| t.contains(&key))
    });
    drop(relay);
    let work = TempDir::new();
    let cfg = config_file(&work, dir.path(), json!({}));
    let out = cli(&[
        "cache",
        "prune",
        "--unused-since",
        &since.to_string(),
        "--config",
        &cfg,
    ]);
    assert!(out.stdout.contains("pruned 2 entries"), "{}", out.stdout);
    assert!(
        out.stdout.contains("1 used since then kept"),
        "{}",
        out.stdout
    );
    let left = files_ending(dir.path(), ".request");
    assert_eq!(left.len(), 1);
    assert!(left[0].to_string_lossy().contains(&key));
    let out = run_relay(
        &[
            "cache",
            "prune",
            "--unused-since",
            "2999-01-01",
            "--config",
            &cfg,
        ],
        &[],
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("in the future"), "{}", out.stderr);
    assert_eq!(files_ending(dir.path(), ".request").len(), 1);
    let out = run_relay(&["cache", "prune", "--config", &cfg], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("--unused-since"), "{}", out.stderr);
}

#[test]
fn cache_timing_recorded_replays_a_stream_with_its_gaps() {
    const GAP: Duration = Duration::from_millis(1000);
    let up = Upstream::start(|_| {
        let c = |delta: Value, fin: Option<&str>| chat_chunk("m", delta, fin);
        Reply::sse(vec![
            (
                Duration::ZERO,
                c(json!({"role": "assistant", "content": ""}), None),
            ),
            (GAP, c(json!({"content": "slow "}), None)),
            (GAP, c(json!({"content": "words"}), None)),
            (GAP, c(json!({}), Some("stop"))),
            (Duration::ZERO, sse_done()),
        ])
    });
    let dir = TempDir::new();
    let relay = relay_in(
        &up.base_url(),
        dir.path(),
        json!({"client_controls": controls()}),
        json!({}),
    );
    let started = Instant::now();
    let first = stream_events(relay.addr(), CHAT, &ask_stream("typing"));
    let first_took = started.elapsed();
    assert_eq!(answer_text(&first.body), "slow words");
    let meta = &metas(dir.path())[0];
    let gaps: Vec<u64> = meta["gaps_ms"]
        .as_array()
        .unwrap_or_else(|| panic!("no gaps: {meta}"))
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    assert!(gaps.len() >= 4, "{gaps:?}");
    // the upstream waited 3 × GAP between its first and last chunk; the gaps (the first counted
    // from the start of the upstream call) add up to at least that, however late each event
    // was read, and to at most the client's wait
    assert!(
        gaps.iter().sum::<u64>() <= first_took.as_millis() as u64,
        "{gaps:?}"
    );
    let total: u64 = gaps.iter().sum();
    assert!(total >= 3 * GAP.as_millis() as u64, "{gaps:?}");
    let timed = |timing: Option<&str>| {
        let headers: Vec<(&str, &str)> = timing
            .map(|t| ("X-Relay-Cache-Timing", t))
            .into_iter()
            .collect();
        let started = Instant::now();
        let r = post_json_with(&relay.url(CHAT), &ask_stream("typing"), &headers);
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert_eq!(answer_text(&r.body), "slow words");
        started.elapsed()
    };
    // each replayed event waits its recorded gap (times the factor): never less in all
    let recorded = timed(Some("recorded"));
    assert!(
        recorded >= Duration::from_millis(total),
        "{recorded:?} {gaps:?}"
    );
    let half = timed(Some("0.5"));
    assert!(
        half >= Duration::from_millis(total / 2 - 1),
        "{half:?} {gaps:?}"
    );
    // by default, as fast as the client reads: well under the recorded 3 s
    let fast = timed(None);
    assert!(fast < GAP * 3, "{fast:?}");
    assert_eq!(up.requests().len(), 1);
}

/// The issue's eval: 250 prompts × 4 samples recorded through two replicas on one directory
/// (concurrent clients, alternating replicas), then replayed through a third replica in
/// `replay` mode with the upstream gone: every answer a hit, byte for byte.
#[test]
fn cache_eval_of_1000_samples_recorded_on_two_replicas_replays_offline_on_a_third() {
    const PROMPTS: usize = 250;
    const SAMPLES: usize = 4;
    const THREADS: usize = 8;
    let (up, calls) = counting_upstream();
    let dir = TempDir::new();
    let cache = json!({"client_controls": controls(), "mode": "record", "memory_items": 0});
    let a = relay_in(&up.base_url(), dir.path(), cache.clone(), json!({}));
    let b = relay_in(&up.base_url(), dir.path(), cache, json!({}));
    let work: Vec<(usize, usize)> = (0..PROMPTS)
        .flat_map(|p| (1..=SAMPLES).map(move |s| (p, s)))
        .collect();
    let run = |relays: &[&Relay]| -> Vec<((usize, usize), String)> {
        let urls: Vec<String> = relays.iter().map(|r| r.url(CHAT)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (work, urls) = (&work, &urls);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for (i, &(p, k)) in work.iter().enumerate().skip(t).step_by(THREADS) {
                            let url = &urls[i % urls.len()];
                            let sample = k.to_string();
                            let r = post_json_with(
                                url,
                                &ask(&format!("eval item {p}")),
                                &[("X-Relay-Cache-Sample", &sample)],
                            );
                            assert_eq!(r.status, 200, "{p}/{k}: {}", r.body);
                            out.push(((p, k), r.body));
                        }
                        out
                    })
                })
                .collect();
            let mut all: Vec<_> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort();
            all
        })
    };
    let recorded = run(&[&a, &b]);
    assert_eq!(recorded.len(), PROMPTS * SAMPLES);
    assert_eq!(calls.load(Ordering::SeqCst), PROMPTS * SAMPLES);
    drop((a, b));
    drop(up);
    let replay = relay_in(
        &closed_port_url(),
        dir.path(),
        json!({"client_controls": controls(), "mode": "replay"}),
        json!({}),
    );
    let replayed = run(&[&replay]);
    assert_eq!(replayed.len(), recorded.len());
    let mut identical = 0;
    for (r, p) in recorded.iter().zip(&replayed) {
        assert_eq!(r.0, p.0);
        assert_eq!(r.1, p.1, "{:?} differs", r.0);
        identical += 1;
    }
    assert_eq!(identical, PROMPTS * SAMPLES);
    let stats: Value = serde_json::from_str(&get(&replay.url("/cache/stats")).body).unwrap();
    assert_eq!(stats["hits"], (PROMPTS * SAMPLES) as u64, "{stats}");
    assert_eq!(stats["misses"], 0, "{stats}");
}
