//! [`Exchange`]: one request and its answer. It owns the tiny_http `Request` until an answer
//! is sent, answers exactly once, and records itself exactly once: access line, metrics, and
//! the client key's usage (charged before its answer's last bytes: by [`Exchange::charge`]
//! where the pipeline knows the tokens, by [`Exchange::respond`] and [`Exchange::error`] before
//! they write, else when the exchange ends), and its trace's end when traces are on. Plain
//! responses (`respond`, JSON errors) live here too.
//!
//! Dropping an exchange that was never answered — a panic unwinding through a handler, or a
//! path that forgot to answer — sends a 500 JSON error; either way the request is logged.

use std::sync::Arc;
use std::time::Instant;

use tiny_http::Request;

use crate::answer::Usage;
use crate::auth::Client;
use crate::error::ApiError;
use crate::log::{self, Access};
use crate::metrics;
use crate::telemetry::Trace;

/// Charges a finished request to its key (built by the gate; see `Gate::meter`).
pub type Meter = Box<dyn FnOnce(&Access) + Send>;

/// Sees a finished request once, after it is charged (the dashboard's recorder, set by the
/// routes when `ui.enabled`; absent otherwise, so it costs nothing when off).
pub type Observer = Box<dyn FnOnce(&Access, Option<&Client>) + Send>;

/// One request on its way to its one answer.
pub struct Exchange {
    /// The request until it is answered (`None` afterwards).
    req: Option<Request>,
    /// What the access line, metrics and usage record; handlers fill it in.
    pub access: Access,
    started: Instant,
    /// The key the gate admitted (id, name, limits, allowed models; never the key).
    client: Option<Client>,
    /// Charges the request to that key, once.
    meter: Option<Meter>,
    /// The request's trace, when traces are exported; ended when the exchange is.
    trace: Option<Arc<Trace>>,
    /// Sees the finished request once (the dashboard).
    observer: Option<Observer>,
    /// Whose cached answers the request may share (`auth::principal`), decided once, after the
    /// gate.
    principal: String,
    /// Held for the exchange's life: the in-flight gauge (and the drain's wait) counts it.
    _in_flight: metrics::InFlight,
}

impl Exchange {
    pub fn new(req: Request) -> Exchange {
        Exchange {
            access: Access {
                // `as_str`, not `to_string`: the formatter costs ~600 instructions a request
                method: req.method().as_str().to_owned(),
                path: req.url().split('?').next().unwrap_or("").to_string(),
                ..Access::default()
            },
            req: Some(req),
            started: Instant::now(),
            client: None,
            meter: None,
            trace: None,
            observer: None,
            principal: String::new(),
            _in_flight: metrics::in_flight_guard(),
        }
    }

    /// The request, while it is not answered.
    pub fn request(&self) -> Option<&Request> {
        self.req.as_ref()
    }

    /// The request (to read its body), while it is not answered.
    pub fn request_mut(&mut self) -> Option<&mut Request> {
        self.req.as_mut()
    }

    /// True once an answer has been sent (or the request was handed to a raw writer).
    pub fn answered(&self) -> bool {
        self.req.is_none()
    }

    /// The gate admitted `client`: the request is charged to it by `meter`.
    pub fn admit(&mut self, client: Client, meter: Meter) {
        self.client = Some(client);
        self.meter = Some(meter);
    }

    /// Traces this request (see `telemetry`): the trace ends, with what `access` says, when the
    /// exchange does.
    pub fn set_trace(&mut self, trace: Trace) {
        self.trace = Some(Arc::new(trace));
    }

    /// The request's trace, if it is traced.
    pub fn trace(&self) -> Option<Arc<Trace>> {
        self.trace.clone()
    }

    /// `observer` sees the request once it is finished.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// True when an observer (the dashboard) will see this request: only then is it worth
    /// noting what only the observer reads (the cache key).
    pub fn observed(&self) -> bool {
        self.observer.is_some()
    }

    /// Sets whose cached answers the request may share (routing, once, after the gate).
    pub fn set_principal(&mut self, principal: String) {
        self.principal = principal;
    }

    /// Whose cached answers the request may share: `""` for none (see `auth::principal`).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The admitted client key, if any.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// Charges the request to its key now (once; later calls and the drop do nothing). Call
    /// it before the answer's last bytes once its tokens are known.
    pub fn charge(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter(&self.access);
        }
    }

    /// Sends a complete response (once; later calls do nothing), charged to its key first.
    pub fn respond(&mut self, status: u16, headers: &[(String, String)], body: Vec<u8>) {
        self.access.status = status;
        if let Some(req) = self.req.take() {
            // before the answer, so the client's next request (and the admin's stats) see it
            self.charge();
            self.access.bytes = respond(req, status, headers, body);
        }
    }

    /// Sends a JSON body.
    pub fn json(&mut self, status: u16, body: Vec<u8>) {
        self.respond(status, &[json_content_type()], body);
    }

    /// Sends an error in the shape of the request's API (OpenAI's, or Anthropic's on
    /// `/v1/messages…`).
    pub fn error(&mut self, err: &ApiError) {
        self.access.status = err.status;
        self.access.error_code = Some(err.code);
        let body = self.error_body(err);
        if let Some(req) = self.req.take() {
            self.charge();
            self.access.bytes = respond_error(req, err, body);
        }
    }

    /// The body of `err` in the shape of the request's API.
    pub fn error_body(&self, err: &ApiError) -> Vec<u8> {
        err.body_for(&self.access.path)
    }

    /// Answers by handing the request to `write` (a raw writer: SSE, a cache hit), which
    /// returns the status and body bytes it sent. Nothing happens if already answered.
    pub fn answer_with(&mut self, write: impl FnOnce(Request) -> (u16, u64)) {
        if let Some(req) = self.req.take() {
            (self.access.status, self.access.bytes) = write(req);
        }
    }
}

/// A request's charge taken out of its exchange ([`Charge::take`]) for a writer that learns
/// the tokens as its answer passes: made once, by [`Charge::now`] before the answer's last
/// bytes, or else when dropped (an answer cut short, or one its client left, still counts).
#[derive(Default)]
pub struct Charge {
    pending: Option<(Meter, Access)>,
}

impl Charge {
    /// Takes the exchange's meter, for an answer of `status` (nothing to charge if the
    /// request has no key, or was charged already).
    pub fn take(ex: &mut Exchange, status: u16) -> Charge {
        let pending = ex.meter.take().map(|meter| {
            let mut access = ex.access.clone();
            access.status = status;
            (meter, access)
        });
        Charge { pending }
    }

    /// Charges now (once): `usage`, priced as `sent_model` (empty: the model the exchange had).
    pub fn now(&mut self, usage: Usage, sent_model: &str) {
        if let Some((meter, mut access)) = self.pending.take() {
            access.usage = usage;
            if !sent_model.is_empty() {
                access.sent_model = sent_model.to_string();
            }
            meter(&access);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.now(Usage::default(), "");
    }
}

impl Drop for Exchange {
    /// Answers 500 if nothing was sent (a panic, or a path that forgot to answer; a panic after
    /// the answer began still counts as a 500), then records the request once.
    fn drop(&mut self) {
        if std::thread::panicking() || self.req.is_some() {
            let err = ApiError::internal(
                "the relay hit an internal error while handling this request; it has been logged"
                    .to_string(),
            );
            self.error(&err);
            self.access.status = 500;
        }
        self.access.duration = self.started.elapsed();
        self.charge();
        metrics::request_done(&self.access);
        if let Some(trace) = self.trace.take() {
            trace.finish(&self.access, self.client.as_ref().map(|c| c.name.as_str()));
        }
        if let Some(observe) = self.observer.take() {
            observe(&self.access, self.client.as_ref());
        }
        // last: a request's access line says that its metrics, span and dashboard row are in
        log::access(&self.access);
    }
}

/// Sends a complete response. Returns the body size.
pub fn respond<N: AsRef<str>, V: AsRef<str>, B: AsRef<[u8]> + Into<Vec<u8>>>(
    req: Request,
    status: u16,
    headers: &[(N, V)],
    body: B,
) -> u64 {
    let len = body.as_ref().len() as u64;
    // a header tiny_http cannot take (not ASCII) or that would split the head (CR, LF) is
    // left out
    let _ = req.respond_bytes(status, headers, body);
    len
}

/// Sends an error (`body`: `err` in the client API's shape). Returns the body size.
/// (A 408/413 leaves an unread body behind: tiny_http writes the answer first, then drains at
/// most 1 MiB or 1 s of the body and closes a connection left out of step.)
pub fn respond_error(req: Request, err: &ApiError, body: Vec<u8>) -> u64 {
    let mut headers = vec![json_content_type()];
    if let Some(allow) = err.allow {
        headers.push(("Allow".to_string(), allow.to_string()));
    }
    if let Some(secs) = err.retry_after {
        headers.push(("Retry-After".to_string(), secs.to_string()));
    }
    respond(req, err.status, &headers, body)
}

pub fn json_content_type() -> (String, String) {
    ("Content-Type".to_string(), "application/json".to_string())
}

/// The request's headers as (name, value) pairs.
pub fn request_headers(req: &Request) -> Vec<(String, String)> {
    // `as_str().to_owned()`, not `to_string()`: an `AsciiStr` formats through `Formatter::pad`
    req.headers()
        .iter()
        .map(|h| {
            let name = h.field.as_str().as_str().to_owned();
            (name, h.value.as_str().to_owned())
        })
        .collect()
}

/// The value of the request header `name` (case-insensitive), if present.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_owned())
}
