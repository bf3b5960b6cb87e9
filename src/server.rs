//! The HTTP server: binding, the two thread pools, panic isolation, and plain responses.
//!
//! [`FRONT_THREADS`] (16) front threads loop on tiny_http's `recv` and run each request through
//! [`routes::handle`]: everything that needs no upstream (reading the body, rules, the cache
//! lookup, a hit's answer) happens there. A request that must go upstream is handed, with the
//! rest of its work ([`Handled::Continue`]), through a bounded queue to the `workers` pool, so
//! hits never wait behind slow upstream calls. A panic in either pool is caught: the client
//! gets a 500 JSON error (if nothing was sent yet) and the thread goes on. Every request
//! leaves one access-log line.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tiny_http::{Header, Request, Response, Server};

use crate::cache::Cache;
use crate::config::Config;
use crate::error::ApiError;
use crate::log::{self, Access};
use crate::routes;
use crate::upstream::Upstream;

/// Everything a worker needs, shared read-only.
pub struct State {
    pub config: Config,
    pub upstream: Upstream,
    /// `LLM_RELAY_TEST_HOOKS=1`: enables `/__test/*` routes used by the integration tests.
    pub test_hooks: bool,
    /// The response cache, if `cache.enabled`.
    pub cache: Option<Arc<Cache>>,
    /// Queue to the `workers` pool (see [`Handled::Continue`]).
    misses: SyncSender<Job>,
}

/// Threads that receive requests and answer everything that needs no upstream call. They also
/// read request bodies, so there are enough that a few slow uploads cannot stall the relay.
pub const FRONT_THREADS: usize = 16;
/// Requests waiting for a worker before the front threads block.
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

/// A request handed to the `workers` pool.
struct Job {
    req: Request,
    access: Access,
    started: Instant,
    next: Continue,
}

/// Binds, prints `listening on http://ADDR` as the first stdout line, and serves until the
/// process ends.
pub fn run(config: Config) -> Result<(), String> {
    let cache = Cache::open(&config.cache)?;
    if let Some(cache) = &cache {
        cache.start_upkeep();
    }
    let server = Server::http(&config.listen).map_err(|e| {
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
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    log::info(&format!(
        "llm-relay {} serving on {addr}, upstream {}, {} workers",
        env!("CARGO_PKG_VERSION"),
        config.upstream,
        config.workers
    ));
    if !is_loopback(&addr) {
        log::warn(&format!(
            "listening on {addr}, which is not a loopback address: anyone who can reach it can \
             use the upstream key"
        ));
    }
    let (misses, queue) = sync_channel::<Job>(QUEUE);
    let queue = Arc::new(Mutex::new(queue));
    let state = Arc::new(State {
        upstream: Upstream::new(&config),
        test_hooks: std::env::var("LLM_RELAY_TEST_HOOKS").is_ok_and(|v| v == "1"),
        cache,
        misses,
        config,
    });
    let server = Arc::new(server);
    let mut threads = Vec::new();
    for i in 0..state.config.workers {
        let (queue, state) = (Arc::clone(&queue), Arc::clone(&state));
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(&queue, &state))
                .map_err(|e| format!("cannot start worker thread: {e}"))?,
        );
    }
    for i in 0..FRONT_THREADS {
        let (server, state) = (Arc::clone(&server), Arc::clone(&state));
        threads.push(
            std::thread::Builder::new()
                .name(format!("front-{i}"))
                .spawn(move || front(&server, &state))
                .map_err(|e| format!("cannot start front thread: {e}"))?,
        );
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn front(server: &Server, state: &State) {
    loop {
        match server.recv() {
            Ok(req) => {
                let access = Access {
                    method: req.method().to_string(),
                    path: req.url().split('?').next().unwrap_or("").to_string(),
                    ..Access::default()
                };
                run_step(state, req, access, Instant::now(), routes::handle);
            }
            Err(e) => {
                log::error(&format!("accepting a request failed: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, state: &State) {
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(job) = job else { return };
        let next = job.next;
        run_step(
            state,
            job.req,
            job.access,
            job.started,
            |state, slot, access| {
                next(state, slot, access);
                Handled::Done
            },
        );
    }
}

/// Runs one step of a request with panic isolation; logs it once answered, or queues its
/// continuation for the `workers` pool.
fn run_step(
    state: &State,
    req: Request,
    mut access: Access,
    started: Instant,
    step: impl FnOnce(&State, &mut Option<Request>, &mut Access) -> Handled,
) {
    let mut slot = Some(req);
    let handled = catch_unwind(AssertUnwindSafe(|| step(state, &mut slot, &mut access)));
    match handled {
        Ok(Handled::Continue(next)) => {
            if let Some(req) = slot.take() {
                let job = Job {
                    req,
                    access,
                    started,
                    next,
                };
                if let Err(unsent) = state.misses.send(job) {
                    // no worker left to receive it (cannot happen while the server runs)
                    let Job {
                        req, mut access, ..
                    } = unsent.0;
                    let err = ApiError::new(
                        503,
                        "server_error",
                        "unavailable",
                        "the relay is shutting down; retry".to_string(),
                    );
                    access.status = 503;
                    access.bytes = respond_error(req, &err);
                    access.duration = started.elapsed();
                    log::access(&access);
                }
                return;
            }
        }
        Ok(Handled::Done) => {}
        Err(_) => {
            let err = ApiError::internal(
                "the relay hit an internal error while handling this request; it has been logged"
                    .to_string(),
            );
            access.status = 500;
            if let Some(req) = slot.take() {
                access.bytes = respond_error(req, &err);
            }
        }
    }
    access.duration = started.elapsed();
    log::access(&access);
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
pub fn respond_error(req: Request, err: &ApiError) -> u64 {
    let mut headers = vec![json_content_type()];
    if err.status == 413 {
        // the unread body makes the connection unusable for a next request
        headers.push(("Connection".to_string(), "close".to_string()));
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
