//! llm-relay patch: the accept loop. Upstream's loop ended on the first `accept()` error
//! (EMFILE under load left a live process that never answered again) and handed every socket
//! a thread however many were open. This one logs errors (rate-limited) and backs off, answers
//! connections beyond `max_connections` (or beyond `max_connections_per_ip` from one address)
//! with a fast 503, and can close the listener on demand while connections already accepted are
//! served to the end.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::ClientConnection;
use crate::connection::{Connection, Listener};
use crate::refusal::Refusal;
use crate::util::{MessagesQueue, RefinedTcpStream, TaskPool};
use crate::{serve_connection, serve_handled, HTTPVersion, Handled, Handler, Message, SslContext};

/// Shared between the `Server` and its accept thread.
pub(crate) struct Shared {
    /// The server is dropped: stop accepting, close the listener.
    pub close: AtomicBool,
    /// `close_listener()` was called: accept what is already queued, then close the listener.
    pub close_listener: AtomicBool,
    /// Connections accepted and not yet finished.
    pub live: AtomicUsize,
    /// Of those, how many each client address holds (only addresses the per-address limit
    /// applies to).
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// `max_connections_per_ip`: at most `max` connections from one address, except addresses
/// `exempt` says yes to.
#[derive(Clone)]
pub struct PerIp {
    pub max: usize,
    pub exempt: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

pub(crate) struct Acceptor {
    pub listener: Listener,
    pub ssl: Option<SslContext>,
    pub timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub per_ip: Option<PerIp>,
    pub handler: Option<Handler>,
    pub messages: Arc<MessagesQueue<Message>>,
    pub shared: Arc<Shared>,
    /// Dropped with the listener, so `close_listener()` can wait for it.
    pub closed: mpsc::Sender<()>,
    pub errors_log: EveryFewSeconds,
    pub refusals_log: EveryFewSeconds,
}

/// A rate limit for one kind of log line: at most one per `LOG_EVERY`, counting the rest.
#[derive(Default)]
pub(crate) struct EveryFewSeconds {
    last: Cell<Option<Instant>>,
    skipped: Cell<u64>,
}

impl EveryFewSeconds {
    /// Some(events skipped since the last line) if a line is due now; else counts this one.
    fn due(&self) -> Option<u64> {
        if self.last.get().map_or(true, |t| t.elapsed() >= LOG_EVERY) {
            self.last.set(Some(Instant::now()));
            Some(self.skipped.replace(0))
        } else {
            self.skipped.set(self.skipped.get() + 1);
            None
        }
    }
}

/// Counts one live connection (and, with `Some`, one of its address's) until dropped.
struct Live(Arc<Shared>, Option<IpAddr>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, SeqCst);
        if let Some(ip) = self.1 {
            let mut per_ip = self.0.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// The first pause after a failed `accept()`; doubled per failure in a row up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// At most one log line per this interval for failed accepts (the rest are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Acceptor {
    /// Runs on the accept thread until the server is dropped or the listener closed.
    pub fn run(self) {
        let pool = Arc::new(TaskPool::new());
        let mut backoff = MIN_BACKOFF;
        log::debug!("Running accept thread");
        loop {
            if self.shared.close.load(Relaxed) {
                break;
            }
            if self.shared.close_listener.load(SeqCst) {
                self.drain_backlog(&pool);
                break;
            }
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    backoff = MIN_BACKOFF;
                    self.dispatch(sock, peer, &pool);
                }
                Err(e) => {
                    if self.shared.close.load(Relaxed) {
                        break;
                    }
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    if let Some(skipped) = self.errors_log.due() {
                        log::error!(
                            "accepting a connection failed: {} ({} more failures since the last \
                             report); {} connections open; retrying",
                            e,
                            skipped,
                            self.shared.live.load(SeqCst)
                        );
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        log::debug!("Terminating accept thread");
        drop(self.listener);
        drop(self.closed);
    }

    /// Accepts every connection already queued on the listener (they were promised an answer by
    /// the kernel's handshake), then returns so the listener is closed.
    fn drain_backlog(&self, pool: &Arc<TaskPool>) {
        if self.listener.set_nonblocking(true).is_err() {
            return;
        }
        while let Ok((sock, peer)) = self.listener.accept() {
            let _ = sock.set_nonblocking(false);
            self.dispatch(sock, peer, pool);
        }
    }

    fn dispatch(&self, sock: Connection, peer: Option<SocketAddr>, pool: &Arc<TaskPool>) {
        let live = self.shared.live.fetch_add(1, SeqCst);
        let mut guard = Live(self.shared.clone(), None);
        if self.max_connections.is_some_and(|max| live >= max) {
            if let Some(skipped) = self.refusals_log.due() {
                log::warn!(
                    "refusing connections: {} connections are open, the max_connections limit \
                     ({} more refused since the last report)",
                    live,
                    skipped
                );
            }
            refuse_now(
                sock,
                &Refusal::new(
                    503,
                    "too_many_connections",
                    format!(
                        "the server has {} connections open, its max_connections limit; retry \
                         shortly",
                        live
                    ),
                ),
            );
            return;
        }
        if let (Some(limit), Some(peer)) = (&self.per_ip, peer) {
            let ip = peer.ip().to_canonical();
            if !(limit.exempt)(ip) {
                let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let held = per_ip.entry(ip).or_insert(0);
                if *held >= limit.max {
                    let held = *held;
                    drop(per_ip);
                    if let Some(skipped) = self.refusals_log.due() {
                        log::warn!(
                            "refusing a connection from {}: it has {} open, the \
                             max_connections_per_ip limit ({} more refused since the last \
                             report)",
                            ip,
                            held,
                            skipped
                        );
                    }
                    refuse_now(
                        sock,
                        &Refusal::new(
                            503,
                            "too_many_connections",
                            format!(
                                "this client address has {} connections open, the server's \
                                 max_connections_per_ip limit; close idle ones or retry shortly",
                                held
                            ),
                        ),
                    );
                    return;
                }
                *held += 1;
                guard.1 = Some(ip);
            }
        }
        sock.set_timeouts(self.timeout);
        let streams = match &self.ssl {
            None => RefinedTcpStream::new(sock),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Some(ssl) => match ssl.accept(sock) {
                Ok(s) => RefinedTcpStream::new(s),
                Err(_) => return,
            },
            #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
            Some(_) => return,
        };
        let (read, write) = match streams {
            Ok(pair) => pair,
            Err((sock, e)) => {
                if let Some(skipped) = self.refusals_log.due() {
                    log::warn!(
                        "refusing a connection: cannot duplicate its socket: {} ({} more \
                         refused since the last report)",
                        e,
                        skipped
                    );
                }
                if let Some(sock) = sock {
                    refuse_now(
                        sock,
                        &Refusal::new(
                            503,
                            "out_of_descriptors",
                            "the server has no file descriptor left for this connection; retry \
                             shortly",
                        ),
                    );
                }
                return;
            }
        };
        let client = ClientConnection::new(write, read).with_head_timeout(self.timeout);
        let mut task: Box<dyn FnMut() + Send> = match &self.handler {
            Some(handler) => {
                let mut conn = Some(Handled {
                    client,
                    handler: Arc::clone(handler),
                    pool: Arc::clone(pool),
                    _open: Box::new(guard),
                    skip_keeping: 0,
                });
                Box::new(move || {
                    if let Some(conn) = conn.take() {
                        serve_handled(conn);
                    }
                })
            }
            None => {
                let messages = self.messages.clone();
                let mut task = Some((client, guard));
                Box::new(move || {
                    if let Some((client, _live)) = task.take() {
                        serve_connection(client, &messages);
                    }
                })
            }
        };
        pool.spawn(task);
    }
}

/// Answers a connection the server will not serve (beyond `max_connections`, or no descriptor
/// left for it) with `refusal` and closes it, without a thread and without waiting for the
/// client: the answer fits an empty send buffer.
fn refuse_now(mut sock: Connection, refusal: &Refusal) {
    let mut answer = Vec::new();
    if refusal
        .response()
        .raw_print(&mut answer, HTTPVersion(1, 1), &[], false, None)
        .is_err()
    {
        return;
    }
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let _ = sock.write_all(&answer);
    let _ = sock.shutdown(Shutdown::Write);
    // Read what already arrived, so the close does not reset the connection over unread input.
    let mut chunk = [0u8; 4096];
    for _ in 0..16 {
        match sock.read(&mut chunk) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
