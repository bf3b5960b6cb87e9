//! The Redis backend against a real `redis-server`: what only Redis can show (a batch's claim).

use super::*;

/// A real `redis-server` (Debian package `redis-server`) on a free loopback port, killed
/// on drop.
struct Server(std::process::Child, u16);

impl Server {
    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-deps.sh installs it)");
        Server(child, port)
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
    let server = Server::start();
    let redis = Redis::open(&format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.ping().is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server answers");
        std::thread::sleep(Duration::from_millis(20));
    }
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
