//! Replicas on one cache directory (issue #22): publication in one atomic step, temp names
//! unique across containers (every replica PID 1), a scan that never takes a write in progress
//! for a corrupt entry, memory tiers that see another replica's refresh, `kill -9` of a replica
//! under load, and single flight across replicas with `state.redis`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::common::*;

const CHAT: &str = "/v1/chat/completions";

/// A chat answer to `req` whose text is [`echo_text`] of its question but whose `id` is the
/// call number `n` (so two upstream calls for one request give different bytes, as a real
/// model's do), padded by `pad` bytes so writing it to disk takes a while. Streams are the
/// deterministic [`echo_reply_padded`].
fn numbered_reply(req: &RecordedRequest, n: usize, pad: usize, delay: Duration) -> Reply {
    let body = req.json();
    if body["stream"] == json!(true) {
        return echo_reply_padded(req, delay, pad);
    }
    let content = body["messages"][0]["content"].as_str().unwrap_or("");
    Reply::delay(
        delay,
        Reply::json(
            200,
            json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion",
                "created": 1_700_000_000, "model": "m", "system_fingerprint": "f".repeat(pad),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": echo_text(content)},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            }),
        ),
    )
}

/// An upstream answering with [`numbered_reply`]; also returns the call counter.
fn numbered_upstream(pad: usize, delay: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let up = Upstream::start(move |r| {
        numbered_reply(r, counter.fetch_add(1, Ordering::SeqCst), pad, delay)
    });
    (up, calls)
}

/// The relay as PID 1 of a PID namespace of its own (`unshare`), as in a container: every
/// replica started this way has the same PID, so temp names must not rest on it.
fn start_as_pid_1(config: &str) -> Relay {
    let dir = TempDir::new();
    let path = dir.write("config.jsonc", config);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-rpf",
        "--kill-child",
        "--mount-proc",
        RELAY_BIN,
        "--config",
    ])
    .arg(&path);
    Relay::start_command(cmd, dir, path)
}

fn try_post(url: &str, body: &Value, refresh: bool) -> Option<(String, String)> {
    try_post_with(url, body, refresh)
}

fn scan(config: &Path) -> String {
    cache_cli("scan", config)
}

/// An upstream of [`numbered_reply`]s and a config with the cache in a fresh directory.
struct Setup {
    up: Upstream,
    calls: Arc<AtomicUsize>,
    dir: TempDir,
    _cfg_dir: TempDir,
    cfg: String,
    /// The config as a file, for the `cache` commands.
    config: PathBuf,
}

fn setup(pad: usize, delay: Duration, cache: Value, extra: Value) -> Setup {
    let (up, calls) = numbered_upstream(pad, delay);
    let dir = TempDir::new();
    let cfg_dir = TempDir::new();
    let cfg = cache_config(&up.base_url(), dir.path(), cache, extra);
    let config = cfg_dir.write("c.jsonc", &cfg);
    Setup {
        up,
        calls,
        dir,
        _cfg_dir: cfg_dir,
        cfg,
        config,
    }
}

fn set_age(p: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut all = files_ending(dir, "");
    all.retain(|p| !p.starts_with(dir.join("quarantine")));
    all
}

#[test]
fn fleet_record_mode_on_three_pid_1_replicas_publishes_every_entry_whole() {
    // 12 clients send the same request in `record` mode to three replicas (each PID 1, as in
    // containers) on one directory, 20 rounds of different requests: every upstream answer
    // differs in its bytes, so a request file beside another writer's answer fails its checksum
    let f = setup(
        64 * 1024,
        Duration::from_millis(5),
        json!({"mode": "record"}),
        json!({"workers": 16}),
    );
    let relays: Vec<Relay> = (0..3).map(|_| start_as_pid_1(&f.cfg)).collect();
    for round in 0..20 {
        let barrier = Arc::new(Barrier::new(12));
        let clients: Vec<_> = (0..12)
            .map(|c| {
                let (barrier, url) = (Arc::clone(&barrier), relays[c % 3].url(CHAT));
                let q = format!("round{round}");
                thread::spawn(move || {
                    barrier.wait();
                    let r = post_json(&url, &ask(&q));
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(answer_text(&r.body), echo_text(&q));
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
    drop(relays);
    let report = scan(&f.config);
    assert!(report.contains(" 20 entries"), "{report}");
    assert!(report.contains(" 0 files quarantined"), "{report}");
    assert!(
        files_ending(f.dir.path(), ".tmp").is_empty(),
        "no temp file may be left by a finished write"
    );
    // every entry is whole: a fresh relay (empty memory tier) serves each from disk
    let reader = Relay::start(&cache_config(
        &f.up.base_url(),
        f.dir.path(),
        json!({}),
        json!({}),
    ));
    let before = f.up.requests().len();
    for round in 0..20 {
        let q = format!("round{round}");
        let r = post_json(&reader.url(CHAT), &ask(&q));
        assert_eq!(r.header("x-cache"), Some("HIT"), "{q}: {}", r.body);
        assert_eq!(answer_text(&r.body), echo_text(&q));
    }
    assert_eq!(f.up.requests().len(), before);
}

#[test]
fn fleet_scan_leaves_a_half_written_entry_alone_within_its_grace_period() {
    let f = setup(0, Duration::ZERO, json!({}), json!({}));
    let key = {
        let relay = Relay::start(&f.cfg);
        let r = post_json(&relay.url(CHAT), &ask("published"));
        assert_eq!(r.header("x-cache"), Some("MISS"));
        r.header("x-cache-key").unwrap().to_string()
    };
    let d = f.dir.path();
    let sub = d.join(&key[..2]);
    // another replica halfway through replacing the entry: its answer is in place, its
    // request file not yet
    let next = sub.join(format!("{key}.{}.txt", sha256_hex("the next answer")));
    std::fs::write(&next, "the next answer").unwrap();
    // an older relay halfway through its two renames: a request file beside another
    // writer's answer
    let canonical = r#"{"messages":[{"content":"mid-write","role":"user"}],"model":"m"}"#;
    let torn = write_old_entry(
        d,
        "/chat/completions",
        canonical,
        r#"{"choices":[{"message":{"content":"first"}}]}"#,
    );
    let torn_txt = d.join(&torn[..2]).join(format!("{torn}.txt"));
    std::fs::write(
        &torn_txt,
        r#"{"choices":[{"message":{"content":"second"}}]}"#,
    )
    .unwrap();
    // and a temp file being written
    let temp = sub.join(format!(".{key}.request.host.1.2.3.tmp"));
    std::fs::write(&temp, "{\"route\":").unwrap();

    let report = scan(&f.config);
    assert!(report.contains(" 0 files quarantined"), "{report}");
    assert!(report.contains(" 1 entries"), "{report}");
    for f in [&next, &torn_txt, &temp] {
        assert!(f.exists(), "{f:?} is a write in progress: left alone");
    }

    // past the grace period nothing is in progress any more: the mismatched pair and the
    // temp file are debris, the unreferenced answer is collected, the entry still serves
    for f in files_under(d) {
        set_age(&f, Duration::from_secs(600));
    }
    let report = scan(&f.config);
    assert!(report.contains(" 3 files quarantined"), "{report}");
    assert!(
        report.contains("response does not match its checksum: 2"),
        "{report}"
    );
    assert!(report.contains("stale temp file: 1"), "{report}");
    assert!(
        !next.exists(),
        "an old answer no request refers to is collected"
    );
    let relay = Relay::start(&f.cfg);
    let r = post_json(&relay.url(CHAT), &ask("published"));
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(answer_text(&r.body), echo_text("published"));
}

#[test]
fn fleet_memory_tier_sees_a_refresh_made_by_another_replica() {
    let f = setup(0, Duration::ZERO, json!({}), json!({}));
    let (a, b) = (Relay::start(&f.cfg), Relay::start(&f.cfg));
    let id = |r: &Resp| r.json()["id"].as_str().unwrap_or("").to_string();
    let first = post_json(&a.url(CHAT), &ask("q"));
    assert_eq!(first.header("x-cache"), Some("MISS"));
    for _ in 0..2 {
        // from disk, then from b's memory tier
        let hit = post_json(&b.url(CHAT), &ask("q"));
        assert_eq!(hit.header("x-cache"), Some("HIT"));
        assert_eq!(id(&hit), id(&first));
    }
    let refreshed = post_json_with(&a.url(CHAT), &ask("q"), &[("Cache-Control", "no-cache")]);
    assert_eq!(refreshed.header("x-cache"), Some("REFRESH"));
    assert_ne!(id(&refreshed), id(&first));
    for relay in [&b, &a] {
        let hit = post_json(&relay.url(CHAT), &ask("q"));
        assert_eq!(hit.header("x-cache"), Some("HIT"));
        assert_eq!(
            id(&hit),
            id(&refreshed),
            "the refreshed answer, on every replica"
        );
    }
    assert_eq!(f.up.requests().len(), 2);
}

#[test]
fn fleet_three_replicas_under_load_refreshes_and_kill_9_serve_only_whole_answers() {
    // 256 KiB answers: writing one takes long enough that kills land inside writes
    let f = setup(
        256 * 1024,
        Duration::from_millis(10),
        json!({}),
        json!({"workers": 8}),
    );
    let mut relays: Vec<Relay> = (0..3).map(|_| start_as_pid_1(&f.cfg)).collect();
    let wrong = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut below = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let urls: Vec<String> = relays.iter().map(|r| r.url(CHAT)).collect();
        let clients: Vec<_> = (0..9)
            .map(|t| {
                let (urls, stop, wrong, answered) = (
                    urls.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&wrong),
                    Arc::clone(&answered),
                );
                let mut n = t as u64 * 7919 + 1;
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        n = n
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let r = n >> 33;
                        // identical requests (a few keys) and different ones, on every replica
                        let q = format!("k{}", r % 24);
                        let body = if r % 5 == 0 { ask_stream(&q) } else { ask(&q) };
                        let refresh = r % 4 == 0;
                        let url = &urls[(r / 7 % 3) as usize];
                        if let Some((x, text)) = try_post(url, &body, refresh) {
                            // a stream cut by the kill is not an answer; a complete one must be right
                            let complete = text.starts_with('{') || text.contains("[DONE]");
                            if complete {
                                answered.fetch_add(1, Ordering::SeqCst);
                                if answer_text(&text) != echo_text(&q) {
                                    eprintln!("wrong {x} answer for {q}: {text:.200}");
                                    wrong.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(200 + below(400)));
        let victim = below(3) as usize;
        relays.remove(victim); // SIGKILL mid-load
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        relays.insert(victim, start_as_pid_1(&f.cfg));
    }
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "answers served during the load"
    );
    assert!(answered.load(Ordering::SeqCst) > 20, "the load ran");
    drop(relays);
    let report = scan(&f.config);
    assert!(report.contains(" 0 files quarantined"), "{report}");

    // every answer the directory holds is whole and right, on any replica
    let relays: Vec<Relay> = (0..3).map(|_| Relay::start(&f.cfg)).collect();
    let mut hits = 0;
    for i in 0..24 {
        let q = format!("k{i}");
        for (j, relay) in relays.iter().enumerate() {
            let body = if j == 1 { ask_stream(&q) } else { ask(&q) };
            let (x, text) = try_post(&relay.url(CHAT), &body, false).expect("an answer");
            assert_eq!(answer_text(&text), echo_text(&q), "{x} answer for {q}");
            hits += usize::from(x == "HIT");
        }
    }
    assert!(
        hits >= 24,
        "stored entries serve on every replica: {hits} hits"
    );
}

#[test]
fn fleet_single_flight_spans_replicas_with_redis() {
    let redis = RedisServer::start();
    let f = setup(
        0,
        Duration::from_millis(800),
        json!({}),
        json!({"state": {"redis": redis.url()}}),
    );
    let relays = [Relay::start(&f.cfg), Relay::start(&f.cfg)];
    let barrier = Arc::new(Barrier::new(8));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (barrier, url) = (Arc::clone(&barrier), relays[i % 2].url(CHAT));
            thread::spawn(move || {
                barrier.wait();
                let r = post_json(&url, &ask("together"));
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(answer_text(&r.body), echo_text("together"));
                r.header("x-cache").unwrap_or("-").to_string()
            })
        })
        .collect();
    let results: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(
        f.calls.load(Ordering::SeqCst),
        1,
        "8 identical misses on 2 replicas, one upstream call: {results:?}"
    );
    assert_eq!(
        results.iter().filter(|x| *x == "MISS").count(),
        1,
        "{results:?}"
    );
}

/// A follower of another replica's lease waits where it was received, not on a worker: the
/// second replica has one worker; while its request for the key the first replica leads waits,
/// another request to it is answered at once, and the follower is the leader's hit once the
/// leader is done.
#[test]
fn fleet_a_follower_of_another_replica_waits_without_holding_a_worker() {
    let redis = RedisServer::start();
    let (up, gate) = upstream_holding_same();
    let dir = TempDir::new();
    let cfg = |workers: u32| {
        cache_config(
            &up.base_url(),
            dir.path(),
            json!({}),
            json!({"state": {"redis": redis.url()}, "workers": workers}),
        )
    };
    let (leading, following) = (Relay::start(&cfg(4)), Relay::start(&cfg(1)));
    check_follower_holds_no_worker(&up, &gate, &leading, &following, 2.0);
}

#[test]
fn fleet_a_crashed_leaders_lease_expires_and_a_follower_goes_upstream() {
    let redis = RedisServer::start();
    let gate = Arc::new(AtomicBool::new(false));
    let held = Arc::clone(&gate);
    let up = Upstream::start(move |r| Reply::hold(&held, echo_reply(r, Duration::ZERO)));
    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"state": {"redis": redis.url()}}),
    );
    let leader = Relay::start(&cfg);
    let follower = Relay::start(&cfg);
    let url = leader.url(CHAT);
    let held_client = thread::spawn(move || try_post(&url, &ask("crash"), false));
    wait_until(
        Duration::from_secs(10),
        "the leader's upstream call",
        || up.requests().len() == 1,
    );
    let started = Instant::now();
    let url = follower.url(CHAT);
    let waiting = thread::spawn(move || post_json(&url, &ask("crash")));
    // the follower waits on the lease (its request never reaches the upstream meanwhile);
    // the leader dies holding it
    thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "the follower waits for the leader");
    assert_eq!(
        up.requests().len(),
        1,
        "the follower must not go upstream yet"
    );
    drop(leader);
    gate.store(true, Ordering::SeqCst);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(answer_text(&r.body), echo_text("crash"));
    assert_eq!(
        r.header("x-cache"),
        Some("MISS"),
        "the follower led the second call"
    );
    assert_eq!(up.requests().len(), 2);
    // the lease (10 s) runs out long before the first-byte timeout (300 s by default)
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded by the lease, not hung: {:?}",
        started.elapsed()
    );
    let _ = held_client.join();
}

#[test]
fn a_relay_killed_during_its_scan_leaves_no_lease_for_its_successor_to_wait_out() {
    let f = setup(0, Duration::ZERO, json!({}), json!({}));
    let first = Relay::start(&f.cfg);
    first
        .wait_for_log_line(Duration::from_secs(10), |l| l.contains("cache scan of"))
        .expect("the first relay's scan");
    // what it leaves when killed while scanning: its lock (its owner tag, as its finished
    // scan recorded it in scan.done: host, nonce, PID), renewed moments ago
    let owner = std::fs::read_to_string(f.dir.path().join("scan.done")).unwrap();
    assert!(owner.ends_with(&format!(" {}", first.pid())), "{owner}");
    first.signal("KILL");
    drop(first);
    std::fs::write(f.dir.path().join("scan.lock"), &owner).unwrap();
    // the next relay on this host sees its holder is gone and scans at once, where it waited
    // out the lease (60 s) before
    let relay = Relay::start(&f.cfg);
    relay
        .wait_for_log_line(Duration::from_secs(10), |l| {
            l.contains("cache scan of") && l.contains("files quarantined")
        })
        .expect("the start-up scan ran at once");
    assert!(
        !relay.stderr_text().contains("left to"),
        "{}",
        relay.stderr_text()
    );
}

#[test]
fn fleet_entries_of_the_old_layout_serve_and_the_scan_renames_them() {
    let f = setup(0, Duration::ZERO, json!({}), json!({}));
    let answer = json!({
        "id": "chatcmpl-old", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": echo_text("old")},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    })
    .to_string();
    let canonical = r#"{"messages":[{"content":"old","role":"user"}],"model":"m"}"#;
    let key = write_old_entry(f.dir.path(), "/chat/completions", canonical, &answer);
    let old = f.dir.path().join(&key[..2]).join(format!("{key}.txt"));
    let hit = |relay: &Relay| {
        let r = post_json(&relay.url(CHAT), &ask("old"));
        assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
        assert_eq!(r.header("x-cache-key"), Some(key.as_str()));
        assert_eq!(r.body, answer);
    };
    // another replica holds the scan lease: this one leaves the start-up scan to it, and reads
    // the old layout as it is
    std::fs::write(
        f.dir.path().join("scan.lock"),
        "other-host.0123456789abcdef 1",
    )
    .unwrap();
    let relay = Relay::start(&f.cfg);
    hit(&relay);
    relay
        .wait_for_log_line(Duration::from_secs(10), |l| {
            l.contains("left to other-host.0123456789abcdef 1")
        })
        .expect("the start-up scan left to the lease holder");
    assert!(old.exists());
    drop(relay);
    let report = scan(&f.config);
    assert!(
        report.contains("1 entries moved to the checksum-named layout"),
        "{report}"
    );
    assert!(report.contains(" 0 files quarantined"), "{report}");
    assert!(!old.exists());
    assert_eq!(
        std::fs::read_to_string(entry_files(f.dir.path(), &key).1).unwrap(),
        answer
    );
    hit(&Relay::start(&f.cfg));
    assert!(f.up.requests().is_empty());
}
