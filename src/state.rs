//! [`State`]: everything a request needs, shared read-only and replaced whole by a reload.

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::dashboard::Dashboard;
use crate::gate::Gate;
use crate::log;
use crate::telemetry::Tracer;
use crate::upstream::Upstream;

/// Everything a request needs, shared read-only; replaced whole by a reload.
pub struct State {
    pub config: Config,
    pub upstream: Upstream,
    /// Client keys, rate limits and usage.
    pub gate: Gate,
    /// The response cache, if `cache.enabled`. Opened once: a reload keeps it.
    pub cache: Option<Arc<Cache>>,
    /// The trace exporter, if `telemetry.otlp_endpoint` is set. A reload keeps it unless the
    /// `telemetry` section changed.
    pub telemetry: Option<Arc<Tracer>>,
    /// The dashboard's figures, if `ui.enabled`. Kept by a reload that keeps it on.
    pub ui: Option<Arc<Dashboard>>,
    /// `LLM_RELAY_TEST_HOOKS=1`: enables `/__test/*` routes used by the integration tests.
    pub test_hooks: bool,
}

impl State {
    /// The limits a body read whole is held to.
    pub fn body_limits(&self) -> crate::intake::BodyLimits {
        crate::intake::BodyLimits {
            max: self.config.max_body_bytes,
            budget: self.config.client_timeout,
            in_flight: self.config.max_body_bytes_in_flight,
        }
    }

    /// Builds the running state from `config`. On a reload, `previous` is the state being
    /// replaced: the cache, rate-limit windows and usage figures carry over, keys are read
    /// again (a changed `cache` section takes effect after a restart).
    pub fn new(config: Config, previous: Option<&State>) -> Result<State, String> {
        let gate = Gate::new(&config, previous.map(|p| &p.gate))?;
        let cache = match previous {
            Some(p) => {
                if p.config.cache != config.cache {
                    log::warn("the `cache` section changed; it takes effect only after a restart");
                }
                p.cache.clone()
            }
            None => Cache::open(&config.cache, gate.store.redis().cloned())?,
        };
        let telemetry = match (
            previous.and_then(|p| p.telemetry.as_ref()),
            &config.telemetry,
        ) {
            (_, None) => None,
            (Some(running), Some(c)) if running.config == *c => Some(Arc::clone(running)),
            (_, Some(c)) => Some(Tracer::start(c.clone())?),
        };
        let ui = Dashboard::open(config.ui, previous.and_then(|p| p.ui.as_ref()));
        if let (Some(_), Some(cache)) = (&ui, &cache) {
            // the index keeps request texts for the cache page's search from now on
            cache.index(config.ui.cache_index_bytes);
        }
        Ok(State {
            telemetry,
            ui,
            upstream: Upstream::new(
                &config.upstreams,
                config.timeouts,
                config.forward_auth,
                config.workers,
            ),
            gate,
            cache,
            test_hooks: std::env::var("LLM_RELAY_TEST_HOOKS").is_ok_and(|v| v == "1"),
            config,
        })
    }
}
