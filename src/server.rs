//! The HTTP server: binding, the two thread pools, panic isolation, and plain responses.
//!
//! [`FRONT_THREADS`] front threads loop on tiny_http's `recv` and run each request through
//! [`routes::handle`]: everything that needs no upstream (auth, reading the body, rules, the
//! cache lookup, a hit's answer) happens there. A request that must go upstream is handed, with
//! the rest of its work ([`Handled::Continue`]), through a bounded queue to the `workers` pool,
//! so hits never wait behind slow upstream calls. A request runs start to end with the state
//! current when it arrived (see `lifecycle`). A panic in either pool is caught: the client gets
//! a 500 JSON error (if nothing was sent yet) and the thread goes on. Every request leaves one
//! access-log line and its metrics. The main thread waits for signals and returns once a drain
//! is over.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tiny_http::{Header, Request, Response, Server};

use crate::cache::Cache;
use crate::config::Config;
use crate::error::ApiError;
use crate::lifecycle::{self, Live};
use crate::log::{self, Access};
use crate::upstream::Upstream;
use crate::{metrics, routes};

/// Everything a request needs, shared read-only; replaced whole by a reload.
pub struct State {
    pub config: Config,
    pub upstream: Upstream,
    /// Client keys, rate limits and usage.
    pub gate: crate::gate::Gate,
    /// The response cache, if `cache.enabled`. Opened once: a reload keeps it.
    pub cache: Option<Arc<Cache>>,
    /// `LLM_RELAY_TEST_HOOKS=1`: enables `/__test/*` routes used by the integration tests.
    pub test_hooks: bool,
}

impl State {
    /// Builds the running state from `config`. On a reload, `previous` is the state being
    /// replaced: the cache, rate-limit windows and usage figures carry over, keys are read
    /// again (a changed `cache` section takes effect after a restart).
    pub fn new(config: Config, previous: Option<&State>) -> Result<State, String> {
        let cache = match previous {
            Some(p) => {
                if p.config.cache != config.cache {
                    log::warn("the `cache` section changed; it takes effect only after a restart");
                }
                p.cache.clone()
            }
            None => Cache::open(&config.cache)?,
        };
        Ok(State {
            upstream: Upstream::new(&config),
            gate: crate::gate::Gate::new(&config, previous.map(|p| &p.gate))?,
            cache,
            test_hooks: std::env::var("LLM_RELAY_TEST_HOOKS").is_ok_and(|v| v == "1"),
            config,
        })
    }
}

/// Threads that receive requests and answer everything that needs no upstream call. They also
/// read request bodies (bounded by `client_timeout_ms`), so there are enough that a few slow
/// uploads cannot stall the relay.
pub const FRONT_THREADS: usize = 16;
/// Requests waiting for a worker; beyond it the relay answers 503 at once.
const QUEUE: usize = 1024;

/// The rest of a request's work, run on the `workers` pool.
pub type Continue = Box<dyn FnOnce(&State, &mut Option<Request>, &mut Access) + Send>;

/// What a handler did with its request.
pub enum Handled {
    /// Answered (or failed) here.
    Done,
    /// Needs the upstream: continue on the `workers` pool.
    Continue(Continue),
}

/// A request on its way through the pools.
struct Job {
    req: Request,
    access: Access,
    started: Instant,
    /// The state the request started with; it finishes with the same one.
    state: Arc<State>,
    in_flight: metrics::InFlight,
}

type Queue = SyncSender<(Job, Continue)>;

/// Binds, prints `listening on http://ADDR` as the first stdout line, and serves until a
/// drain (SIGTERM/SIGINT) is over. `config_path` is read again on SIGHUP.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
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
    let (queue, jobs) = sync_channel::<(Job, Continue)>(QUEUE);
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
    live.current().gate.store.flush();
    Ok(())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn front(server: &Server, live: &Live, queue: &Queue) {
    loop {
        match server.recv() {
            Ok(req) => {
                let job = Job {
                    access: Access {
                        method: req.method().to_string(),
                        path: req.url().split('?').next().unwrap_or("").to_string(),
                        ..Access::default()
                    },
                    req,
                    started: Instant::now(),
                    state: live.current(),
                    in_flight: metrics::in_flight_guard(),
                };
                if lifecycle::draining() && !lifecycle::is_probe(&job.access.path) {
                    let Job {
                        req,
                        mut access,
                        started,
                        ..
                    } = job;
                    access.status = 503;
                    access.bytes = respond_draining(req);
                    finish(&mut access, started);
                    continue;
                }
                run_step(job, queue, routes::handle);
            }
            Err(e) => {
                log::error(&format!("accepting a request failed: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn worker(jobs: &Mutex<Receiver<(Job, Continue)>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((job, next)) = next else { return };
        let _busy = metrics::busy();
        let mut slot = Some(job.req);
        let mut access = job.access;
        let state = job.state;
        let ran = catch_unwind(AssertUnwindSafe(|| next(&state, &mut slot, &mut access)));
        conclude(ran.is_ok(), slot, &mut access, job.started);
        drop(job.in_flight);
    }
}

/// Runs the front step of a request with panic isolation; logs it once answered, or queues
/// its continuation for the `workers` pool (503 at once if the queue is full).
fn run_step(
    job: Job,
    queue: &Queue,
    step: impl FnOnce(&State, &mut Option<Request>, &mut Access) -> Handled,
) {
    let Job {
        req,
        mut access,
        started,
        state,
        in_flight,
    } = job;
    let mut slot = Some(req);
    let handled = catch_unwind(AssertUnwindSafe(|| step(&state, &mut slot, &mut access)));
    if let Ok(Handled::Continue(next)) = handled {
        let Some(req) = slot.take() else {
            return conclude(true, None, &mut access, started);
        };
        let job = Job {
            req,
            access,
            started,
            state,
            in_flight,
        };
        match queue.try_send((job, next)) {
            Ok(()) => {}
            Err(TrySendError::Full((job, _)) | TrySendError::Disconnected((job, _))) => {
                let Job {
                    req, mut access, ..
                } = job;
                let err = ApiError::new(
                    503,
                    "server_error",
                    "relay_busy",
                    format!(
                        "{QUEUE} requests are already waiting for an upstream worker; retry \
                         shortly or raise `workers`"
                    ),
                );
                access.status = 503;
                access.bytes = respond_error(req, &err);
                finish(&mut access, started);
            }
        }
        return;
    }
    conclude(handled.is_ok(), slot, &mut access, started);
}

/// After a step: a panic (`ok` false) still owning the request answers 500; then the
/// request's access line and metrics.
fn conclude(ok: bool, slot: Option<Request>, access: &mut Access, started: Instant) {
    if !ok {
        let err = ApiError::internal(
            "the relay hit an internal error while handling this request; it has been logged"
                .to_string(),
        );
        access.status = 500;
        if let Some(req) = slot {
            access.bytes = respond_error(req, &err);
        }
    }
    finish(access, started);
}

fn finish(access: &mut Access, started: Instant) {
    access.duration = started.elapsed();
    log::access(access);
    metrics::request_done(access);
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

/// Sends a complete response. Returns the body size.
pub fn respond(req: Request, status: u16, headers: &[(String, String)], body: Vec<u8>) -> u64 {
    let len = body.len() as u64;
    let mut response = Response::from_data(body).with_status_code(status);
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = req.respond(response);
    len
}

/// Sends an OpenAI-shaped error. Returns the body size.
/// (A 408/413 leaves an unread body behind: tiny_http writes the answer first, then drains at
/// most 1 MiB or 1 s of the body and closes a connection left out of step.)
pub fn respond_error(req: Request, err: &ApiError) -> u64 {
    let mut headers = vec![json_content_type()];
    if let Some(allow) = err.allow {
        headers.push(("Allow".to_string(), allow.to_string()));
    }
    respond(req, err.status, &headers, err.body())
}

pub fn json_content_type() -> (String, String) {
    ("Content-Type".to_string(), "application/json".to_string())
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
