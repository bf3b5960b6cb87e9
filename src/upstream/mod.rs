//! The upstream client: one pooled `ureq` agent per endpoint (and for whole answers and streams
//! over plain HTTP without a proxy, the leaner `direct` client and `direct_stream`), sending
//! with failover, and the mapping of transport failures to 502/504 (`failure`).
//!
//! Upstream status codes are never errors here (`http_status_as_error(false)`): a 400 from the
//! provider is a response like any other and passes through to the client unchanged. Only
//! transport failures (refused, reset, DNS, TLS, timeouts) become [`ApiError`]s, and each names
//! the upstream it was talking to. Each endpoint's agent is built in `agent`. The endpoint
//! list and its config are in [`endpoints`], the choice and passive health in [`balance`], the
//! failover loop in `retry`, the in-flight limit in [`limit`], the idle bound after the
//! response head in `idle` (over the buffers ureq works in, `slim`), reading whole answers
//! within their bounds in `whole`, which headers go upstream and come back in `headers`, and
//! host names looked up once per 30 s, not before every request, in `resolve`.
//!
//! No upstream read waits longer than `idle_timeout_ms` once the response head is in, and no
//! write of a request (head or body) waits longer either. A whole (non-streamed) answer is read
//! inside the failover loop, so an upstream that sends its head and then goes silent counts as
//! a failed attempt and the next endpoint is tried.

mod agent;
pub mod balance;
mod direct;
mod direct_head;
mod direct_stream;
pub mod endpoints;
mod entry;
mod failure;
mod framing;
mod headers;
mod idle;
pub mod limit;
mod resolve;
mod retry;
mod slim;
mod steady;
mod tcp;
pub mod thinking;
mod via_ureq;
mod whole;

pub use headers::response_headers;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use ureq::http::Response;
use ureq::Body;

use crate::body_cost::Reservation;
pub use crate::client_headers::ClientHeaders;
use crate::error::ApiError;
use crate::telemetry::Trace;
use balance::{Health, HealthReport};
use endpoints::{Api, EndpointConfig, Settings};
use limit::Limiter;

use agent::agent;
pub use failure::{is_timeout, transport_error};

/// The API routes requests are POSTed to ([`Upstream::post`]): their URIs on each endpoint are
/// parsed once (ureq parses a URL given as text on every request: ~2,000 instructions a miss
/// with its formatting).
const POSTED: [&str; 5] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
];

/// One endpoint: its config, the agent that talks to it, its health and counters.
#[derive(Debug)]
pub struct Endpoint {
    pub config: EndpointConfig,
    pub health: Health,
    /// `config.url` and `config.name`, shared by every answer that names them.
    base: Arc<str>,
    name: Arc<str>,
    agent: ureq::Agent,
    /// `Bearer {key}`, the `authorization` value of its key (formatted once).
    bearer: Option<String>,
    /// Whole answers and streams in plain HTTP without a proxy go through this instead of
    /// `agent`.
    direct: Option<direct::Direct>,
    /// The URIs of the [`POSTED`] routes on this endpoint.
    posted: Vec<(&'static str, ureq::http::Uri)>,
}

/// All endpoints and the failover policy.
#[derive(Debug)]
pub struct Upstream {
    endpoints: Vec<Endpoint>,
    settings: endpoints::Settings,
    retries: u32,
    fail_threshold: u32,
    cooldown: std::time::Duration,
    forward_auth: bool,
    timeouts: Timeouts,
    /// `max_concurrent_requests`; hold a permit around each upstream call.
    pub limiter: Limiter,
    /// Pass-through uploads streamed from the client: at most half of the workers.
    pub uploads: Limiter,
}

/// A response from the endpoint that answered.
pub struct Sent {
    pub response: Response<Body>,
    /// Base URL of the endpoint that answered (for logs and error messages).
    pub base: Arc<str>,
    /// Name of the endpoint that answered.
    pub endpoint: Arc<str>,
    /// A whole answer's share of `max_response_bytes_in_flight`, held while the caller has it.
    pub _held: Option<Reservation>,
    /// A whole answer's bytes, read by [`post`](Upstream::post) (`response`'s body is then
    /// empty): take them with [`Upstream::whole_bytes`].
    pub whole: Option<Vec<u8>>,
}

/// What one attempt got: the response head, and for a whole answer `post` read already, its
/// bytes and their share of the bytes in flight (the response's body is then empty).
pub struct Reply {
    response: Response<Body>,
    whole: Option<(Vec<u8>, Reservation)>,
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Reply {
        Reply {
            response,
            whole: None,
        }
    }
}

impl Reply {
    /// `data` as the answer of `parts` (an empty body: the bytes travel beside it).
    fn whole(parts: ureq::http::response::Parts, data: Vec<u8>, held: Reservation) -> Reply {
        Reply {
            response: Response::from_parts(parts, Body::builder().data(Vec::new())),
            whole: Some((data, held)),
        }
    }
}

/// Which timeout profile a call uses.
/// Upstream timeouts. See README for how they combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    /// How long an idle upstream connection stays in the pool for the next request
    /// (`upstream_keepalive_ms`). ureq's own default, 15 s, made the first turn after every
    /// longer pause pay a new TCP and TLS handshake, though providers behind Cloudflare keep an
    /// idle HTTP/1.1 connection 400 s; a connection the upstream closed sooner is seen by the
    /// pool's probe when it is taken out, and not used.
    pub keepalive: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A whole answer arrives at once, possibly after minutes: no per-read limit on the head;
    /// its body is read within the failover loop, each read within the idle timeout.
    Whole,
    /// A stream: every read (the response head included) must arrive within the idle timeout.
    Stream,
}

impl Upstream {
    /// The endpoints of `s` with one agent each; `forward_auth` passes the client's
    /// `Authorization` upstream; `workers` sizes the connection pools.
    pub fn new(s: &Settings, timeouts: Timeouts, forward_auth: bool, workers: usize) -> Upstream {
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| Endpoint {
                agent: agent(s, timeouts, workers, e),
                direct: direct::Direct::of(s, e, timeouts, workers),
                bearer: e.key.as_ref().map(|k| format!("Bearer {k}")),
                base: Arc::from(e.url.as_str()),
                name: Arc::from(e.name.as_str()),
                config: e.clone(),
                health: Health::default(),
                posted: POSTED
                    .iter()
                    .filter_map(|path| Some((*path, format!("{}{path}", e.url).parse().ok()?)))
                    .collect(),
            })
            .collect();
        Upstream {
            endpoints,
            settings: s.clone(),
            retries: s.retries,
            fail_threshold: s.fail_threshold,
            cooldown: s.cooldown,
            forward_auth,
            timeouts,
            limiter: Limiter::new(s.max_concurrent),
            uploads: Limiter::uploads(workers),
        }
    }

    /// The effective models a request for `model` may be sent as (see
    /// [`endpoints::Settings::effective_models`]).
    pub fn effective_models(&self, api: endpoints::Api, model: &str) -> Vec<(String, bool)> {
        self.settings.effective_models(api, model)
    }

    /// The model the endpoint `name` is sent for a request for `model`.
    pub fn effective_model<'a>(&'a self, name: &str, model: &'a str) -> &'a str {
        self.endpoints
            .iter()
            .find(|e| e.config.name == name)
            .and_then(|e| e.config.model.as_deref())
            .unwrap_or(model)
    }

    /// The health of every endpoint, in config order (for `/ready` and metrics).
    pub fn health(&self) -> Vec<HealthReport> {
        self.endpoints
            .iter()
            .map(|e| e.health.report(&e.config.name, &e.config.url))
            .collect()
    }

    /// Records a failure of the endpoint `name` noticed after its response head, e.g. a stream
    /// cut short or gone silent (the client already had bytes, so nothing is retried).
    pub fn stream_failed(&self, name: &str) {
        if let Some(ep) = self.endpoints.iter().find(|e| e.config.name == name) {
            self.failed(ep, None);
        }
    }

    /// Records a failed attempt on `ep`, logging when it starts a cooldown.
    fn failed(&self, ep: &Endpoint, retry_after: Option<std::time::Duration>) {
        crate::metrics::upstream_error(&ep.config.name);
        let started = ep
            .health
            .failure(self.fail_threshold, self.cooldown, retry_after);
        if let Some(d) = started {
            crate::log::warn(&format!(
                "upstream {} is cooling down for {} ms after failing (skipped unless nothing \
                 else serves a request)",
                ep.config.name,
                d.as_millis()
            ));
        }
    }

    /// POSTs the request `body` to `{base}{path}` of an endpoint that serves `model`, failing
    /// over to others on connect errors, timeouts before the response head and 429/5xx.
    /// `headers` are the client's request headers; the forwardable ones go along. Only
    /// endpoints that speak the client's `api` are tried. Each attempt is a span of `trace`.
    #[allow(clippy::too_many_arguments)] // each is a different part of one call
    pub fn post(
        &self,
        api: Api,
        path: &str,
        headers: ClientHeaders<'_>,
        body: &Map<String, Value>,
        model: &str,
        mode: Mode,
        trace: Option<&Trace>,
    ) -> Result<Sent, ApiError> {
        // sized for a typical request at once (serde_json's own start, 128 bytes, grows twice)
        let mut shared = Vec::with_capacity(1024);
        serde_json::to_writer(&mut shared, body)
            .map_err(|e| ApiError::internal(format!("cannot serialize the request: {e}")))?;
        retry::send(self, model, Some(api), trace, &mut |ep, traceparent| {
            // the endpoint's own model and thinking, out of the cache key
            let mut own: Option<Map<String, Value>> = None;
            if let Some(m) = &ep.config.model {
                own.get_or_insert_with(|| body.clone())
                    .insert("model".to_string(), Value::String(m.clone()));
            }
            if path == "/chat/completions" {
                let c = &ep.config;
                thinking::apply(c.thinking, c.reasoning_content, body, &mut own);
            }
            // the shared bytes as they are unless this endpoint changes them (no copy a try)
            let changed = own.and_then(|own| serde_json::to_vec(&own).ok());
            let payload = changed.as_deref().unwrap_or(&shared);
            self.post_one(ep, path, headers, traceparent, payload, mode)
        })
    }

    /// Sends a request as the client sent it (`method`, `target` = path below `/v1` and query)
    /// to an endpoint that speaks `api`. `headers` are the client's; its `Content-Type` and
    /// `Content-Length` go along too. With a `body`, the one endpoint chosen gets it streamed
    /// from the client (it cannot be sent twice, so there is no failover); without one, failover
    /// works as for [`post`](Upstream::post).
    pub fn forward(
        &self,
        api: Api,
        method: &str,
        target: &str,
        headers: ClientHeaders<'_>,
        mut body: Option<&mut dyn std::io::Read>,
        trace: Option<&Trace>,
    ) -> Result<Sent, ApiError> {
        let entity: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case("content-type") || n.eq_ignore_ascii_case("content-length")
            })
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let once = body.is_some();
        retry::send_limited(self, "", Some(api), once, trace, &mut |ep, traceparent| {
            let url = format!("{}{target}", ep.config.url);
            let mut req = ureq::http::Request::builder().method(method).uri(&url);
            let outgoing = self.outgoing_headers(ep, headers, traceparent);
            for (name, value) in outgoing.iter().chain(&entity) {
                req = req.header(name.as_str(), value.as_str());
            }
            match body.take() {
                Some(reader) => {
                    let req = req.body(ureq::SendBody::from_reader(reader))?;
                    ep.agent.run(req).map(Reply::from)
                }
                None => ep.agent.run(req.body(())?).map(Reply::from),
            }
        })
    }

    fn post_one(
        &self,
        ep: &Endpoint,
        path: &str,
        headers: ClientHeaders<'_>,
        traceparent: Option<&str>,
        body: &[u8],
        mode: Mode,
    ) -> Result<Reply, ureq::Error> {
        if let Some((direct, target)) = self.direct_target(ep, path) {
            return match mode {
                Mode::Whole => self.post_direct(ep, direct, target, headers, traceparent, body),
                Mode::Stream => self
                    .post_direct_stream(ep, direct, target, (headers, traceparent), body)
                    .map(Reply::from),
            };
        }
        if mode == Mode::Stream {
            // A stream holds its worker for its whole length: ureq's call (connect, TLS, send,
            // the response head: its deepest frames, ~40 KB of stack) runs on a short-lived
            // thread, so the worker's stack stays shallow while it relays. The direct client's
            // frames are shallow: its streams run on the worker's stack, with no thread
            // started (BENCHMARKS.md, "Ceilings beside the targets that stay missed").
            return via_ureq::on_fresh_stack(&|| {
                self.post_ureq(ep, path, headers, traceparent, body, mode)
            });
        }
        self.post_ureq(ep, path, headers, traceparent, body, mode)
    }

    /// The bytes of a whole answer: those [`post`](Upstream::post) read already, else its body
    /// read now within `max_response_bytes`.
    pub fn whole_bytes(&self, sent: &mut Sent) -> Result<Vec<u8>, ApiError> {
        if let Some(data) = sent.whole.take() {
            return Ok(data);
        }
        let body = std::mem::replace(sent.response.body_mut(), Body::builder().data(Vec::new()));
        self.read_body(&sent.base, body)
    }

    /// GETs `{base}{path}` of any endpoint with its credentials (failing over like [`post`]).
    ///
    /// [`post`]: Upstream::post
    pub fn get(
        &self,
        path: &str,
        client_auth: Option<&str>,
        trace: Option<&Trace>,
    ) -> Result<Sent, ApiError> {
        let client: Vec<(String, String)> = client_auth
            .map(|a| ("authorization".to_string(), a.to_string()))
            .into_iter()
            .collect();
        retry::send(self, "", Some(Api::Chat), trace, &mut |ep, traceparent| {
            let url = format!("{}{}", ep.config.url, path);
            let mut req = ep.agent.get(&url);
            for (name, value) in self.outgoing_headers(ep, ClientHeaders::none(), traceparent) {
                req = req.header(name, value);
            }
            if self.forward_auth {
                for (name, value) in &client {
                    req = req.header(name.as_str(), value.as_str());
                }
            }
            req.call().map(Reply::from)
        })
    }
}
