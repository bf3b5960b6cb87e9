//! The process lifecycle: readiness, graceful drain on SIGTERM/SIGINT, and config reload on
//! SIGHUP.
//!
//! The running state sits in [`Live`], an `RwLock<Arc<State>>` that each request reads once:
//! a reload builds a complete new [`State`] (config, upstream client, rules) and swaps it in,
//! so a request never sees half of an old config and half of a new one, and requests already
//! running finish with the state they started with. Signals are received on the main thread
//! through `signal-hook`'s iterator (no handler code runs in signal context).
//!
//! Draining: the listening socket closes at once (new connections are refused, so a load
//! balancer moves on), `/ready` answers 503 on connections already open, every new request on
//! them except the probes is answered 503 with `Connection: close`, and [`supervise`] returns
//! once no request is in flight (and no connection is open, for at most a second) or
//! `shutdown_timeout_s` has passed; `main` then exits 0.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tiny_http::Server;

use crate::config::Config;
use crate::state::State;
use crate::upstream::balance::HealthReport;
use crate::{log, metrics};

static DRAINING: AtomicBool = AtomicBool::new(false);

/// How long a drain with nothing in flight still waits for requests on connections accepted
/// before the listener closed (a request sent just before SIGTERM is answered, not reset).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The swappable running state.
pub struct Live {
    current: RwLock<Arc<State>>,
}

impl Live {
    pub fn new(state: State) -> Live {
        Live {
            current: RwLock::new(Arc::new(state)),
        }
    }

    /// The state a request runs with, from start to end.
    pub fn current(&self) -> Arc<State> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
    }

    fn replace(&self, state: State) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(state);
    }
}

/// True once a drain has begun.
pub fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

/// Paths that keep answering during a drain: load balancers and scrapers need them.
pub fn is_probe(path: &str) -> bool {
    matches!(
        metrics::route_label(path),
        "/health" | "/ready" | "/metrics"
    )
}

/// `GET /ready`: status and JSON body saying why. Not ready while draining, or while every
/// upstream endpoint is cooling down after failures (cooldowns end by the clock, so readiness
/// comes back without traffic), or while the shared state (`state.redis`; `shared` is whether it
/// answers and the `on_unavailable` policy) is down and requests are refused for it. The body
/// lists each endpoint's state and the shared state's.
pub fn readiness(
    upstreams: &[HealthReport],
    shared: Option<(bool, crate::store::OnUnavailable)>,
) -> (u16, Vec<u8>) {
    let endpoints: Vec<_> = upstreams
        .iter()
        .map(|h| {
            serde_json::json!({
                "name": h.name,
                "url": h.url,
                "healthy": h.healthy,
                "consecutive_failures": h.consecutive_failures,
                "cooling_down_ms": h.cooling_down_for.map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    let (status, state, reason) = if draining() {
        (
            503,
            "draining",
            "the relay is shutting down and finishing in-flight requests",
        )
    } else if !upstreams.is_empty() && upstreams.iter().all(|h| !h.healthy) {
        (
            503,
            "unavailable",
            "every upstream endpoint is cooling down after failures",
        )
    } else if shared == Some((false, crate::store::OnUnavailable::Refuse)) {
        (
            503,
            "unavailable",
            "the shared state (state.redis) cannot be reached and on_unavailable is refuse",
        )
    } else {
        (200, "ready", "serving")
    };
    let mut body = serde_json::json!({"status": state, "reason": reason, "upstreams": endpoints});
    if let (Some((up, policy)), Some(o)) = (shared, body.as_object_mut()) {
        let shared =
            serde_json::json!({"backend": "redis", "available": up, "on_unavailable": policy});
        o.insert("state".to_string(), shared);
    }
    (status, body.to_string().into_bytes())
}

/// Registers the signals. Call before announcing the listening address, so a signal sent
/// right after start-up is never handled by the default action (which would kill the process).
pub fn install_signals() -> Result<Signals, String> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))
}

/// Runs on the main thread until a drain has finished: reloads on SIGHUP, drains on SIGTERM
/// or SIGINT. A second SIGTERM/SIGINT during the drain stops waiting.
pub fn supervise(mut signals: Signals, live: &Live, config_path: &Path, server: &Server) {
    let mut signal = None;
    for sig in signals.forever() {
        if sig == SIGHUP {
            reload(live, config_path);
        } else {
            signal = Some(sig);
            break;
        }
    }
    DRAINING.store(true, Ordering::SeqCst);
    // New connections are refused from now on (a load balancer moves on at once); those
    // already accepted are served: their new requests get 503 `shutting_down`.
    server.close_listener();
    let timeout = live.current().config.ops.shutdown_timeout;
    log::info(&format!(
        "received {}: draining, {} requests in flight, waiting up to {} s",
        signal_name(signal.unwrap_or(SIGTERM)),
        metrics::in_flight(),
        timeout.as_secs()
    ));
    let deadline = Instant::now() + timeout;
    let grace = Instant::now() + DRAIN_GRACE;
    let mut idle_checks = 0;
    loop {
        let connected = server.num_connections() > 0 && Instant::now() < grace;
        if metrics::in_flight() == 0 && !connected {
            // twice in a row, 50 ms apart: a request picked up just now gets counted
            idle_checks += 1;
            if idle_checks >= 2 {
                log::info("drained: no requests in flight; exiting");
                return;
            }
        } else {
            idle_checks = 0;
        }
        if Instant::now() >= deadline {
            log::warn(&format!(
                "shutdown_timeout_s ({} s) reached with {} requests in flight; exiting anyway",
                timeout.as_secs(),
                metrics::in_flight()
            ));
            return;
        }
        for sig in signals.pending() {
            if sig != SIGHUP {
                log::warn(&format!(
                    "received {} again: exiting with {} requests in flight",
                    signal_name(sig),
                    metrics::in_flight()
                ));
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads the config file again and swaps it in; a config that does not load leaves the running
/// one in place.
fn reload(live: &Live, path: &Path) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error(&format!(
                "config reload failed, keeping the running config: {e}"
            ));
            return;
        }
    };
    let old = live.current();
    if let Err(e) = config.ops.apply() {
        log::error(&format!(
            "config reload failed, keeping the running config: {}: {e}",
            path.display()
        ));
        let _ = old.config.ops.apply();
        return;
    }
    for w in &config.warnings {
        log::warn(w);
    }
    for (what, changed) in [
        ("listen", config.listen != old.config.listen),
        ("workers", config.workers != old.config.workers),
    ] {
        if changed {
            log::warn(&format!(
                "`{what}` changed in {}; it takes effect only after a restart",
                path.display()
            ));
        }
    }
    let state = match State::new(config, Some(&old)) {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!(
                "config reload failed, keeping the running config: {}: {e}",
                path.display()
            ));
            let _ = old.config.ops.apply();
            return;
        }
    };
    live.replace(state);
    log::info(&format!("config reloaded from {}", path.display()));
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
