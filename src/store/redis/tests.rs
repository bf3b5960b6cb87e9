//! The Redis backend against a real `redis-server`: what only Redis can show (a batch's claim,
//! a reply lost after Redis applied the call, a cluster node refused), and the breaker.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::super::pending::{Batch, Pending};
use super::*;
use crate::usage::KeyUsage;

/// A real `redis-server` (Debian package `redis-server`) on a free loopback port, killed
/// on drop.
struct Server(std::process::Child, u16);

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// With extra `redis-server` arguments; waits until it answers PING.
    fn start_with(args: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-deps.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pings(port) {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server answers PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child, port)
    }
}

/// True if a server on `port` answers `PING` with `+PONG`.
fn pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A fresh `redis-server` and a `Redis` on it that has answered a PING.
fn connected() -> (Server, Redis) {
    let server = Server::start();
    let redis = Redis::open(&format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.ping().is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server answers");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, redis)
}

/// A TCP proxy in front of a Redis server that, while `lose` is set, reads Redis's reply to a
/// call and drops it, closing the client's connection: a reply lost after Redis applied it.
struct LossyProxy {
    port: u16,
    lose: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl LossyProxy {
    fn start(redis_port: u16) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lose = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicUsize::new(0));
        let (l, n) = (Arc::clone(&lose), Arc::clone(&lost));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", redis_port)).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (l, n) = (Arc::clone(&l), Arc::clone(&n));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let Ok(len) = s_in.read(&mut buf) else { return };
                        if len == 0 {
                            return;
                        }
                        if l.load(Ordering::SeqCst) {
                            n.fetch_add(1, Ordering::SeqCst);
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                        if c_out.write_all(&buf[..len]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LossyProxy { port, lose, lost }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_batch_sent_again_is_added_once() {
    let (_server, redis) = connected();
    let now = 20_000 * 86_400 + 100;
    let figures = KeyUsage {
        requests: 3,
        prompt_tokens: 15,
        last_used_at: Some(now - 50),
        ..KeyUsage::default()
    };
    let batch = Batch {
        id: "test-1".to_string(),
        entries: vec![("k".to_string(), now / 86_400, figures.clone())],
    };
    // the answer to the first was lost, say: the retry carries the same id
    redis.add_pending(&batch, now).unwrap();
    redis.add_pending(&batch, now).unwrap();
    let once = redis.totals("k", None, now).unwrap();
    assert_eq!((once.requests, once.prompt_tokens), (3, 15));
    assert_eq!(once.last_used_at, Some(now - 50));
    let (day, month) = redis.period("k", now).unwrap();
    assert_eq!((day.requests, month.requests), (3, 3));
    // a later batch adds on top, and a later record keeps the latest last use
    let next = Batch {
        id: "test-2".to_string(),
        ..batch
    };
    redis.record("k", &figures, now).unwrap();
    redis.add_pending(&next, now).unwrap();
    let total = redis.totals("k", None, now).unwrap();
    assert_eq!((total.requests, total.last_used_at), (9, Some(now)));
}

#[test]
fn the_breaker_fails_fast_then_lets_one_probe_through() {
    let mut b = Breaker::default();
    let t = Instant::now();
    assert_eq!(b.pass(t), Pass::Go);
    b.failed(t);
    assert_eq!(b.pass(t + Duration::from_millis(999)), Pass::FailFast);
    let after = t + BACKOFF_FIRST;
    assert_eq!(b.pass(after), Pass::Probe);
    assert_eq!(b.pass(after), Pass::FailFast, "one probe at a time");
    b.failed(after);
    // the back-off doubles
    assert_eq!(b.pass(after + BACKOFF_FIRST), Pass::FailFast);
    assert_eq!(b.pass(after + BACKOFF_FIRST * 2), Pass::Probe);
    for _ in 0..10 {
        b.failed(after);
    }
    assert_eq!(b.pass(after + BACKOFF_MAX), Pass::Probe, "capped");
    b.succeeded();
    assert_eq!(b.pass(after), Pass::Go);
}

#[test]
fn a_usage_call_whose_reply_is_lost_after_redis_applied_it_counts_once() {
    let server = Server::start();
    let proxy = LossyProxy::start(server.1);
    let redis = Redis::open(&format!("redis://127.0.0.1:{}/0", proxy.port)).unwrap();
    let pending = Pending::default();
    let now = crate::util::now_secs();
    let figures = KeyUsage {
        requests: 1,
        prompt_tokens: 51_003,
        cache_read_tokens: 50_000,
        ..KeyUsage::default()
    };
    // the first call loads the script; the second is applied and its reply lost
    redis.record("k", &figures, now).unwrap();
    proxy.lose.store(true, Ordering::SeqCst);
    match redis.record("k", &figures, now) {
        Err(Unrecorded::InDoubt(batch)) => pending.add_sent(batch),
        other => panic!("a lost reply is in doubt: {other:?}"),
    }
    assert_eq!(proxy.lost.load(Ordering::SeqCst), 1);
    proxy.lose.store(false, Ordering::SeqCst);
    // sent again once the breaker lets a probe through
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending.flush(|b| redis.add_pending(b, now)).is_err() {
        assert!(Instant::now() < deadline, "Redis answers again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = redis.totals("k", None, now).unwrap();
    assert_eq!(
        (total.requests, total.prompt_tokens, total.cache_read_tokens),
        (2, 2 * 51_003, 2 * 50_000),
        "applied once, though sent twice"
    );
    // confirmed claims are deleted by later calls: none is left behind
    redis.record("k", &figures, now).unwrap();
    redis.record("k", &figures, now).unwrap();
    let claims: Vec<String> = redis
        .run(|c| {
            redis::cmd("KEYS")
                .arg(format!("{PREFIX}usage-batch:*"))
                .query(c)
        })
        .unwrap();
    assert_eq!(claims.len(), 1, "only the last call's claim: {claims:?}");
}

#[test]
fn a_redis_cluster_node_is_refused_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("llm-relay-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nodes.conf");
    let server = Server::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        conf.to_str().unwrap(),
    ]);
    let redis = Redis::open(&format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
    let err = redis.refuse_cluster().unwrap_err();
    assert!(
        err.contains("Redis Cluster") && err.contains("standalone"),
        "{err}"
    );
    assert!(redis.ping().is_err(), "and no call goes through");
    let _ = std::fs::remove_dir_all(&dir);
    // a standalone server passes
    let plain = Server::start();
    let redis = Redis::open(&format!("redis://127.0.0.1:{}/0", plain.1)).unwrap();
    redis.refuse_cluster().unwrap();
    redis.ping().unwrap();
}

#[test]
fn a_lease_is_held_by_one_owner_renewed_and_released_only_by_it_and_expires() {
    let (_server, redis) = connected();
    let long = Duration::from_secs(30);
    assert_eq!(redis.lease("k", "a", long), Ok(true));
    assert_eq!(
        redis.lease("k", "b", long),
        Ok(false),
        "one owner at a time"
    );
    assert_eq!(redis.renew_lease("k", "b", long), Ok(false));
    redis.release_lease("k", "b").unwrap();
    assert_eq!(redis.leased("k"), Ok(true), "only the owner releases it");
    assert_eq!(redis.renew_lease("k", "a", long), Ok(true));
    redis.release_lease("k", "a").unwrap();
    assert_eq!(redis.leased("k"), Ok(false));
    // an owner that stops renewing (a crashed leader) loses it when it expires
    let short = Duration::from_millis(300);
    assert_eq!(redis.lease("k", "a", short), Ok(true));
    let taken = std::time::Instant::now();
    while redis.leased("k") == Ok(true) {
        assert!(
            taken.elapsed() < Duration::from_secs(10),
            "the lease expires"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(taken.elapsed() >= short);
    assert_eq!(redis.lease("k", "b", long), Ok(true));
    assert_eq!(
        redis.renew_lease("k", "a", long),
        Ok(false),
        "a lost lease stays lost"
    );
}
