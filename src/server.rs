//! The HTTP server: binding, the two thread pools and the queue between them.
//!
//! [`FRONT_THREADS`] front threads loop on tiny_http's `recv`, wrap each request in an
//! [`Exchange`] and run it through [`routes::handle`]: everything that needs no upstream (auth,
//! reading the body, rules, the cache lookup, a hit's answer) happens there. A request that must
//! go upstream comes back as [`Next::Upstream`] — plain data, no closure — and is handed through
//! a bounded queue to the `workers` pool, so hits never wait behind slow upstream calls. A
//! request runs start to end with the state current when it arrived (see `lifecycle`). A panic
//! in either pool unwinds through the exchange, whose `Drop` answers 500 (if nothing was sent
//! yet) and logs it; the thread goes on. The main thread waits for signals and returns once a
//! drain is over.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tiny_http::{Request, Server};

use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::lifecycle::{self, Live};
use crate::log;
use crate::pipeline::{self, Next, Work};
use crate::state::State;
use crate::{metrics, routes};

/// Threads that receive requests and answer everything that needs no upstream call. They also
/// read request bodies (bounded by `client_timeout_ms`), so there are enough that a few slow
/// uploads cannot stall the relay.
pub const FRONT_THREADS: usize = 16;
/// Requests waiting for a worker; beyond it the relay answers 503 at once.
const QUEUE: usize = 1024;

/// A request on its way to the `workers` pool.
struct Job {
    ex: Exchange,
    /// The state the request started with; it finishes with the same one.
    state: Arc<State>,
    work: Work,
}

type Queue = SyncSender<Job>;

/// Binds, prints `listening on http://ADDR` as the first stdout line, and serves until a
/// drain (SIGTERM/SIGINT) is over. `config_path` is read again on SIGHUP.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
    log::install_library_logger();
    config.ops.apply()?;
    let state = State::new(config, None)?;
    if let Some(cache) = &state.cache {
        cache.start_upkeep();
    }
    let config = &state.config;
    let server = Server::http_with_timeout(&config.listen, config.client_timeout).map_err(|e| {
        format!(
            "cannot listen on {}: {e}; pick a free address in `listen`",
            config.listen
        )
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_else(|| config.listen.clone());
    let signals = lifecycle::install_signals()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    log::info(&format!(
        "llm-relay {} serving on {addr}, upstream {}, {} workers",
        env!("CARGO_PKG_VERSION"),
        config.upstreams.describe(),
        config.workers
    ));
    if !is_loopback(&addr) && !config.auth.enabled() {
        log::warn(&format!(
            "listening on {addr}, which is not a loopback address: anyone who can reach it can \
             use the upstream key; configure `auth.keys` to require client keys"
        ));
    }
    metrics::set_workers(config.workers);
    let workers = config.workers;
    let live = Arc::new(Live::new(state));
    let (queue, jobs) = sync_channel::<Job>(QUEUE);
    let jobs = Arc::new(Mutex::new(jobs));
    for i in 0..workers {
        let jobs = Arc::clone(&jobs);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&jobs))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
    }
    let server = Arc::new(server);
    for i in 0..FRONT_THREADS {
        let (server, live, queue) = (Arc::clone(&server), Arc::clone(&live), queue.clone());
        std::thread::Builder::new()
            .name(format!("front-{i}"))
            .spawn(move || front(&server, &live, &queue))
            .map_err(|e| format!("cannot start front thread: {e}"))?;
    }
    lifecycle::supervise(signals, &live, config_path);
    Ok(())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn front(server: &Server, live: &Live, queue: &Queue) {
    loop {
        match server.recv() {
            Ok(req) => serve(Exchange::new(req), live.current(), queue),
            Err(e) => {
                log::error(&format!("accepting a request failed: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// One request where it was received: the drain's 503, or routing (a hit or any answer that
/// needs no upstream is sent here); upstream work is queued for the `workers` pool (503 at
/// once if the queue is full). A panic drops the exchange, which answers 500 and logs it.
fn serve(mut ex: Exchange, state: Arc<State>, queue: &Queue) {
    if lifecycle::draining() && !lifecycle::is_probe(&ex.access.path) {
        ex.answer_with(|req| (503, respond_draining(req)));
        return;
    }
    let routed = catch_unwind(AssertUnwindSafe(move || {
        let next = routes::handle(&state, &mut ex);
        (ex, state, next)
    }));
    let Ok((ex, state, Next::Upstream(work))) = routed else {
        return;
    };
    if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
        queue.try_send(Job { ex, state, work })
    {
        let mut ex = job.ex;
        ex.error(&ApiError::new(
            503,
            "server_error",
            "relay_busy",
            format!(
                "{QUEUE} requests are already waiting for an upstream worker; retry shortly or \
                 raise `workers`"
            ),
        ));
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(Job {
            mut ex,
            state,
            work,
        }) = next
        else {
            return;
        };
        let _busy = metrics::busy();
        // A panic drops `ex` while unwinding: it answers 500 and logs the request.
        let _ = catch_unwind(AssertUnwindSafe(move || {
            pipeline::upstream(&state, &mut ex, work);
        }));
    }
}

/// The answer to a new request during a drain: 503 with `Retry-After`, and the connection
/// closed. Written on the raw connection because tiny_http drops a `Connection` header set on a
/// `Response` (`into_writer` drains an unread request body first: fine for a drain, wrong for a
/// refused body).
fn respond_draining(req: Request) -> u64 {
    use std::io::Write;
    let err = ApiError::new(
        503,
        "server_error",
        "shutting_down",
        "this relay instance is shutting down; retry the request (another instance will take it)"
            .to_string(),
    );
    let body = if req.method() == &tiny_http::Method::Head {
        Vec::new()
    } else {
        err.body()
    };
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        err.body().len()
    );
    let mut w = req.into_writer();
    let _ = w
        .write_all(head.as_bytes())
        .and_then(|()| w.write_all(&body))
        .and_then(|()| w.flush());
    body.len() as u64
}

/// Silences the default panic output's backtrace hint and logs panics as one line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error(&format!(
            "panic in {}: {info}",
            thread.name().unwrap_or("unnamed thread")
        ));
    }));
}
