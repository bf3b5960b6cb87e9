//! Slow clients (issue 10): clients that trickle their request bodies or heads a byte at a
//! time hold only their own connection. While 200 of each are connected and still sending,
//! `/health`, `/ready`, `/metrics` and other clients' cache hits are answered. The verdict is an
//! ordering — every probe answered while every trickler is still connected — not a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const TRICKLERS: usize = 200;

/// A connection that has sent `start` and then trickles `byte` whenever `tick` is called.
struct Trickler {
    stream: TcpStream,
    byte: &'static [u8],
}

impl Trickler {
    fn open(addr: &str, start: &[u8], byte: &'static [u8]) -> Trickler {
        let mut stream = TcpStream::connect(addr).expect("connect relay");
        stream.set_nodelay(true).unwrap();
        stream.write_all(start).unwrap();
        Trickler { stream, byte }
    }

    fn tick(&mut self) {
        let _ = self.stream.write_all(self.byte);
    }

    /// True while the relay has neither answered nor closed this connection.
    fn still_waiting(&mut self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let waiting = matches!(self.stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).unwrap();
        waiting
    }
}

#[test]
fn two_hundred_body_and_head_tricklers_never_delay_probes_or_hits() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    // The tricklers must outlast the probes: give them a minute before the relay cuts them off.
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"client_timeout_ms": 60_000}),
    );
    let relay = Relay::start(&cfg);
    let url = relay.url("/v1/chat/completions");
    post_json(&url, &ask("warm"));
    assert_eq!(post_json(&url, &ask("warm")).header("x-cache"), Some("HIT"));

    let mut tricklers = Vec::new();
    for _ in 0..TRICKLERS {
        tricklers.push(Trickler::open(
            relay.addr(),
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{",
            b" ",
        ));
        tricklers.push(Trickler::open(
            relay.addr(),
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            b"x",
        ));
    }
    // Every body trickler's request is being handled (its body read) once the in-flight gauge
    // counts them all; only then do the probes go out.
    wait_until(
        Duration::from_secs(120),
        "the relay to take up every body trickler's request",
        || {
            tricklers.iter_mut().for_each(Trickler::tick);
            metric(&relay, "llm_relay_in_flight_requests").unwrap_or(0.0) >= TRICKLERS as f64
        },
    );

    assert_eq!(get(&relay.url("/health")).status, 200);
    assert_eq!(get(&relay.url("/ready")).status, 200);
    assert_eq!(get(&relay.url("/metrics")).status, 200);
    for _ in 0..20 {
        let r = post_json(&url, &ask("warm"));
        assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
    }
    let other = post_json(&url, &ask("a miss, by another client"));
    assert_eq!(other.status, 200, "{}", other.body);

    // The ordering: all of that happened while every trickler was still connected, unanswered.
    let waiting = tricklers
        .iter_mut()
        .map(Trickler::still_waiting)
        .filter(|w| *w)
        .count();
    assert_eq!(
        waiting,
        2 * TRICKLERS,
        "the probes and hits waited until tricklers were cut off"
    );
}
