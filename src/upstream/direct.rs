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
//! Streams take the same path to their response head; their body is read as it comes
//! (`direct_stream`). HTTPS, proxies and pass-through keep ureq: TLS dominates their cost, or
//! it is small beside what they carry.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::NextTimeout;
use ureq::Timeout;

use super::endpoints::{EndpointConfig, Settings};
use super::framing::{self, Inbox};
use super::resolve::Remembered;
use super::ClientHeaders;
use super::{agent, slim, steady, tcp, Endpoint, Reply, Timeouts, Upstream};

/// The read buffer a connection starts with (and goes back to): a small answer's head and
/// body arrive in one read.
const INBOX_BYTES: usize = 4 * 1024;

/// The direct client of one endpoint.
pub(super) struct Direct {
    /// The `host` header: the URL's host, with its port unless 80.
    host: String,
    /// The endpoint's URL, for the resolver.
    base: Uri,
    resolver: Remembered,
    /// Shared with the streams reading from its connections, which give them back at their end.
    pool: Arc<Pool>,
    keepalive: Duration,
}

/// The idle connections of one endpoint: newest last, at most `max_idle`.
pub(super) struct Pool {
    kept: Mutex<Vec<Kept>>,
    max_idle: usize,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// An idle connection in the pool, since when.
pub(super) struct Kept {
    conn: Conn,
    since: Instant,
}

/// One connection: its socket, the timeouts it has now (set only when they change) and what
/// was read from it and not used.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    pub(super) inbox: Inbox,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            read_timeout: None,
            write_timeout: None,
            inbox: Inbox::new(INBOX_BYTES),
        }
    }
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
            pool: Arc::new(Pool {
                kept: Mutex::new(Vec::new()),
                max_idle: agent::idle_per_host(workers),
            }),
            keepalive: e.keepalive.unwrap_or(t.keepalive),
        })
    }

    /// A kept connection that is still open, else a new one.
    fn connection(&self, agent: &ureq::Agent, connect: Duration) -> Result<Conn, ureq::Error> {
        loop {
            let Some(kept) = self.pool.kept().pop() else {
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
        Ok(Conn::new(stream))
    }
}

impl Direct {
    /// Its pool, for a stream to give its connection back to at the end.
    pub(super) fn shared_pool(&self) -> Arc<Pool> {
        Arc::clone(&self.pool)
    }
}

impl Pool {
    /// A pool of at most `max_idle` connections (the tests' own; an endpoint's is its
    /// `Direct`'s).
    #[cfg(test)]
    pub(super) fn new(max_idle: usize) -> Pool {
        Pool {
            kept: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// How many connections it keeps.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.kept().len()
    }

    fn kept(&self) -> MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `conn` for the next request (dropping the oldest kept one past the bound).
    pub(super) fn keep(&self, mut conn: Conn) {
        conn.inbox.reset(INBOX_BYTES);
        let oldest = {
            let mut pool = self.kept();
            pool.push(Kept {
                conn,
                since: Instant::now(),
            });
            (pool.len() > self.max_idle).then(|| pool.remove(0))
        };
        drop(oldest); // closed outside the lock
    }
}

/// How long a read of the socket may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    /// Until the deadline of the response head (given to the socket in steady steps), and with
    /// a cap, each read at most that long (a stream's head: `idle_timeout_ms`).
    Until(Instant, Option<Duration>),
    /// Each read of the body: at most this long.
    Each(Duration),
}

/// A connection's socket read under a [`Wait`]; a wait that runs out is an I/O `TimedOut`.
pub(super) struct Socket<'a> {
    pub(super) stream: &'a TcpStream,
    pub(super) timeout: &'a mut Option<Duration>,
    pub(super) wait: Wait,
    /// Set when a read of the head ran out at its cap, before the deadline.
    capped: bool,
}

impl<'a> Socket<'a> {
    pub(super) fn new(
        stream: &'a TcpStream,
        timeout: &'a mut Option<Duration>,
        wait: Wait,
    ) -> Self {
        Socket {
            stream,
            timeout,
            wait,
            capped: false,
        }
    }
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (step, cap) = match self.wait {
                Wait::Each(d) => (d, None),
                Wait::Until(deadline, cap) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    match cap {
                        Some(cap) if cap < left => (cap, Some(cap)),
                        _ => (steady::steady(left), None),
                    }
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
                    if cap.is_some() {
                        self.capped = true;
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                other => return other,
            }
        }
    }
}

/// An I/O error that timed out, said as `idle` says it: what went silent, for how long.
pub(super) fn silent(e: ureq::Error, what: &str, idle: Duration) -> ureq::Error {
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
    /// with the outgoing headers of the client's `headers`, and reads the whole answer within
    /// its bounds (held in the response's extensions, as `post_one` holds them).
    pub(super) fn post_direct(
        &self,
        ep: &Endpoint,
        direct: &Direct,
        target: &str,
        headers: ClientHeaders<'_>,
        traceparent: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, ureq::Error> {
        let idle = self.timeouts.idle;
        let (mut conn, head) =
            self.send_direct(ep, direct, target, (headers, traceparent), body, None)?;
        let announced = match head.framing {
            framing::Framing::Length(n) => Some(n),
            _ => None,
        };
        let mut bound = self.bound(announced)?;
        let mut data = Vec::with_capacity(bound.capacity(announced));
        let Conn {
            stream,
            read_timeout,
            inbox,
            ..
        } = &mut conn;
        let mut socket = Socket::new(stream, read_timeout, Wait::Each(idle));
        let ended = framing::read_body(head.framing, inbox, &mut socket, &mut data, &mut |n| {
            bound.grew(n)
        })
        .map_err(|e| silent(e, "no byte of the answer body", idle))?;
        if ended && head.keep_alive && conn.inbox.pending().is_empty() {
            direct.pool.keep(conn);
        }
        let (parts, ()) = head.response.into_parts();
        Ok(Reply::whole(parts, data, bound.held))
    }

    /// Writes the request on a kept (or new) connection of `direct` and reads the response
    /// head, within `first_byte_timeout_ms` and, with a `cap`, each read within that
    /// (`Timeout::PerRead`, as ureq says it). Returns the connection, its body to come.
    pub(super) fn send_direct(
        &self,
        ep: &Endpoint,
        direct: &Direct,
        target: &str,
        outgoing: (ClientHeaders<'_>, Option<&str>),
        body: &[u8],
        cap: Option<Duration>,
    ) -> Result<(Conn, framing::Head), ureq::Error> {
        let idle = self.timeouts.idle;
        let request = self.direct_request(ep, &direct.host, target, outgoing, body)?;
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
        let deadline = Instant::now() + self.timeouts.first_byte;
        let mut socket = Socket::new(stream, read_timeout, Wait::Until(deadline, cap));
        let head = framing::read_head(inbox, &mut socket, slim::INPUT_MAX_BYTES - 1);
        let capped = socket.capped;
        let head = head.map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
                ureq::Error::Timeout(if capped {
                    Timeout::PerRead
                } else {
                    Timeout::RecvResponse
                })
            }
            e => e,
        })?;
        Ok((conn, head))
    }

    /// The direct client of `ep` for `path`, with its target (path and query), if `ep` has one
    /// and `path` is one of the routes it posts to.
    pub(super) fn direct_target<'a>(
        &self,
        ep: &'a Endpoint,
        path: &str,
    ) -> Option<(&'a Direct, &'a str)> {
        let direct = ep.direct.as_ref()?;
        let (_, uri) = ep.posted.iter().find(|(p, _)| *p == path)?;
        Some((direct, uri.path_and_query().map_or("/", |p| p.as_str())))
    }
}
