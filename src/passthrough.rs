//! Every other route under `/v1/` (files, batches, audio, images, moderations,
//! `GET /v1/models/{id}`, `GET/DELETE /v1/responses/{id}`, `/v1/messages/count_tokens`, ...):
//! passed to an endpoint unchanged and never cached.
//!
//! [`admit`] runs where the request was received (after the gate: key and rate limit): it
//! checks the headers and the announced body size and takes an in-flight permit. [`forward`]
//! runs on the `workers` pool: method, path, query and the forwardable headers go to an
//! endpoint that speaks the route's API, the body is streamed from the client as it arrives,
//! and the answer is streamed back with its status and headers, without ever holding either
//! body whole.
//!
//! An upstream never receives a cut body as complete: a body past `max_body_bytes`, slower
//! than `client_timeout_ms` or cut by the client fails the upstream client's read of it
//! ([`ClientBody`]), so the upstream request is aborted (no terminating chunk, or fewer bytes
//! than its `Content-Length`), and the client gets the 413 / 408 / 400 in its API's shape. That
//! failure is the client's and never counts against the endpoint. An event-stream answer is
//! relayed event by event, each flushed at its blank line, bytes unchanged ([`relay_events`]).

use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use tiny_http::{Header, Response, StatusCode};

use crate::api;
use crate::error::{ApiError, ClientFault};
use crate::exchange::{request_headers, Exchange};
use crate::intake::{self, Deadline};
use crate::sse;
use crate::sse_out::SseOut;
use crate::state::State;
use crate::upstream::{self, limit, Sent};

/// A pass-through request admitted to the `workers` pool.
pub struct Pass {
    _permit: limit::Permit,
}

/// The methods passed through (the upstream client sends no others).
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

/// Checks what can be checked before any upstream work, and takes an in-flight permit.
pub fn admit(state: &State, ex: &mut Exchange) -> Result<Option<Pass>, ApiError> {
    let Some(req) = ex.request() else {
        return Ok(None);
    };
    let method = req.method().as_str();
    if !METHODS.split(", ").any(|m| m == method) {
        return Err(ApiError::method_not_allowed(
            method,
            &ex.access.path,
            METHODS,
        ));
    }
    let max = state.config.max_body_bytes;
    if req.body_length().is_some_and(|n| n as u64 > max) {
        return Err(ApiError::too_large(max));
    }
    state.upstream.check_forwardable(&request_headers(req))?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Some(Pass { _permit: permit }))
}

/// Sends the request upstream and streams the answer back.
pub fn forward(state: &State, ex: &mut Exchange, _pass: Pass) -> Result<(), ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let url = req.url().to_string();
    let target = url.strip_prefix("/v1").unwrap_or(&url).to_string();
    let route = target.split('?').next().unwrap_or("");
    let api = api::of_route(route);
    let method = req.method().as_str().to_string();
    let headers = request_headers(req);
    let has_body = req.body_length().is_some_and(|n| n > 0)
        || headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    let budget = state.config.client_timeout;
    let max = state.config.max_body_bytes;
    let mut body = ClientBody {
        inner: Deadline::new(req.as_reader(), budget),
        max,
        read: 0,
        budget,
    };
    let reader: Option<&mut dyn Read> = if has_body { Some(&mut body) } else { None };
    let started = std::time::Instant::now();
    let sent = state
        .upstream
        .forward(api, &method, &target, &headers, reader)?;
    ex.access.upstream = sent.base.clone();
    ex.access.upstream_time = started.elapsed();
    let event_stream = method != "HEAD"
        && sent
            .response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if event_stream {
        answer_events(state, ex, api, sent);
    } else {
        answer_copy(ex, sent);
    }
    Ok(())
}

/// Answers with the upstream's answer as a streamed copy (tiny_http's buffered writer).
fn answer_copy(ex: &mut Exchange, sent: Sent) {
    let response = sent.response;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let headers: Vec<Header> = upstream::response_headers(response.headers())
        .into_iter()
        .filter_map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    let reader = Counted {
        inner: response.into_body().into_reader(),
        bytes: 0,
        total: std::sync::Arc::default(),
    };
    let total = std::sync::Arc::clone(&reader.total);
    ex.answer_with(|req| {
        let answer = Response::new(StatusCode(status), headers, reader, length, None);
        let _ = req.respond(answer);
        let bytes = total.load(std::sync::atomic::Ordering::Relaxed);
        (status, bytes)
    });
}

/// Answers with the upstream's event stream, its status and headers kept, each event flushed
/// as its blank line arrives. A stream the upstream breaks, or an event over `max_event_bytes`,
/// ends with the API's error event and a clean end (as the relay's own streams do: the client is
/// told rather than left waiting, and the endpoint counts a failure).
fn answer_events(state: &State, ex: &mut Exchange, api: api::Api, sent: Sent) {
    let status = sent.response.status().as_u16();
    let head = upstream::response_headers(sent.response.headers());
    let body = sent.response.into_body().into_reader();
    let (base, endpoint) = (sent.base, sent.endpoint);
    ex.answer_with(|req| {
        let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let Ok(mut out) = SseOut::start_as(req.into_writer(), http11, status, &head) else {
            return (status, 0); // the client left before the head was written
        };
        let mut reader = BufReader::with_capacity(16 * 1024, body);
        let max = state.config.max_event_bytes;
        let cut = match relay_events(&mut reader, &mut out, max) {
            Relayed::Ended => None,
            Relayed::ClientGone => return (status, out.bytes),
            Relayed::TooLarge => Some(sse::oversized(max)),
            Relayed::Broken(e) => Some(e.to_string()),
        };
        if let Some(why) = cut {
            state.upstream.stream_failed(&endpoint);
            let message = format!("upstream {base} broke the stream: {why}");
            crate::log::warn(&message);
            let _ = out.write(&api::cut_event(api, &message));
        }
        let bytes = out.bytes;
        let _ = out.finish();
        (status, bytes)
    });
}

/// Counts the bytes read through it (the access log's size of a streamed answer).
struct Counted<R> {
    inner: R,
    bytes: u64,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.total
            .store(self.bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// The client's request body as the upstream client reads it: at most `max` bytes, all within
/// the `client_timeout_ms` budget. It never ends early: past `max`, too slow, or cut by the
/// client, a read fails with the client's [`ApiError`] inside ([`ClientFault`]), so the upstream
/// client aborts the request instead of ending it as complete.
struct ClientBody<R> {
    inner: Deadline<R>,
    max: u64,
    read: u64,
    budget: Duration,
}

impl<R: Read> Read for ClientBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| ClientFault::io(intake::body_error(&e, self.budget)))?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(ClientFault::io(ApiError::too_large(self.max)));
        }
        Ok(n)
    }
}

/// How [`relay_events`] ended.
#[derive(Debug)]
enum Relayed {
    /// The upstream ended its answer (a last unterminated event went out as it was).
    Ended,
    /// The upstream sent an event over `max_event_bytes`; it did not go out, and the upstream
    /// was read no further.
    TooLarge,
    /// Reading the upstream failed (reset, timed out).
    Broken(io::Error),
    /// Writing to the client failed.
    ClientGone,
}

/// Copies an event stream from `upstream` to `out` unchanged, writing and flushing each event
/// when its blank line arrives; an event (its lines and blank line) holds at most `max` bytes in
/// memory.
fn relay_events(upstream: &mut dyn BufRead, out: &mut SseOut, max: usize) -> Relayed {
    let mut event = Vec::with_capacity(1024);
    loop {
        let start = event.len();
        // one byte more than the event may still take tells an oversized event from a full one
        let room = (max.saturating_sub(start) as u64).saturating_add(1);
        match Read::take(&mut *upstream, room).read_until(b'\n', &mut event) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Relayed::Broken(e),
        }
        if event.len() > max {
            return Relayed::TooLarge;
        }
        if sse::is_blank(event.get(start..).unwrap_or_default()) {
            if out.write(&event).and_then(|()| out.flush()).is_err() {
                return Relayed::ClientGone;
            }
            event.clear();
        }
    }
    match out.write(&event).and_then(|()| out.flush()) {
        Ok(()) => Relayed::Ended,
        Err(_) => Relayed::ClientGone,
    }
}
