//! Every other route under `/v1/` (files, batches, audio, images, moderations,
//! `GET /v1/models/{id}`, `GET/DELETE /v1/responses/{id}`, ...): passed to an endpoint
//! unchanged and never cached. `count_tokens` comes here for an `anthropic` endpoint with its
//! body read already ([`admit_read`]): that copy goes upstream.
//!
//! [`admit`] runs where the request was received (after the gate: key and rate limit): it
//! checks the headers and the announced body size and takes an in-flight permit. [`forward`]
//! runs on the `workers` pool: method, path, query and the forwardable headers go to an
//! endpoint that speaks the route's API, the body is streamed from the client as it arrives,
//! and the answer is streamed back with its status and headers, without ever holding either
//! body whole.
//!
//! With a key's `models` allow-list, the model of `GET /v1/models/{id}` and the `model` a body
//! names are checked too (403
//! `model_not_allowed`, as on the pipeline's routes): a multipart upload's `model` part as it
//! streams past ([`body_model::Multipart`]; a refused upload fails the upstream client's read,
//! so the upstream request is aborted, never completed), any other body read whole first
//! (bounded by `max_body_bytes`, its cost held in `max_body_bytes_in_flight`) and sent as read:
//! the one exception to never holding a body whole.
//!
//! An upstream never receives a cut body as complete: a body past `max_body_bytes`, slower
//! than `client_timeout_ms` or cut by the client fails the upstream client's read of it
//! ([`ClientBody`]), so the upstream request is aborted (no terminating chunk, or fewer bytes
//! than its `Content-Length`), and the client gets the 413 / 408 / 400 in its API's shape. That
//! failure is the client's and never counts against the endpoint. An event-stream answer is
//! relayed event by event, each flushed at its blank line, bytes unchanged ([`relay_events`]).
//!
//! Once the head is in, an upstream silent for `idle_timeout_ms` (or one that breaks) counts a
//! failure against the endpoint: an event stream then ends with the API's error event, any
//! other answer is cut — the client's connection closes with fewer bytes than its
//! `Content-Length`, or without the terminating chunk ([`answer_copy`]), never a clean end.

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::time::Duration;

use crate::api;
use crate::body_cost::{self, Reservation};
use crate::body_model::{self, Multipart};
use crate::budget;
use crate::error::{ApiError, ClientFault};
use crate::exchange::{request_headers, Exchange};
use crate::glob::Glob;
use crate::intake::{self, Deadline};
use crate::sse;
use crate::sse_out::{Conn, SseOut};
use crate::state::State;
use crate::upstream::{self, limit, Sent};

/// A pass-through request admitted to the `workers` pool.
pub struct Pass {
    _permit: limit::Permit,
    /// The body, read whole to check its `model` against the key's allow-list; sent as read.
    body: Option<Vec<u8>>,
    /// That body's share of `max_body_bytes_in_flight` until the call is done.
    _reserved: Option<Reservation>,
    /// A multipart upload's `model` parts are checked against this allow-list as they stream.
    multipart: Option<Guard>,
}

/// The `model` parts of a streamed multipart upload, checked against a key's allow-list.
struct Guard {
    parts: Multipart,
    allowed: Vec<Glob>,
}

impl Guard {
    /// Takes the next bytes of the upload; `Err` (403, or 400 for a malformed body) once a
    /// `model` part names a model outside the allow-list.
    fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        for model in self.parts.feed(data)? {
            if !budget::model_allowed(&self.allowed, &model) {
                return Err(budget::not_allowed(&model));
            }
        }
        Ok(())
    }
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
    let headers = request_headers(req);
    state.upstream.check_forwardable(&headers)?;
    let (mut body, mut reserved, mut multipart) = (None, None, None);
    // a key with an allow-list: the model its path or body names must be on it
    let allowed = ex.client().map(|c| c.models.clone()).unwrap_or_default();
    if let Some(id) = crate::util::api_route(&ex.access.path).strip_prefix("/models/") {
        state.gate.allow_model(ex.client(), id)?;
    }
    if !allowed.is_empty() && has_body(req, &headers) {
        let content_type = header(&headers, "content-type").unwrap_or_default();
        match body_model::multipart_boundary(content_type)? {
            Some(boundary) => {
                multipart = Some(Guard {
                    parts: Multipart::new(&boundary),
                    allowed,
                })
            }
            None => {
                let (raw, held) = read_whole(state, ex)?;
                if let Some(model) = body_model::json_model(&raw)? {
                    state.gate.allow_model(ex.client(), &model)?;
                }
                (body, reserved) = (Some(raw), Some(held));
            }
        }
    }
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Some(Pass {
        _permit: permit,
        body,
        _reserved: reserved,
        multipart,
    }))
}

/// For a request whose `body` the relay read already (`count_tokens`, to find its model, which
/// it checked against the key's allow-list): that copy goes upstream, its share of
/// `max_body_bytes_in_flight` held until the call is done.
pub fn admit_read(
    state: &State,
    ex: &mut Exchange,
    body: Vec<u8>,
    reserved: Reservation,
) -> Result<Option<Pass>, ApiError> {
    let Some(req) = ex.request() else {
        return Ok(None);
    };
    state.upstream.check_forwardable(&request_headers(req))?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Some(Pass {
        _permit: permit,
        body: Some(body),
        _reserved: Some(reserved),
        multipart: None,
    }))
}

/// Whether the request has a body: a positive `Content-Length`, or chunked.
fn has_body(req: &tiny_http::Request, headers: &[(String, String)]) -> bool {
    req.body_length().is_some_and(|n| n > 0) || header(headers, "transfer-encoding").is_some()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the request's body whole (≤ `max_body_bytes`, within `client_timeout_ms`), its
/// estimated cost held in `max_body_bytes_in_flight`.
fn read_whole(state: &State, ex: &mut Exchange) -> Result<(Vec<u8>, Reservation), ApiError> {
    let mut reserved = Reservation::new(state.config.max_body_bytes_in_flight);
    let Some(req) = ex.request_mut() else {
        return Ok((Vec::new(), reserved));
    };
    let raw = intake::read_body(
        req,
        state.config.max_body_bytes,
        state.config.client_timeout,
        &mut reserved,
    )?;
    reserved.grow_to(body_cost::check_density(&raw)?)?;
    Ok((raw, reserved))
}

/// Sends the request upstream and streams the answer back.
pub fn forward(state: &State, ex: &mut Exchange, pass: Pass) -> Result<(), ApiError> {
    let trace = ex.trace();
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let url = req.url().to_string();
    let target = url.strip_prefix("/v1").unwrap_or(&url).to_string();
    let route = target.split('?').next().unwrap_or("");
    let api = api::of_route(route);
    let method = req.method().as_str().to_string();
    let headers = request_headers(req);
    let has_body = has_body(req, &headers);
    let budget = state.config.client_timeout;
    let max = state.config.max_body_bytes;
    let mut read = Cursor::new(pass.body.unwrap_or_default());
    let mut body = ClientBody {
        inner: Deadline::new(req.as_reader(), budget),
        max,
        read: 0,
        budget,
        guard: pass.multipart,
    };
    let reader: Option<&mut dyn Read> = match (read.get_ref().is_empty(), has_body) {
        (false, _) => Some(&mut read),
        (true, true) => Some(&mut body),
        (true, false) => None,
    };
    let started = std::time::Instant::now();
    let sent = state
        .upstream
        .forward(api, &method, &target, &headers, reader, trace.as_deref())?;
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
        answer_copy(state, ex, sent);
    }
    Ok(())
}

/// Answers with the upstream's answer as a streamed copy, its status and headers kept, framed
/// as the upstream framed it (its `Content-Length`, else chunked). An upstream that breaks or
/// goes silent mid-body (`idle_timeout_ms`) counts a failure against the endpoint, and the
/// client's connection is closed with the answer cut (fewer bytes than announced, or no
/// terminating chunk): the head is out, and a clean end would pass the cut body off as whole.
fn answer_copy(state: &State, ex: &mut Exchange, sent: Sent) {
    let response = sent.response;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let headers = upstream::response_headers(response.headers());
    let mut body = response.into_body().into_reader();
    let (base, endpoint) = (sent.base, sent.endpoint);
    ex.answer_with(|req| {
        let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let bodiless = req.method() == &tiny_http::Method::Head || matches!(status, 204 | 304);
        let framing = match (bodiless, length) {
            (true, _) => Framing::None,
            (false, Some(n)) => Framing::Length(n),
            (false, None) if http11 => Framing::Chunked,
            (false, None) => Framing::Close,
        };
        let (mut out, completion) = req.into_writer_or_close();
        let head = copy_head(http11, status, &headers, framing, length);
        if out.write_all(head.as_bytes()).is_err() {
            return (status, 0); // the client left
        }
        let (bytes, copied) = copy_body(&mut body, &mut out, framing);
        match copied {
            Copied::Whole => {
                if out.flush().is_ok() && framing != Framing::Close {
                    completion.complete();
                }
            }
            Copied::ClientGone => {}
            Copied::Broken(e) => {
                state.upstream.stream_failed(&endpoint);
                crate::log::warn(&format!(
                    "upstream {base} broke a pass-through answer after {bytes} bytes: {e}; the \
                     client's connection is closed with the answer cut"
                ));
                let _ = out.flush();
                // `completion` dropped: the connection closes
            }
        }
        (status, bytes)
    });
}

/// How a copied answer's body is framed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    None,
    /// `Content-Length`, the upstream's.
    Length(u64),
    /// Chunked (HTTP/1.1 without a known length).
    Chunked,
    /// Ended by closing the connection (HTTP/1.0 without a known length).
    Close,
}

/// The head of a copied answer: status line, the upstream's `headers` (lines with CR or LF
/// dropped) and the framing; `length` is kept on a bodiless answer (HEAD, 304).
fn copy_head(
    http11: bool,
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    length: Option<u64>,
) -> String {
    let reason = tiny_http::StatusCode(status).default_reason_phrase();
    let minor = if http11 { 1 } else { 0 };
    let mut head = format!("HTTP/1.{minor} {status} {reason}\r\n");
    for (name, value) in headers {
        if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match (framing, length) {
        (Framing::Length(n), _) => head.push_str(&format!("Content-Length: {n}\r\n")),
        (Framing::Chunked, _) => head.push_str("Transfer-Encoding: chunked\r\n"),
        (Framing::Close, _) => head.push_str("Connection: close\r\n"),
        (Framing::None, Some(n)) if status != 204 => {
            head.push_str(&format!("Content-Length: {n}\r\n"))
        }
        (Framing::None, _) => {}
    }
    head.push_str("\r\n");
    head
}

/// How [`copy_body`] ended.
#[derive(Debug)]
enum Copied {
    /// The upstream's body ended where it should (and the framing's end went out).
    Whole,
    /// Reading the upstream failed (reset, cut short, silent past `idle_timeout_ms`).
    Broken(io::Error),
    /// Writing to the client failed.
    ClientGone,
}

/// Copies the upstream's body to the client as it arrives, flushing each read; returns the
/// payload bytes written and how it ended.
fn copy_body(upstream: &mut dyn Read, out: &mut dyn Write, framing: Framing) -> (u64, Copied) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut bytes = 0u64;
    if framing == Framing::None {
        return (0, Copied::Whole);
    }
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (bytes, Copied::Broken(e)),
        };
        let data = buf.get(..n).unwrap_or_default();
        let written = if framing == Framing::Chunked {
            write!(out, "{n:x}\r\n")
                .and_then(|()| out.write_all(data))
                .and_then(|()| out.write_all(b"\r\n"))
        } else {
            out.write_all(data)
        };
        if written.and_then(|()| out.flush()).is_err() {
            return (bytes, Copied::ClientGone);
        }
        bytes += n as u64;
    }
    if let Framing::Length(n) = framing {
        if bytes != n {
            let short = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the body ended after {bytes} of its {n} bytes"),
            );
            return (bytes, Copied::Broken(short));
        }
    }
    if framing == Framing::Chunked && out.write_all(b"0\r\n\r\n").is_err() {
        return (bytes, Copied::ClientGone);
    }
    (bytes, Copied::Whole)
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
        let Ok(mut out) = SseOut::start_as(Conn::of(req), status, &head) else {
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

/// The client's request body as the upstream client reads it: at most `max` bytes, all within
/// the `client_timeout_ms` budget. It never ends early: past `max`, too slow, cut by the
/// client, or (with a `guard`) naming a model outside the key's allow-list, a read fails with
/// the client's [`ApiError`] inside ([`ClientFault`]) before those bytes are passed on, so the
/// upstream client aborts the request instead of ending it as complete.
struct ClientBody<R> {
    inner: Deadline<R>,
    max: u64,
    read: u64,
    budget: Duration,
    guard: Option<Guard>,
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
        if let Some(guard) = &mut self.guard {
            let checked = match buf.get(..n) {
                Some(data) if n > 0 => guard.feed(data),
                _ => guard.parts.end(),
            };
            checked.map_err(ClientFault::io)?;
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
