//! The HTTP server: binding, where each request runs, and the `workers` pool.
//!
//! tiny_http reads every connection on a thread of its own; in its handler mode (our fork) that
//! thread also runs [`serve`]: it wraps the request in an [`Exchange`] and runs it through
//! [`routes::handle`], so everything that needs no upstream (auth, reading the body, rules, the
//! cache lookup, a hit's answer) costs no hand-off, and a slow client holds only its own
//! connection's thread. A request that must go upstream comes back as [`Next::Upstream`] — plain
//! data, no closure — and is handed through a bounded queue to the fixed `workers` pool, which
//! bounds upstream concurrency; the connection's thread goes back to tiny_http's pool meanwhile
//! (the connection is parked until the worker's answer ends, then served on from the pool), so an
//! open stream holds one thread, its worker, and hits on other connections never wait behind it.
//! The worker that answered keeps the connection when its client has the next request ready
//! (whole, within [`KEEP_WINDOW`]) and no queued job lacks a worker, and serves that request
//! itself, upstream work included: no hand-off either way (see ARCHITECTURE.md, "Kept
//! connections"). A request runs start to end with the state current when it arrived (see
//! `lifecycle`). A panic unwinds through the exchange, whose `Drop` answers 500 (if nothing was
//! sent yet) and logs it; the thread goes on. The main thread waits for signals and returns once a drain is over.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tiny_http::{HttpOptions, Request, Server};

use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::http_head::{Framing, Head};
use crate::lifecycle::{self, Live};
use crate::log;
use crate::pipeline::{self, Next, Work};
use crate::state::State;
use crate::{metrics, routes};

mod queue;
use queue::QUEUE;

/// The queue of requests to the `workers` pool.
type Queue = queue::Queue<Box<Job>>;

/// How long a worker that answered a request waits for the whole next request on the same
/// connection before handing the connection to tiny_http's pool (`tiny_http::KeptConnection`):
/// a client that sends at once is then served on the worker, with no hand-off either way.
const KEEP_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

thread_local! {
    /// True on a `workers` thread: a request of a connection it kept runs its upstream work
    /// there, not through the queue.
    static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The longest the relay waits at exit for its last spans to reach the collector.
const TRACE_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// A request on its way to the `workers` pool.
struct Job {
    ex: Exchange,
    /// The state the request started with; it finishes with the same one.
    state: Arc<State>,
    work: Work,
}

/// Binds, prints `listening on http://ADDR` as the first stdout line, and serves until a
/// drain (SIGTERM/SIGINT) is over. `config_path` is read again on SIGHUP.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
    log::install_library_logger();
    config.ops.apply()?;
    for w in &config.warnings {
        log::warn(w);
    }
    let state = State::new(config, None)?;
    if let Some(cache) = &state.cache {
        cache.start_upkeep();
    }
    let live = Arc::new(Live::new(state));
    let state = live.current();
    let config = &state.config;
    metrics::set_workers(config.workers);
    let queue = Arc::new(Queue::default());
    let keeping = Arc::new(Keeping {
        now: AtomicUsize::new(0),
        most: (config.workers * 3 / 4).max(1),
    });
    for i in 0..config.workers {
        let (jobs, keeping) = (Arc::clone(&queue), Arc::clone(&keeping));
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&jobs, &keeping))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
    }
    // Each request runs on the thread tiny_http reads its connection with.
    let handler: tiny_http::Handler = {
        let live = Arc::clone(&live);
        Arc::new(move |req| serve(Exchange::new(req), live.current(), &queue))
    };
    let options = HttpOptions::new()
        .timeout(config.client_timeout)
        .max_connections(config.max_connections)
        .max_connections_per_ip(config.max_connections_per_ip, {
            let trusted = config.trusted_proxies.clone();
            move |ip| trusted.contains(ip)
        })
        .handler(handler);
    let server = Server::http_with_options(&config.listen, options).map_err(|e| {
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
    drop(state); // the running state lives in `live`; a reload replaces it
    lifecycle::supervise(signals, &live, config_path, &server);
    let last = live.current();
    last.gate.store.flush();
    if let Some(cache) = &last.cache {
        cache.flush_hits();
    }
    if let Some(tracer) = &last.telemetry {
        tracer.flush(TRACE_FLUSH);
    }
    Ok(())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// One request where it was received: the drain's 503, or routing (a hit or any answer that
/// needs no upstream is sent here); upstream work is queued for the `workers` pool (503 at
/// once if the queue is full). A panic drops the exchange, which answers 500 and logs it.
fn serve(mut ex: Exchange, state: Arc<State>, queue: &Queue) {
    let on_worker = ON_WORKER.get();
    if on_worker {
        metrics::kept_request();
    }
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
    if on_worker {
        // a request of a connection this worker kept: no hand-off
        return run_job(Job { ex, state, work });
    }
    if let Err(job) = queue.push(Box::new(Job { ex, state, work })) {
        let mut ex = job.ex;
        ex.error(&ApiError::busy(
            "relay_busy",
            format!(
                "{QUEUE} requests are already waiting for an upstream worker; retry shortly or \
                 raise `workers`"
            ),
            1,
        ));
    }
}

/// How many workers serve connections they kept, and the most that may: the rest take queued
/// work at once.
struct Keeping {
    now: AtomicUsize,
    most: usize,
}

/// A `workers` thread: runs queued jobs; after each, serves on the connection whose request it
/// answered while the client sends its next requests at once and every queued job has an idle
/// worker to take it (see [`KEEP_WINDOW`]), with at most [`Keeping::most`] workers doing so.
fn worker(jobs: &Queue, keeping: &Keeping) {
    ON_WORKER.set(true);
    tiny_http::keep_connections_here();
    loop {
        let Some(job) = jobs.pop() else {
            return;
        };
        run_job(*job);
        while let Some(kept) = tiny_http::take_kept_connection() {
            if keeping.now.fetch_add(1, Ordering::SeqCst) < keeping.most {
                kept.serve(KEEP_WINDOW, &|| {
                    !jobs.lacks_a_worker() && !lifecycle::draining()
                });
            } else {
                kept.release();
            }
            keeping.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Runs a job's upstream work on this worker.
fn run_job(job: Job) {
    let Job {
        mut ex,
        state,
        work,
    } = job;
    let _busy = metrics::busy();
    // A panic drops `ex` while unwinding: it answers 500 and logs the request.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        pipeline::upstream(&state, &mut ex, work);
    }));
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
    let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
    let body = err.body();
    let length = body.len() as u64;
    let (body, framing) = if req.method() == &tiny_http::Method::Head {
        (Vec::new(), Framing::Bodiless(Some(length)))
    } else {
        (body, Framing::Length(length))
    };
    let headers = [
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Retry-After".to_string(), "1".to_string()),
    ];
    let head = Head {
        http11,
        status: 503,
        headers: &headers,
        framing,
        drop_framing: false,
        close: true,
    }
    .render();
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
