//! Whole answers from an endpoint spoken to in plain HTTP without a proxy (a local model
//! server, a sidecar gateway, the benchmark's upstream): the request written in one piece on a
//! kept connection, the answer read by `framing`, with no general-purpose client between.
//!
//! Through ureq a miss cost ~25,000 instructions in its call machinery (its call state moved
//! from step to step, timings, middleware, `http` extensions, the request head assembled
//! header by header): a quarter of a miss. This client does what a whole answer over plain
//! HTTP needs and nothing else, with ureq's own pieces where they apply (its resolver
//! interface, our `tcp` connect and liveness probe, ureq-proto's head parser) and the same
//! failures as ureq reports them (`failure` maps both alike):
//!
//! - the request head carries what ureq's did: `host`, `content-length`, the outgoing headers,
//!   `content-type: application/json`, and the agent's `user-agent` and `accept: */*` unless
//!   the outgoing headers have their own;
//! - connect within `connect_timeout_ms` (`Timeout::Connect`), the head within
//!   `first_byte_timeout_ms` (`Timeout::RecvResponse`), each write and each read of the body
//!   within `idle_timeout_ms` (an I/O `TimedOut` naming the phase, as `idle` says it);
//! - a connection goes back to this endpoint's pool (newest first, at most the agent's
//!   per-host bound, each for `keepalive`) only when its answer ended where HTTP/1.1 says it
//!   does and nothing else came; one taken out is probed first (`tcp::probe`).
//!
//! Streams, HTTPS, proxies and pass-through keep ureq: their per-request cost is small beside
//! what they carry, or TLS dominates it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ureq::http::header::{HeaderName, HeaderValue};
use ureq::http::{Response, Uri};
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::NextTimeout;
use ureq::{Body, Timeout};

use super::endpoints::{EndpointConfig, Settings};
use super::framing::{self, Inbox};
use super::resolve::Remembered;
use super::{agent, slim, steady, tcp, Endpoint, Timeouts, Upstream, WholeRead};

/// The read buffer a connection starts with (and goes back to): a small answer's head and
/// body arrive in one read.
const INBOX_BYTES: usize = 4 * 1024;

/// The `user-agent` sent unless the outgoing headers carry one (the agent's).
macro_rules! user_agent_value {
    () => {
        concat!("llm-relay/", env!("CARGO_PKG_VERSION"))
    };
}

/// The direct client of one endpoint.
pub(super) struct Direct {
    /// The `host` header: the URL's host, with its port unless 80.
    host: String,
    /// The endpoint's URL, for the resolver.
    base: Uri,
    resolver: Remembered,
    idle: Mutex<Vec<Kept>>,
    max_idle: usize,
    keepalive: Duration,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// An idle connection in the pool, since when.
struct Kept {
    conn: Conn,
    since: Instant,
}

/// One connection: its socket, the timeouts it has now (set only when they change) and what
/// was read from it and not used.
struct Conn {
    stream: TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    inbox: Inbox,
}

impl Direct {
    /// The direct client of `e`, if it is reached in plain HTTP without a proxy.
    pub fn of(s: &Settings, e: &EndpointConfig, t: Timeouts, workers: usize) -> Option<Direct> {
        let base: Uri = e.url.parse().ok()?;
        if base.scheme_str() != Some("http") || agent::proxy(s, e).is_some() {
            return None;
        }
        let host = match (base.host()?, base.port_u16()) {
            (host, Some(port)) if port != 80 => format!("{host}:{port}"),
            (host, _) => host.to_string(),
        };
        Some(Direct {
            host,
            base,
            resolver: Remembered::new(),
            idle: Mutex::new(Vec::new()),
            max_idle: agent::idle_per_host(workers),
            keepalive: e.keepalive.unwrap_or(t.keepalive),
        })
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Kept>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection that is still open, else a new one.
    fn connection(&self, agent: &ureq::Agent, connect: Duration) -> Result<Conn, ureq::Error> {
        loop {
            let Some(kept) = self.pool().pop() else {
                break;
            };
            if kept.since.elapsed() <= self.keepalive && tcp::probe(&kept.conn.stream) {
                return Ok(kept.conn);
            }
        }
        let timeout = NextTimeout {
            after: connect.into(),
            reason: Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let addrs = self.resolver.resolve(&self.base, agent.config(), timeout)?;
        let connecting = NextTimeout {
            reason: Timeout::Connect,
            ..timeout
        };
        let stream = tcp::connect(&addrs, connecting)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read_timeout: None,
            write_timeout: None,
            inbox: Inbox::new(INBOX_BYTES),
        })
    }

    /// Keeps `conn` for the next request (dropping the oldest kept one past the bound).
    fn keep(&self, mut conn: Conn) {
        conn.inbox.reset(INBOX_BYTES);
        let oldest = {
            let mut pool = self.pool();
            pool.push(Kept {
                conn,
                since: Instant::now(),
            });
            (pool.len() > self.max_idle).then(|| pool.remove(0))
        };
        drop(oldest); // closed outside the lock
    }
}

/// A header ureq would refuse to send is refused the same way (`ureq::Error::Http`).
fn check(name: &str, value: &str) -> Result<(), ureq::Error> {
    let name_ok = !name.is_empty() && name.bytes().all(is_token);
    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if name_ok && value_ok {
        return Ok(());
    }
    let error: ureq::http::Error = match HeaderName::from_bytes(name.as_bytes()) {
        Err(e) => e.into(),
        Ok(_) => match HeaderValue::from_bytes(value.as_bytes()) {
            Err(e) => e.into(),
            Ok(_) => return Ok(()),
        },
    };
    Err(ureq::Error::Http(error))
}

/// A byte of an HTTP token (RFC 9110 §5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How long a read of the socket may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Until the deadline of the response head (given to the socket in steady steps).
    Until(Instant),
    /// Each read of the body: at most this long.
    Each(Duration),
}

/// A connection's socket read under a [`Wait`]; a wait that runs out is an I/O `TimedOut`.
struct Socket<'a> {
    stream: &'a TcpStream,
    timeout: &'a mut Option<Duration>,
    wait: Wait,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let step = match self.wait {
                Wait::Each(d) => d,
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    steady::steady(left)
                }
            };
            if *self.timeout != Some(step) {
                self.stream.set_read_timeout(Some(step))?;
                *self.timeout = Some(step);
            }
            match (&mut &*self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Wait::Each(_) = self.wait {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                other => return other,
            }
        }
    }
}

/// An I/O error that timed out, said as `idle` says it: what went silent, for how long.
fn silent(e: ureq::Error, what: &str, idle: Duration) -> ureq::Error {
    match e {
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            ureq::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} for {} ms (idle_timeout_ms)", idle.as_millis()),
            ))
        }
        e => e,
    }
}

impl Upstream {
    /// POSTs `body` to `target` (path and query) of `ep` through its direct client `direct`,
    /// with the outgoing headers of the client's `headers`, and reads the whole answer within its bounds (held in the
    /// response's extensions, as `post_one` holds them).
    pub(super) fn post_direct(
        &self,
        ep: &Endpoint,
        direct: &Direct,
        target: &str,
        headers: &[(String, String)],
        traceparent: Option<&str>,
        body: &[u8],
    ) -> Result<Response<Body>, ureq::Error> {
        let idle = self.timeouts.idle;
        let request =
            self.direct_request(ep, &direct.host, target, (headers, traceparent), body)?;
        let mut conn = direct.connection(&ep.agent, self.timeouts.connect)?;
        if conn.write_timeout != Some(idle) {
            conn.stream.set_write_timeout(Some(idle))?;
            conn.write_timeout = Some(idle);
        }
        (&conn.stream).write_all(&request).map_err(|e| {
            silent(
                e.into(),
                "the upstream accepted no byte of the request",
                idle,
            )
        })?;
        let Conn {
            stream,
            read_timeout,
            inbox,
            ..
        } = &mut conn;
        let mut socket = Socket {
            stream,
            timeout: read_timeout,
            wait: Wait::Until(Instant::now() + self.timeouts.first_byte),
        };
        let head = framing::read_head(inbox, &mut socket, slim::INPUT_MAX_BYTES - 1).map_err(
            |e| match e {
                ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
                    ureq::Error::Timeout(Timeout::RecvResponse)
                }
                e => e,
            },
        )?;
        let announced = match head.framing {
            framing::Framing::Length(n) => Some(n),
            _ => None,
        };
        let mut bound = self.bound(announced)?;
        let mut data = Vec::with_capacity(bound.capacity(announced));
        socket.wait = Wait::Each(idle);
        let ended = framing::read_body(head.framing, inbox, &mut socket, &mut data, &mut |n| {
            bound.grew(n)
        })
        .map_err(|e| silent(e, "no byte of the answer body", idle))?;
        if ended && head.keep_alive && conn.inbox.pending().is_empty() {
            direct.keep(conn);
        }
        let (parts, ()) = head.response.into_parts();
        Ok(WholeRead::answer(parts, data, bound.held))
    }

    /// The request to `ep`: its head as ureq wrote it (the outgoing headers of the client's
    /// `headers`, see `headers.rs`), then `body`.
    fn direct_request(
        &self,
        ep: &Endpoint,
        host: &str,
        target: &str,
        (headers, traceparent): (&[(String, String)], Option<&str>),
        body: &[u8],
    ) -> Result<Vec<u8>, ureq::Error> {
        let sizes: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(320 + target.len() + host.len() + sizes + body.len());
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        let (mut agent_named, mut accept_named) = (false, false);
        let mut refused = None;
        self.each_outgoing(ep, headers, traceparent, &mut |name, value| {
            if let Err(e) = check(name, value) {
                refused.get_or_insert(e);
            }
            agent_named |= name.eq_ignore_ascii_case("user-agent");
            accept_named |= name.eq_ignore_ascii_case("accept");
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        });
        if let Some(e) = refused {
            return Err(e);
        }
        out.extend_from_slice(b"content-type: application/json\r\n");
        if !agent_named {
            out.extend_from_slice(concat!("user-agent: ", user_agent_value!(), "\r\n").as_bytes());
        }
        if !accept_named {
            out.extend_from_slice(b"accept: */*\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_header_ureq_would_refuse_is_refused() {
        assert!(check("x-ok", "any value\twith tab and ünïcode").is_ok());
        for (name, value) in [
            ("x-bad", "a\r\nb"),
            ("x bad", "v"),
            ("", "v"),
            ("x", "\u{7f}"),
        ] {
            let ours = check(name, value);
            assert!(
                matches!(ours, Err(ureq::Error::Http(_))),
                "{name:?} {value:?}"
            );
        }
    }
}
