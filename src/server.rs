//! The HTTP server: binding, the fixed worker pool, panic isolation, and plain responses.
//!
//! `workers` threads each loop on tiny_http's `recv` and run one request at a time through
//! [`routes::handle`], with the state current when the request arrived (see `lifecycle`). A
//! panic inside a handler is caught: the client gets a 500 JSON error (if nothing was sent
//! yet) and the worker goes on. Every request leaves one access-log line and its metrics. The
//! main thread waits for signals and returns once a drain is over.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tiny_http::{Header, Request, Response, Server};

use crate::config::Config;
use crate::error::ApiError;
use crate::lifecycle::{self, Live};
use crate::log::{self, Access};
use crate::upstream::Upstream;
use crate::{metrics, routes};

/// Everything a worker needs, shared read-only.
pub struct State {
    pub config: Config,
    pub upstream: Upstream,
    /// Client keys, rate limits and usage.
    pub gate: crate::gate::Gate,
    /// `LLM_RELAY_TEST_HOOKS=1`: enables `/__test/*` routes used by the integration tests.
    pub test_hooks: bool,
}

impl State {
    /// Builds the running state from `config`. On a reload, `previous` is the state being
    /// replaced: rate-limit windows and usage figures carry over, keys are read again.
    pub fn new(config: Config, previous: Option<&State>) -> Result<State, String> {
        Ok(State {
            upstream: Upstream::new(&config),
            gate: crate::gate::Gate::new(&config, previous.map(|p| &p.gate))?,
            test_hooks: std::env::var("LLM_RELAY_TEST_HOOKS").is_ok_and(|v| v == "1"),
            config,
        })
    }
}

/// Binds, prints `listening on http://ADDR` as the first stdout line, and serves until a
/// drain (SIGTERM/SIGINT) is over. `config_path` is read again on SIGHUP.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
    config.ops.apply()?;
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
    let live = Arc::new(Live::new(State::new(config, None)?));
    let server = Arc::new(server);
    for i in 0..live.current().config.workers {
        let server = Arc::clone(&server);
        let live = Arc::clone(&live);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&server, &live))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
    }
    lifecycle::supervise(signals, &live, config_path);
    Ok(())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn worker(server: &Server, live: &Live) {
    loop {
        match server.recv() {
            Ok(req) => serve_one(&live.current(), req),
            Err(e) => {
                log::error(&format!("accepting a request failed: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn serve_one(state: &State, req: Request) {
    let _busy = metrics::busy();
    let started = Instant::now();
    let mut access = Access {
        method: req.method().to_string(),
        path: req.url().split('?').next().unwrap_or("").to_string(),
        ..Access::default()
    };
    if lifecycle::draining() && !lifecycle::is_probe(&access.path) {
        access.status = 503;
        access.bytes = respond_draining(req);
        access.duration = started.elapsed();
        log::access(&access);
        metrics::request_done(&access);
        return;
    }
    let mut slot = Some(req);
    let handled = catch_unwind(AssertUnwindSafe(|| {
        routes::handle(state, &mut slot, &mut access)
    }));
    if handled.is_err() {
        let err = ApiError::internal(
            "the relay hit an internal error while handling this request; it has been logged"
                .to_string(),
        );
        access.status = 500;
        if let Some(req) = slot.take() {
            access.bytes = respond_error(req, &err);
        }
    }
    access.duration = started.elapsed();
    log::access(&access);
    metrics::request_done(&access);
}

/// The answer to a new request during a drain. tiny_http drops a `Connection` header set on
/// a `Response`, so the answer is written on the raw connection to tell the client to close it.
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
pub fn respond_error(req: Request, err: &ApiError) -> u64 {
    let mut headers = vec![json_content_type()];
    if err.status == 413 || err.status == 408 {
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
