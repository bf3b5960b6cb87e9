//! System calls per request (issue 19), counted by `strace -c` attached to the running relay:
//! a memory hit is one read of its request, one write of its answer (head and body together),
//! the `.request` stat and at most one write of access lines (those of a millisecond share
//! one); a miss stays within its upstream
//! exchange's few (the pooled connection's probe, the upstream's request and answer). Counts,
//! not times: they hold on a loaded machine. What each figure was before the changes that
//! brought it down is in BENCHMARKS.md ("Hand-offs, system calls and stream scans").

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The system calls of every thread of `pid` while `work` runs, by name.
fn syscalls_during(pid: u32, work: impl FnOnce()) -> BTreeMap<String, u64> {
    let dir = TempDir::new();
    let out = dir.path().join("strace.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-c", "-qq", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (scripts/test-deps.sh installs it)");
    // traced once every thread of the relay says so
    wait_until(Duration::from_secs(30), "strace attached", || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.flatten().all(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .is_some_and(|v| v.trim() != "0")
        })
    });
    work();
    let stopped = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    // it detaches, writes its table and ends by the signal it was sent
    strace.wait().unwrap();
    let table = std::fs::read_to_string(&out).unwrap();
    assert!(table.contains("total"), "no strace table: {table}");
    // `% time  seconds  usecs/call  calls  [errors]  syscall` rows between the dashes
    table
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let calls = fields.get(3)?.parse().ok()?;
            let name = fields.last()?;
            (*name != "total").then(|| (name.to_string(), calls))
        })
        .collect()
}

fn per(calls: &BTreeMap<String, u64>, names: &[&str], n: u64) -> f64 {
    let sum: u64 = names.iter().filter_map(|name| calls.get(*name)).sum();
    sum as f64 / n as f64
}

/// Calls the relay's background threads make as long as the run lasts, however many requests
/// it served (timed sleeps and waits: the cache's upkeep, idle workers): not counted.
const BACKGROUND: &[&str] = &["clock_nanosleep", "nanosleep", "restart_syscall", "futex"];

/// All calls but [`BACKGROUND`], per request.
fn total(calls: &BTreeMap<String, u64>, n: u64) -> f64 {
    let own = calls
        .iter()
        .filter(|(name, _)| !BACKGROUND.contains(&name.as_str()));
    own.map(|(_, n)| n).sum::<u64>() as f64 / n as f64
}

const READS: &[&str] = &["read", "recvfrom", "readv", "recvmsg"];
const WRITES: &[&str] = &["write", "sendto", "writev", "sendmsg"];

/// `n` requests, one after the other on one keep-alive connection, each answered 200.
fn requests(relay: &Relay, content: impl Fn(u64) -> String, n: u64) {
    let conn = TcpStream::connect(relay.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    for i in 0..n {
        conn.write_all(&chat_request_bytes(&content(i))).unwrap();
        let (status, body) = read_json_answer(&mut reader);
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn a_memory_hit_reads_once_and_writes_its_answer_in_one_call() {
    // an answer of ~4 KiB: more than the connection's 1 KiB write buffer, so head and body
    // go out in one call only because they are joined
    let up = Upstream::start(|req| echo_reply_padded(req, Duration::ZERO, 4000));
    let cache = TempDir::new();
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"cache": {"dir": cache.path().to_str().unwrap()}}),
    ));
    requests(&relay, |_| "same".to_string(), 20);
    let n = 300;
    let calls = syscalls_during(relay.pid(), || requests(&relay, |_| "same".to_string(), n));
    assert_eq!(
        up.requests().len(),
        1,
        "every request after the first is a hit"
    );
    // A hit runs on its connection's thread, whatever the load: the read of its request, the
    // answer (head and body in one call), the `.request` stat that shows another replica's
    // refresh, and at most one write of access lines (one per millisecond, whatever the rate).
    let (reads, writes, all) = (
        per(&calls, READS, n),
        per(&calls, WRITES, n),
        total(&calls, n),
    );
    eprintln!("per memory hit: {reads:.2} reads, {writes:.2} writes, {all:.2} in all: {calls:?}");
    assert!(reads <= 1.1, "{reads:.2} reads a hit: {calls:?}");
    assert!(writes <= 2.1, "{writes:.2} writes a hit: {calls:?}");
    assert!(all <= 4.5, "{all:.2} system calls a hit: {calls:?}");
}

/// The system calls of `n` misses (cache off) on a kept upstream connection, after 20 to warm
/// it, with the upstream's URL as `url` makes it of the fixture's (`http://127.0.0.1:PORT/v1`).
fn misses(n: u64, url: impl Fn(&str) -> String) -> BTreeMap<String, u64> {
    let (closed, _) = std::sync::mpsc::channel();
    let (fixture, accepted) = raw_upstream(AfterAnswer::Keep, closed);
    let relay = Relay::start(&config_json(
        &url(&fixture),
        json!({"cache": {"enabled": false}}),
    ));
    requests(&relay, |i| format!("warm {i}"), 20);
    let calls = syscalls_during(relay.pid(), || {
        requests(&relay, |i| format!("prompt {i}"), n)
    });
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        connections, 1,
        "one pooled upstream connection served every miss"
    );
    for new in ["socket", "connect"] {
        assert!(!calls.contains_key(new), "{new}: {calls:?}");
    }
    calls
}

#[test]
fn a_miss_on_a_pooled_upstream_connection_costs_a_bounded_few_system_calls() {
    let n = 200;
    let calls = misses(n, str::to_string);
    let (reads, writes, all) = (
        per(&calls, READS, n),
        per(&calls, WRITES, n),
        total(&calls, n),
    );
    eprintln!("per miss (load-dependent): {reads:.2} reads, {writes:.2} writes, {all:.2} in all: {calls:?}");
    // Only what each miss must do is bounded: how often the connection goes back to the pool
    // (a client slower than the kept connection's window: more reads and hand-offs) depends
    // on the machine's load. ~9 in all here (BENCHMARKS.md), 18 before issue 19's changes.
    // The pool's probe of the connection it hands out is one `recvfrom` (`upstream/tcp.rs`);
    // ureq's switched the socket to non-blocking and back around it, two `ioctl`s more.
    let switches = per(&calls, &["ioctl", "fcntl"], n);
    assert!(switches <= 0.1, "{switches:.2} ioctl a miss: {calls:?}");
    // the client's request, the probe, the upstream's answer
    let receives = per(&calls, READS, n);
    assert!(receives <= 3.1, "{receives:.2} reads a miss: {calls:?}");
    // the request upstream (head and body in one call) and the answer to the client
    let sends = per(&calls, &["sendto", "writev", "sendmsg"], n);
    assert!(sends <= 2.1, "{sends:.2} sends a miss: {calls:?}");
    // no read timeout set per miss: ureq's new value each time (the time left until the
    // call's deadline) reaches the socket rounded to whole seconds (`upstream/steady.rs`)
    let timeouts = per(&calls, &["setsockopt"], n);
    assert!(
        timeouts <= 0.1,
        "{timeouts:.2} setsockopt a miss: {calls:?}"
    );
    // the access line
    let lines = per(&calls, &["write"], n);
    assert!(lines <= 1.1, "{lines:.2} writes a miss: {calls:?}");
}

#[test]
fn an_upstream_named_by_host_name_is_looked_up_once_not_per_request() {
    // ureq resolves a request's host before it looks in its pool: without the relay's
    // remembering resolver, every miss read /etc/hosts (and for a provider's name asked DNS)
    let n = 200;
    let calls = misses(n, |url| url.replace("127.0.0.1", "localhost"));
    // a lookup opens and reads /etc/hosts (and more): at most one in this run, if the
    // remembered answer went stale during it (30 s), never one per request
    let opens = calls.get("openat").copied().unwrap_or(0);
    assert!(opens <= 4, "{opens} openat in {n} misses: {calls:?}");
}

#[test]
fn an_idle_relay_wakes_no_thread_on_a_timer() {
    // tiny_http's head deadline once read a clock a thread advanced every 10 ms: 100 wake-ups
    // a second for the life of the process, with nothing to serve. An idle relay (its cache
    // on, so its upkeep thread is there too) now sleeps until a client or a timer of its
    // own minutes comes.
    let up = Upstream::start(|req| echo_reply_padded(req, Duration::ZERO, 10));
    let cache = TempDir::new();
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"cache": {"dir": cache.path().to_str().unwrap()}}),
    ));
    requests(&relay, |_| "wake everything once".to_string(), 2);
    let calls = syscalls_during(relay.pid(), || {
        std::thread::sleep(Duration::from_millis(600));
        // one request at the end, so the trace has a table to read
        requests(&relay, |_| "wake everything once".to_string(), 1);
    });
    // (the request's own hand-offs are `futex` calls: not counted). What may sleep on a
    // timer here, each at most once in the window: the cache's upkeep thread (its one-second
    // round, the sleep it was in when the trace attached showing as a `restart_syscall`, and
    // the next round's if one ends in the window) and the log writer's batching pause after
    // the request's access line. A 10 ms ticker makes ~60.
    let sleeps = per(
        &calls,
        &["clock_nanosleep", "nanosleep", "restart_syscall"],
        1,
    );
    assert!(
        sleeps <= 3.0,
        "{sleeps} timed sleeps in 600 ms of idling: {calls:?}"
    );
}
