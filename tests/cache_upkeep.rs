//! Cache upkeep (issue #3): versioning, TTL, maintenance with hit counts that survive restarts,
//! the start-up scan and `llm-relay cache scan|stats`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::common::*;

fn echo_upstream() -> Upstream {
    Upstream::start(|r| echo_reply(r, Duration::ZERO))
}

fn x_cache(relay: &Relay, q: &str) -> String {
    let r = post_json(&relay.url("/v1/chat/completions"), &ask(q));
    assert_eq!(r.status, 200, "{}", r.body);
    r.header("x-cache").unwrap_or("-").to_string()
}

#[test]
fn cache_version_override_refreshes_old_entries_and_off_keeps_serving() {
    let up = echo_upstream();
    let dir = TempDir::new();
    let cfg = |cache| cache_config(&up.base_url(), dir.path(), cache, json!({}));
    {
        let v1 = Relay::start(&cfg(json!({"version": 1})));
        assert_eq!(x_cache(&v1, "a"), "MISS");
        assert_eq!(x_cache(&v1, "b"), "MISS");
    }
    // version 2 without override: old entries keep serving
    {
        let v2 = Relay::start(&cfg(json!({"version": 2, "override": false})));
        assert_eq!(x_cache(&v2, "a"), "HIT");
    }
    // with override: an older entry is refreshed on its next request, then serves again
    let v2 = Relay::start(&cfg(json!({"version": 2, "override": true})));
    assert_eq!(x_cache(&v2, "a"), "REFRESH");
    assert_eq!(x_cache(&v2, "a"), "HIT");
    assert_eq!(
        x_cache(&v2, "b"),
        "REFRESH",
        "gradual: each entry on its own next request"
    );
    assert_eq!(up.requests().len(), 4);
    let key = post_json(&v2.url("/v1/chat/completions"), &ask("a"))
        .header("x-cache-key")
        .unwrap()
        .to_string();
    let req =
        std::fs::read_to_string(dir.path().join(&key[..2]).join(format!("{key}.request"))).unwrap();
    assert!(
        req.starts_with('{') && req.contains("\"version\":2"),
        "{req}"
    );
}

#[test]
fn cache_ttl_expires_entries() {
    let up = echo_upstream();
    let dir = TempDir::new();
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"ttl_seconds": 3}),
        json!({}),
    ));
    const TTL: Duration = Duration::from_secs(3);
    let now = std::time::Instant::now;
    // An entry's age counts from its request's arrival (at or after `sent`) and it is stored
    // before its answer ends. A hit is owed only if it was answered within the TTL of `sent`:
    // a round that a loaded machine stretched past that proves nothing and runs again.
    let miss_then_hit = |q: &str| -> Option<std::time::Instant> {
        let sent = now();
        assert_eq!(x_cache(&relay, q), "MISS");
        let stored = now();
        let outcome = x_cache(&relay, q);
        (sent.elapsed() < TTL).then(|| {
            assert_eq!(outcome, "HIT");
            stored
        })
    };
    let proven = (0..5).any(|round| {
        let q = format!("t{round}");
        let Some(stored) = miss_then_hit(&q) else {
            return false;
        };
        std::thread::sleep(
            (stored + TTL + Duration::from_millis(100)).saturating_duration_since(now()),
        );
        // expired after ttl_seconds: a miss, which stores the answer again
        miss_then_hit(&q).is_some()
    });
    assert!(proven, "five rounds each took longer than the TTL");
}

fn stats_cli(config: &Path) -> String {
    cache_cli("stats", config)
}

#[test]
fn cache_maintenance_removes_old_unhit_entries_and_hit_counts_survive_restart() {
    let up = echo_upstream();
    let dir = TempDir::new();
    let cfg_dir = TempDir::new();
    let plain = cache_config(&up.base_url(), dir.path(), json!({}), json!({}));
    let config = cfg_dir.write("c.jsonc", &plain);
    {
        let relay = Relay::start(&plain);
        for q in ["kept", "kept", "kept", "dropped"] {
            x_cache(&relay, q);
        }
        // hit counts are written about once a second
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !stats_cli(&config).contains("hits 2") {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                stats_cli(&config)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } // kill -9
    let stats = stats_cli(&config);
    assert!(
        stats.contains("entries 2") && stats.contains("hits 2"),
        "{stats}"
    );

    let maint = cache_config(
        &up.base_url(),
        dir.path(),
        json!({"maintenance": {"retention_days": 0, "min_hit_count": 1, "on_startup": true}}),
        json!({}),
    );
    let relay = Relay::start(&maint);
    let line = relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains("cache maintenance"))
        .expect("maintenance log line");
    assert!(line.contains("removed 1 entries"), "{line}");
    assert_eq!(x_cache(&relay, "kept"), "HIT");
    assert_eq!(x_cache(&relay, "dropped"), "MISS");
    assert_eq!(up.requests().len(), 3);
}

fn set_old(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
}

#[test]
fn cache_scan_quarantines_errors_truncated_orphans_and_temp_files() {
    let up = echo_upstream();
    let dir = TempDir::new();
    let cfg_dir = TempDir::new();
    let cfg = cache_config(&up.base_url(), dir.path(), json!({}), json!({}));
    let config = cfg_dir.write("c.jsonc", &cfg);
    {
        let relay = Relay::start(&cfg);
        x_cache(&relay, "good");
    }
    let d = dir.path();
    let k = |c: char| c.to_string().repeat(64);
    let entry = |n: u32, response: &str| {
        let canonical = format!("{{\"model\":\"m\",\"n\":{n}}}");
        write_entry(d, "/chat/completions", &canonical, response)
    };
    let error = entry(1, r#"{"error":{"message":"rate limited"}}"#);
    entry(
        2,
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
    );
    entry(3, "");
    entry(4, "{\"choices\":[{\"mess");
    let torn = entry(5, r#"{"choices":[{"message":{"content":"x"}}]}"#);
    let torn_request = d.join(&torn[..2]).join(format!("{torn}.request"));
    std::fs::write(
        &torn_request,
        "{\"route\":\"/chat/completions\",\"version\":1,\"created\":1}\n{\"mess",
    )
    .unwrap();
    let orphan = d.join("ee").join(format!("{}.txt", k('e')));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, "{}").unwrap();
    set_old(&orphan);
    let young = d.join("ee").join(format!("{}.txt", "e".repeat(63) + "f"));
    std::fs::write(&young, "{}").unwrap();
    let temp = d.join("ee").join(format!(".{}.txt.1.2.tmp", k('e')));
    std::fs::write(&temp, "half").unwrap();
    set_old(&temp);

    let out = run_relay(
        &["cache", "scan", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.stdout;
    assert!(report.contains("1 entries"), "{report}");
    assert!(report.contains("10 files quarantined"), "{report}");
    assert!(
        report.contains("1 answer files no entry refers to deleted"),
        "an old answer without its request is debris of a crash: collected, {report}"
    );
    assert!(!orphan.exists());
    for reason in [
        "error response: 2",
        "truncated stream: 2",
        "empty response: 2",
        "unparsable JSON: 2",
        "stale temp file: 1",
        "incomplete request file: 1",
    ] {
        assert!(report.contains(reason), "{reason} missing in {report}");
    }
    let quarantined = std::fs::read_dir(d.join("quarantine")).unwrap().count();
    assert_eq!(quarantined, 10);
    assert!(
        young.exists(),
        "a young orphan may be another relay mid-write: left alone"
    );
    assert!(files_ending(&d.join(&error[..2]), &error).is_empty());

    // the relay runs the same scan in the background at start-up and answers at once
    let relay = Relay::start(&cfg);
    assert_eq!(x_cache(&relay, "good"), "HIT");
    let line = relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains("cache scan of"))
        .expect("scan summary in the log");
    assert!(
        line.contains("1 entries") && line.contains("0 files quarantined"),
        "{line}"
    );
    let stats = stats_cli(&config);
    assert!(stats.contains("entries 1,"), "{stats}");
}

#[test]
fn cache_config_errors_name_the_problem() {
    let dir = TempDir::new();
    let cases = [
        (
            "{\n  \"cache\": {\n    \"enabled\": true,\n    \"ttl_secs\": 5\n  }\n}\n",
            &["line 4", "ttl_secs"][..],
        ),
        (
            "{\"cache\": {\"scope\": \"user\"}}",
            &["cache.scope", "\"key\""][..],
        ),
        (
            "{\"cache\": {\"maintenance\": {\"interval_hours\": 0}}}",
            &["interval_hours", "positive"][..],
        ),
    ];
    for (text, needles) in cases {
        let path = dir.write("bad.jsonc", text);
        let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.code, Some(1), "{text}: {}", out.stdout);
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{text}: {n:?} missing in {}",
                out.stderr
            );
        }
    }
    // a cache dir that cannot be created stops the relay at start, naming it
    let file = dir.write("not-a-dir", "x");
    let cfg = cache_config(
        "http://127.0.0.1:9/v1",
        &file.join("sub"),
        json!({}),
        json!({}),
    );
    let path = dir.write("c.jsonc", &cfg);
    let out = run_relay(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot create cache directory"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cache.dir"), "{}", out.stderr);
}

#[test]
fn cache_maintenance_runs_every_interval_hours_not_only_at_start() {
    let up = echo_upstream();
    let dir = TempDir::new();
    // 0.0005 h = 1.8 s
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"memory_items": 0, "maintenance": {"interval_hours": 0.0005, "retention_days": 0,
                                                  "min_hit_count": 1, "on_startup": false}}),
        json!({}),
    ));
    assert_eq!(x_cache(&relay, "old"), "MISS");
    assert_eq!(x_cache(&relay, "old"), "HIT", "not removed at start-up");
    assert_eq!(x_cache(&relay, "unhit"), "MISS");
    let line = relay
        .wait_for_log_line(Duration::from_secs(6), |l| l.contains("cache maintenance"))
        .expect("a maintenance run after interval_hours");
    assert!(line.contains("removed 1 entries"), "{line}");
    assert_eq!(x_cache(&relay, "old"), "HIT", "an entry with a hit stays");
    assert_eq!(
        x_cache(&relay, "unhit"),
        "MISS",
        "removed: fewer than min_hit_count hits"
    );
}

/// `llm_relay_cache_entries` (and `/cache/stats`) count entries stored while the start-up scan
/// runs: the scan's count used to overwrite them. The scan is held still by a named pipe in
/// place of a `.request` (it blocks on reading it), in the last fan-out folder, so every store
/// happens after the scan has passed its folder, and the scan ends only when the test feeds
/// the pipe.
#[test]
fn entries_stored_during_the_start_up_scan_are_counted() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000; // Linux

    let up = echo_upstream();
    let dir = TempDir::new();
    let d = dir.path();
    for n in 0..2 {
        let canonical = format!("{{\"model\":\"m\",\"n\":{n}}}");
        write_entry(
            d,
            "/chat/completions",
            &canonical,
            r#"{"choices":[{"message":{"content":"x"}}]}"#,
        );
    }
    std::fs::create_dir_all(d.join("ff")).unwrap();
    let pipe = d.join("ff").join(format!("{}.request", "f".repeat(64)));
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    // a writer can open the pipe without waiting only while a reader has it open
    let open_writer = || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&pipe)
    };

    let relay = Relay::start(&cache_config(&up.base_url(), d, json!({}), json!({})));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut writer = loop {
        match open_writer() {
            Ok(w) => break w,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the scan never reached the pipe: {e}"),
        }
    };
    // the scan waits on the open pipe: these entries land behind it
    let stored = 5;
    for i in 0..stored {
        assert_eq!(
            x_cache(&relay, &format!("stored during the scan {i}")),
            "MISS"
        );
    }
    // feed the pipe (every time the scan opens it again) until the scan ends
    writer.write_all(b"not an entry\n").unwrap();
    drop(writer);
    let line = loop {
        if let Some(line) =
            relay.wait_for_log_line(Duration::from_millis(50), |l| l.contains("cache scan of"))
        {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "the scan never ended");
        if let Ok(mut w) = open_writer() {
            let _ = w.write_all(b"not an entry\n");
        }
    };
    assert!(line.contains("2 entries"), "{line}");
    let metrics = get(&relay.url("/metrics")).body;
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("llm_relay_cache_entries "))
        .unwrap_or_else(|| panic!("no gauge in {metrics}"));
    assert_eq!(gauge, (2 + stored).to_string(), "{metrics}");
    let stats = get(&relay.url("/cache/stats")).json();
    assert_eq!(stats["entries"], 2 + stored, "{stats}");
}
