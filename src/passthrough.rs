//! Every other route under `/v1/` (files, batches, audio, images, moderations,
//! `GET /v1/models/{id}`, `GET/DELETE /v1/responses/{id}`, `/v1/messages/count_tokens`, ...):
//! passed to an endpoint unchanged and never cached.
//!
//! [`admit`] runs where the request was received (after the gate: key and rate limit): it
//! checks the headers and the announced body size and takes an in-flight permit. [`forward`]
//! runs on the `workers` pool: method, path, query and the forwardable headers go to an
//! endpoint that speaks the route's API, the body is streamed from the client as it arrives
//! (bounded by `max_body_bytes` and `client_timeout_ms`), and the answer is streamed back with
//! its status and headers, without ever holding either body whole.

use std::io::Read;

use tiny_http::{Header, Response, StatusCode};

use crate::api;
use crate::error::ApiError;
use crate::exchange::{request_headers, Exchange};
use crate::intake::Deadline;
use crate::state::State;
use crate::upstream::{self, limit};

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
    let mut body = Deadline::new(req.as_reader(), budget).take(max);
    let reader: Option<&mut dyn Read> = if has_body { Some(&mut body) } else { None };
    let started = std::time::Instant::now();
    let sent = state
        .upstream
        .forward(api, &method, &target, &headers, reader)?;
    ex.access.upstream = sent.base.clone();
    ex.access.upstream_time = started.elapsed();
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
    Ok(())
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
