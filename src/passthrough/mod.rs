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
//! relayed event by event, each flushed at its blank line, bytes unchanged (`answer.rs`).
//!
//! Once the head is in, an upstream silent for `idle_timeout_ms` (or one that breaks) counts a
//! failure against the endpoint: an event stream then ends with the API's error event, any
//! other answer is cut — the client's connection closes with fewer bytes than its
//! `Content-Length`, or without the terminating chunk ([`answer_copy`]), never a clean end.
//!
//! With auth on, routes of owned objects (files, batches, …) go through `owners` first.

mod answer;
mod billed;
mod body;

use std::io::{self, Cursor, Read};

use self::answer::{answer_copy, answer_events, Answer};
use self::billed::Bill;
use self::body::{ClientBody, Named};
use crate::api;
use crate::body_cost::{self, Reservation};
use crate::body_model;
use crate::client_headers::ClientHeaders;
use crate::error::ApiError;
use crate::exchange::{request_headers, Exchange};
use crate::intake;
use crate::owners;
use crate::state::State;
use crate::upstream::limit;

/// A pass-through request admitted to the `workers` pool.
pub struct Pass {
    _permit: limit::Permit,
    /// An upload streamed from the client holds one of the workers' upload places.
    _upload: Option<limit::Permit>,
    /// The body, read whole to check its `model` against the key's allow-list; sent as read.
    body: Option<Vec<u8>>,
    /// That body's share of `max_body_bytes_in_flight` until the call is done.
    _reserved: Option<Reservation>,
    /// How the `model` a streamed body names is found: a multipart upload's `model` parts
    /// checked against the key's allow-list as they stream, or noted to price a billed call.
    named: Option<Named>,
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
    state
        .upstream
        .check_forwardable(ClientHeaders::pairs(&headers))?;
    let (mut body, mut reserved, mut named) = (None, None, None);
    // a key with an allow-list: the model its path or body names must be on it
    let allowed = ex.client().map(|c| c.models.clone()).unwrap_or_default();
    let route = crate::util::api_route(&ex.access.path);
    if let Some(id) = route.strip_prefix("/models/") {
        state.gate.allow_model(ex.client(), id)?;
    }
    let billed = billed::billed(method, route);
    let streams_body = has_body(req, ClientHeaders::pairs(&headers));
    let content_type = ClientHeaders::pairs(&headers)
        .get("content-type")
        .unwrap_or_default();
    if !allowed.is_empty() && streams_body {
        match body_model::multipart_boundary(content_type)? {
            Some(boundary) => named = Some(Named::multipart(&boundary, allowed)),
            None => {
                let (raw, held) = read_whole(state, ex)?;
                if let Some(model) = body_model::json_model(&raw)? {
                    state.gate.allow_model(ex.client(), &model)?;
                }
                (body, reserved) = (Some(raw), Some(held));
            }
        }
    } else if streams_body && billed {
        // the model a billed call names prices its tokens: noted as the body streams past
        named = Some(match body_model::multipart_boundary(content_type) {
            Ok(Some(boundary)) => Named::multipart(&boundary, Vec::new()),
            _ => Named::json(),
        });
    }
    // a body still to come from the client holds its worker as long as the client takes
    let upload = (body.is_none() && streams_body)
        .then(|| state.upstream.uploads.try_acquire())
        .transpose()?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Some(Pass {
        _permit: permit,
        _upload: upload,
        body,
        _reserved: reserved,
        named,
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
    state
        .upstream
        .check_forwardable(ClientHeaders::parsed(req.headers()))?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Some(Pass {
        _permit: permit,
        _upload: None,
        body: Some(body),
        _reserved: Some(reserved),
        named: None,
    }))
}

/// Whether the request has a body: a positive `Content-Length`, or chunked.
fn has_body(req: &tiny_http::Request, headers: ClientHeaders<'_>) -> bool {
    req.body_length().is_some_and(|n| n > 0) || headers.get("transfer-encoding").is_some()
}

/// Reads the request's body whole (≤ `max_body_bytes`, within `client_timeout_ms`), its
/// estimated cost held in `max_body_bytes_in_flight`.
fn read_whole(state: &State, ex: &mut Exchange) -> Result<(Vec<u8>, Reservation), ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok((Vec::new(), Reservation::new(0)));
    };
    let (raw, mut reserved) = intake::read_reserved(req, state.body_limits())?;
    reserved.grow_to(body_cost::check_density(&raw)?)?;
    Ok((raw, reserved))
}

/// Sends the request upstream and streams the answer back. Object routes of an authenticated
/// caller go through `owners` first: another key's object is answered with the upstream's 404
/// for an unknown id, a JSON body is read (within `max_body_bytes`) to check the objects it
/// names, lists are filtered, and a small JSON answer is read whole to record what it created.
pub fn forward(state: &State, ex: &mut Exchange, pass: Pass) -> Result<(), ApiError> {
    let trace = ex.trace();
    let client = ex.client().cloned();
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let url = req.url().to_string();
    let target = url.strip_prefix("/v1").unwrap_or(&url).to_string();
    let route = target.split('?').next().unwrap_or("");
    let api = api::of_route(route);
    let method = req.method().as_str().to_string();
    // owned: the body is read from the request while the headers go upstream
    let headers = request_headers(req);
    let has_body = has_body(req, ClientHeaders::pairs(&headers));
    let budget = state.config.client_timeout;
    let max = state.config.max_body_bytes;
    let Pass {
        body: mut whole,
        _reserved: mut reserved,
        named,
        ..
    } = pass;
    let mut owned = owners::Owned::of(client.as_ref(), &method, route);
    if let Some(owned) = &mut owned {
        if let Some((status, refusal)) = owned.refusal(state)? {
            ex.json(status, refusal);
            return Ok(());
        }
        if let (Some(kind), Some(c)) = (owned.filtered_list(), &client) {
            let headers = ClientHeaders::pairs(&headers);
            return owners::list(state, ex, &c.key_id, kind, api, &target, headers);
        }
        if has_body && whole.is_none() && is_json(&headers) {
            // a JSON body may name objects (`input_file_id`, `file_ids`, …): read it whole
            let (raw, held) = read_whole(state, ex)?;
            (whole, reserved) = (Some(raw), Some(held));
        }
        let named = whole
            .as_deref()
            .and_then(|raw| crate::json::from_slice::<serde_json::Map<_, _>>(raw).ok());
        if let Some(json) = named {
            if let Some((status, refusal)) =
                owners::refused_reference(state, client.as_ref(), &json)?
            {
                ex.json(status, refusal);
                return Ok(());
            }
        }
    }
    // a response the relay translated and stored is answered here
    if crate::stored::serve(state, ex, &method, &target)? {
        return Ok(());
    }
    // held until the call is done
    let _reserved = reserved;
    let Some(req) = ex.request_mut() else {
        return Ok(());
    };
    let mut read = Cursor::new(whole.unwrap_or_default());
    let mut body = ClientBody::new(req.as_reader(), max, budget, named);
    let reader: Option<&mut dyn Read> = match (read.get_ref().is_empty(), has_body) {
        (false, _) => Some(&mut read),
        (true, true) => Some(&mut body),
        (true, false) => None,
    };
    let started = std::time::Instant::now();
    let sent = state.upstream.forward(
        api,
        &method,
        &target,
        ClientHeaders::pairs(&headers),
        reader,
        trace.as_deref(),
    )?;
    // the model the call named prices the tokens a billed answer reports
    let billed = billed::billed(&method, route);
    let named = match (billed, read.get_ref().is_empty()) {
        (false, _) => None,
        (true, false) => body_model::json_model(read.get_ref()).ok().flatten(),
        (true, true) => body.named.as_ref().and_then(Named::model),
    };
    ex.access.upstream = sent.base.clone();
    ex.access.upstream_time = started.elapsed();
    let status = sent.response.status().as_u16();
    let billed = billed && (200..300).contains(&status);
    if billed {
        ex.access.model = named.unwrap_or_default();
    }
    let charge = billed.then(|| Bill::take(ex, status));
    let content_type = sent
        .response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let event_stream = method != "HEAD" && content_type.starts_with("text/event-stream");
    if event_stream {
        answer_events(state, ex, api, sent, charge);
        return Ok(());
    }
    let mut answer = Answer::of(sent);
    if let Some(owned) = owned.filter(|o| o.watches()) {
        let json = content_type.starts_with("application/json");
        watch(state, &owned, &mut answer, json)?;
    }
    answer_copy(state, ex, answer, charge);
    Ok(())
}

/// True if the request's `Content-Type` is JSON.
fn is_json(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("content-type")
            && v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
    })
}

/// Reads a small JSON answer of an owned-object route whole (at most `owners::MAX_WATCHED`
/// bytes) and records what it created or deleted; a larger answer is relayed unread.
fn watch(
    state: &State,
    owned: &owners::Owned,
    answer: &mut Answer,
    json: bool,
) -> Result<(), ApiError> {
    let status = answer.status;
    if !(200..300).contains(&status) {
        return Ok(());
    }
    if !json
        || answer
            .length
            .is_some_and(|n| n > owners::MAX_WATCHED as u64)
    {
        owned.answered(state, status, None);
        return Ok(());
    }
    let (prefix, whole) = match owners::read_prefix(&mut answer.body, owners::MAX_WATCHED) {
        Ok(read) => read,
        Err(e) => {
            state.upstream.stream_failed(&answer.endpoint);
            return Err(ApiError::new(
                502,
                "server_error",
                "upstream_error",
                format!("upstream {} broke its answer: {e}", answer.base),
            ));
        }
    };
    let parsed = whole
        .then(|| crate::json::from_slice::<serde_json::Value>(&prefix).ok())
        .flatten();
    // recorded before the client sees the answer, so its next request finds the owner
    owned.answered(state, status, parsed.as_ref());
    let rest = std::mem::replace(&mut answer.body, Box::new(io::empty()));
    answer.body = Box::new(io::Cursor::new(prefix).chain(rest));
    Ok(())
}
