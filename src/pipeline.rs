//! The pipeline of one API call, readable top to bottom, and the plain data between its steps.
//!
//! [`relay`] runs where the request was received: read the body → translate it to a chat
//! request if the client's API is not spoken by an endpoint for its model → apply model rules →
//! shape chat requests → cache lookup (a hit is answered here) → check that the headers can be
//! forwarded → take an in-flight permit. What is
//! left is returned as [`Next::Upstream`] — a [`Work`] value, not a closure — and the server
//! runs it with [`upstream`] on the `workers` pool: single-flight → call an upstream endpoint
//! (with failover) → answer (whole, or as a stream relayed event by event) → record a complete
//! success in the cache.

use std::cell::RefCell;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::api::Api;
use crate::body_cost::Reservation;
use crate::cache;
use crate::error::ApiError;
use crate::exchange::{json_content_type, request_headers, Exchange, Meter};
use crate::intake;
use crate::log::Access;
use crate::sse::SseOut;
use crate::state::State;
use crate::streaming::{is_event_stream, Streaming, SKIP_HEADER, SKIP_TOO_LARGE};
use crate::translate::{self, Dialect};
use crate::upstream::{self, limit, Mode};
use crate::{body_log, keepalive, models, passthrough, rules, shape, usage};

/// The API endpoints the relay runs through the pipeline (rules, cache, failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
}

impl Endpoint {
    /// The path below the upstream base URL (which includes `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
        }
    }

    /// The client API this endpoint belongs to (its stream shape, cache rules, errors).
    pub fn api(self) -> Api {
        match self {
            Endpoint::Chat | Endpoint::Completions | Endpoint::Embeddings => Api::Chat,
            Endpoint::Responses => Api::Responses,
            Endpoint::Messages => Api::Anthropic,
        }
    }
}

/// Request headers that change a Messages answer and so belong in its cache key.
const ANTHROPIC_KEYED_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

/// The body the cache keys a request by: the body itself (for Responses without the ids of
/// input items), plus for Messages the headers that select API behaviour (as `relay:<header>`
/// members, names no API body uses).
fn keyed_body(
    endpoint: Endpoint,
    body: &Map<String, Value>,
    headers: &[(String, String)],
) -> Map<String, Value> {
    let mut keyed = body.clone();
    if endpoint == Endpoint::Responses {
        // The `id` a client gives its own input items names them; it does not change the
        // answer (Codex CLI gives every item a fresh id each run). An `item_reference` is all id.
        if let Some(Value::Array(items)) = keyed.get_mut("input") {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                    item.remove("id");
                }
            }
        }
    }
    if endpoint == Endpoint::Messages {
        for name in ANTHROPIC_KEYED_HEADERS {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
                .collect();
            if !values.is_empty() {
                keyed.insert(format!("relay:{name}"), Value::String(values.join(",")));
            }
        }
    }
    keyed
}

/// Whether the cache may answer or keep this request at all: a background Responses request
/// is answered by a queued response the client polls, never by a stored one.
fn cacheable(endpoint: Endpoint, body: &Map<String, Value>) -> bool {
    !(endpoint == Endpoint::Responses && body.get("background") == Some(&Value::Bool(true)))
}

/// The most of a streamed answer recorded when no cache sets `max_entry_bytes`.
const MAX_RECORD: u64 = 32 * 1024 * 1024;

/// What happens to a request after a step.
pub enum Next {
    /// Answered (or refused) already.
    Done,
    /// Needs an upstream call: continue with [`upstream`] on the `workers` pool.
    Upstream(Work),
}

/// Work for the `workers` pool.
pub enum Work {
    /// An API call that the cache did not answer.
    Call(Box<Call>),
    /// `GET /v1/models`.
    Models,
    /// Any other route under `/v1/`, passed through.
    Passthrough(passthrough::Pass),
}

/// An API call on its way upstream.
pub struct Call {
    endpoint: Endpoint,
    headers: Vec<(String, String)>,
    /// The body after rules and shaping (the per-endpoint `model` override comes at send time).
    body: Map<String, Value>,
    stream: bool,
    include_usage: bool,
    /// The cache's plan and why it did not answer, when the cache is on.
    cached: Option<(cache::Plan, cache::Status)>,
    /// The client's API when the request was translated to Chat Completions: answers are
    /// translated back.
    dialect: Option<Dialect>,
    /// Counts the call against `max_concurrent_requests` until it is done.
    _permit: limit::Permit,
    /// The body's share of `max_body_bytes_in_flight` until the call is done.
    _reserved: Reservation,
}

/// The first part, where the request was received: body → rules → shaping → cache lookup (a
/// hit answers here) → forwardable headers → in-flight permit. The rest comes back as [`Next::Upstream`].
pub fn relay(state: &State, ex: &mut Exchange, endpoint: Endpoint) -> Result<Next, ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok(Next::Done);
    };
    let mut headers = request_headers(req);
    intake::check_content_type(req)?;
    let mut reserved = Reservation::new(state.config.max_body_bytes_in_flight);
    let raw = intake::read_body(
        req,
        state.config.max_body_bytes,
        state.config.client_timeout,
        &mut reserved,
    )?;
    let mut body = intake::parse_body(&raw, &mut reserved)?;
    drop(raw);
    let model = |body: &Map<String, Value>| {
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // a key's allow-list holds for the model it names and for the one the rules send upstream
    state.gate.allow_model(ex.client(), &model(&body))?;
    let dialect = translation(state, endpoint, &body);
    let endpoint = if let Some(d) = dialect {
        body = translate::to_chat(d, &body)
            .map_err(|e| ApiError::invalid("untranslatable_field", e.message()))?;
        // the client API's own headers mean nothing to a chat endpoint
        headers.retain(|(name, _)| !name.to_ascii_lowercase().starts_with("anthropic-"));
        Endpoint::Chat
    } else {
        endpoint
    };
    rules::apply(&state.config.rules, &mut body);
    if endpoint == Endpoint::Chat {
        shape::apply_chat(&state.config.shaping, &mut body);
    }
    ex.access.model = model(&body);
    state.gate.allow_model(ex.client(), &ex.access.model)?;
    let stream = body.get("stream") == Some(&Value::Bool(true));
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));

    let mut cached = None;
    if let Some(cache) = state.cache.as_ref().filter(|_| cacheable(endpoint, &body)) {
        let plan = cache.plan(
            endpoint.path(),
            &keyed_body(endpoint, &body, &headers),
            &headers,
        );
        match cache.lookup(&plan) {
            Ok(entry) => {
                let mode = (endpoint.api(), stream, include_usage);
                answer_hit(cache, &plan, &entry, ex, mode, dialect);
                return Ok(Next::Done);
            }
            Err(status) => cached = Some((plan, status)),
        }
    }
    state.upstream.check_forwardable(&headers)?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Next::Upstream(Work::Call(Box::new(Call {
        endpoint,
        headers,
        body,
        stream,
        include_usage,
        cached,
        dialect,
        _permit: permit,
        _reserved: reserved,
    }))))
}

/// The client API a request on `endpoint` is translated from, if it is: when no endpoint that
/// serves its model (as the model rules leave it) speaks the client's API, but one speaks Chat
/// Completions.
fn translation(state: &State, endpoint: Endpoint, body: &Map<String, Value>) -> Option<Dialect> {
    let dialect = match endpoint {
        Endpoint::Messages => Dialect::Anthropic,
        Endpoint::Responses => Dialect::Responses,
        _ => return None,
    };
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    let model = rules::select(&state.config.rules, asked)
        .and_then(|rule| rule.set.get("model"))
        .and_then(Value::as_str)
        .unwrap_or(asked);
    let up = &state.upstream;
    (!up.speaks(model, endpoint.api()) && up.speaks(model, Api::Chat)).then_some(dialect)
}

/// The second part, on the `workers` pool.
pub fn upstream(state: &State, ex: &mut Exchange, work: Work) {
    let done = match work {
        Work::Call(call) => call_upstream(state, ex, *call),
        Work::Models => models::models(state, ex),
        Work::Passthrough(pass) => passthrough::forward(state, ex, pass),
    };
    if let Err(err) = done {
        ex.error(&err);
    }
}

/// Answers a cache hit; `mode` is (API, streamed, include_usage) as the client asked, `dialect`
/// the client's API when its answers are translated.
fn answer_hit(
    cache: &cache::Cache,
    plan: &cache::Plan,
    entry: &cache::Entry,
    ex: &mut Exchange,
    (api, stream, include_usage): (Api, bool, bool),
    dialect: Option<Dialect>,
) {
    if ex.answered() {
        return;
    }
    cache.served(&plan.key, entry);
    ex.access.cache = Some(crate::log::CacheResult::Hit);
    // what the hit saved: the tokens of the stored answer
    let whole = usage::tokens(&entry.response);
    (ex.access.prompt_tokens, ex.access.completion_tokens) = if whole == (0, 0) {
        usage::stream_tokens(&entry.response)
    } else {
        whole
    };
    let mode = (stream, include_usage);
    ex.answer_with(|req| cache::respond_hit(req, api, &plan.key, entry, mode, dialect));
}

/// Single-flight → call an upstream endpoint (with failover) → answer (whole, or as a stream
/// relayed event by event) → record a complete success in the cache.
fn call_upstream(state: &State, ex: &mut Exchange, call: Call) -> Result<(), ApiError> {
    let cache = state.cache.as_deref();
    let mut _leader = None;
    let mut reply_extra = Vec::new();
    if let (Some(cache), Some((plan, status))) = (cache, &call.cached) {
        if *status == cache::Status::Miss {
            match cache.join(&plan.key) {
                cache::Role::Leader(guard) => _leader = Some(guard),
                cache::Role::Follower(flight) => {
                    flight.wait(state.config.timeouts.first_byte);
                    if let Ok(entry) = cache.lookup(plan) {
                        let mode = (call.endpoint.api(), call.stream, call.include_usage);
                        answer_hit(cache, plan, &entry, ex, mode, call.dialect);
                        return Ok(());
                    }
                }
            }
        }
        if *status != cache::Status::Bypass {
            cache.missed();
        }
        ex.access.cache = Some(status.result());
        reply_extra.push(("X-Cache".to_string(), status.header().to_string()));
        reply_extra.push(("X-Cache-Key".to_string(), plan.key.clone()));
    }
    // Where a complete success goes: the cache, unless `no-store` (or too large to store).
    let storing = call
        .cached
        .as_ref()
        .is_some_and(|(_, status)| *status != cache::Status::Bypass);
    let record = |response: &[u8]| {
        if let (Some(cache), Some((plan, _)), true) = (cache, &call.cached, storing) {
            cache.store(plan, response);
        }
    };
    // A streamed answer is recorded up to what the cache would store (else a fixed cap; the
    // copy also feeds usage and the body log).
    let max_record = cache.map_or(MAX_RECORD, |c| c.config.max_entry_bytes) as usize;

    let up = &state.upstream;
    let api = call.endpoint.api();
    let model = ex.access.model.clone();
    let mode = if call.stream {
        Mode::Stream
    } else {
        Mode::Whole
    };
    let post = || {
        up.post(
            api,
            call.endpoint.path(),
            &call.headers,
            &call.body,
            &model,
            mode,
        )
    };
    // A stream is charged from inside the writer, before its end, so a next request sees it.
    let pending_charge: RefCell<Option<(Meter, Access)>> = RefCell::new(None);
    let charge = |recorded: &[u8]| {
        if let Some((meter, mut charged)) = pending_charge.borrow_mut().take() {
            charged.status = 200;
            (charged.prompt_tokens, charged.completion_tokens) = usage::stream_tokens(recorded);
            meter(&charged);
        }
    };
    let streaming = Streaming {
        up,
        api,
        dialect: call.dialect,
        max_record,
        storing,
        record: &record,
        charge: &charge,
    };
    let upstream_started = Instant::now();
    if let (true, Some(every)) = (call.stream, state.config.stream_keepalive) {
        // The head goes out now; comment lines keep the connection busy until the upstream's.
        let mut outcome = None;
        if let Some(meter) = ex.take_meter() {
            *pending_charge.borrow_mut() = Some((meter, ex.access.clone()));
        }
        ex.answer_with(|req| {
            let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
            let Ok(mut out) = SseOut::start(req.into_writer(), http11, &reply_extra) else {
                return (200, 0);
            };
            let posted = keepalive::while_waiting(&mut out, every, post);
            let (bytes, base, recorded) = streaming.answer_late(posted, out);
            outcome = Some((base, recorded));
            (200, bytes)
        });
        charge(&[]); // a late failure (no stream relayed) still counts against the key
        if let Some((base, recorded)) = outcome {
            ex.access.upstream = base.unwrap_or_default();
            ex.access.upstream_time = upstream_started.elapsed();
            body_log::record(&ex.access.path, &call.body, 200, &recorded);
            (ex.access.prompt_tokens, ex.access.completion_tokens) =
                usage::stream_tokens(&recorded);
        }
        return Ok(());
    }
    let sent = post()?;
    ex.access.upstream = sent.base.clone();
    let status = sent.response.status().as_u16();
    let mut reply_headers = upstream::response_headers(sent.response.headers());
    reply_headers.extend(reply_extra);

    if call.stream && is_event_stream(&sent) {
        let mut recorded = None;
        if let Some(meter) = ex.take_meter() {
            *pending_charge.borrow_mut() = Some((meter, ex.access.clone()));
        }
        ex.answer_with(|req| {
            let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
            let Ok(out) = SseOut::start(req.into_writer(), http11, &reply_headers) else {
                return (200, 0); // the client left before the head was written
            };
            let (bytes, copy) = streaming.relay(sent, out);
            recorded = Some(copy);
            (200, bytes)
        });
        if let Some(recorded) = recorded {
            ex.access.upstream_time = upstream_started.elapsed();
            body_log::record(&ex.access.path, &call.body, status, &recorded);
            (ex.access.prompt_tokens, ex.access.completion_tokens) =
                usage::stream_tokens(&recorded);
        }
        return Ok(());
    }

    let response = sent.response;
    let data = upstream::read_body(&ex.access.upstream, response.into_body())?;
    ex.access.upstream_time = upstream_started.elapsed();
    if (200..300).contains(&status) {
        if storing && cache.is_some_and(|c| c.too_large(data.len())) {
            reply_headers.push((SKIP_HEADER.to_string(), SKIP_TOO_LARGE.to_string()));
        }
        record(&data); // before answering, so the client's next request finds it
    }
    body_log::record(&ex.access.path, &call.body, status, &data);
    (ex.access.prompt_tokens, ex.access.completion_tokens) = usage::tokens(&data);
    let data = match call.dialect {
        Some(d) => translated_answer(d, status, &data, &mut reply_headers),
        None => data,
    };
    ex.access.status = status;
    ex.charge(); // before answering, so the client's next request sees the charge
    ex.respond(status, &reply_headers, data);
    Ok(())
}

/// A whole chat answer (or error) in the client's API; its content type becomes JSON.
fn translated_answer(
    dialect: Dialect,
    status: u16,
    data: &[u8],
    headers: &mut Vec<(String, String)>,
) -> Vec<u8> {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    headers.push(json_content_type());
    if !(200..300).contains(&status) {
        return translate::error_from_chat(dialect, status, data);
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(chat) => translate::from_chat(dialect, &chat)
            .to_string()
            .into_bytes(),
        Err(e) => translate::error_from_chat(
            dialect,
            502,
            format!("the upstream's answer is not JSON: {e}").as_bytes(),
        ),
    }
}
