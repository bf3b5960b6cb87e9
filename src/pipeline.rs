//! The pipeline of one API call, readable top to bottom, and the plain data between its steps.
//!
//! [`relay`] runs where the request was received: read the body → translate it to a chat
//! request if the client's API is not spoken by an endpoint for its model → apply model rules →
//! shape chat requests → cache lookup (a hit is answered here; in `replay` mode a miss too,
//! with a `cache_miss` error) → check that the headers can be
//! forwarded → take an in-flight permit. What is
//! left is returned as [`Next::Upstream`] — a [`Work`] value, not a closure — and the server
//! runs it with [`upstream`] on the `workers` pool: single-flight → call an upstream endpoint
//! (with failover) → answer (whole, or as a stream relayed event by event) → record a complete
//! success in the cache.

use std::cell::RefCell;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::answer::{Answer, Usage};
use crate::api::Api;
use crate::body_cost::Reservation;
use crate::cache;
use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::{json_content_type, request_headers, Exchange, Meter};
use crate::intake;
use crate::log::Access;
use crate::sse;
use crate::sse_out::{Conn, SseOut};
use crate::state::State;
use crate::store::Responses;
use crate::streaming::{is_event_stream, Streaming, SKIP_HEADER, SKIP_TOO_LARGE};
use crate::translate::{self, Dialect, Translation};
use crate::upstream::{self, limit, Mode};
use crate::{body_log, keepalive, models, owners, passthrough, rules, shape, stored};

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
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
    ];

    /// The endpoint at `path` (below the `/v1` prefix).
    pub fn of_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

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

    /// Its `gen_ai.operation.name` in traces.
    pub fn operation(self) -> &'static str {
        match self {
            Endpoint::Chat | Endpoint::Responses | Endpoint::Messages => "chat",
            Endpoint::Completions => "text_completion",
            Endpoint::Embeddings => "embeddings",
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
pub const ANTHROPIC_KEYED_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

/// The body the cache keys a request by: the body itself (for Responses without the ids of
/// input items), plus for Messages the headers that select API behaviour (as `relay:<header>`
/// members, names no API body uses). `llm-relay cache why` keys through this too.
pub fn keyed_body(
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
    delivery: cache::Delivery,
    /// The cache's plan and why it did not answer, when the cache is on.
    cached: Option<(cache::Plan, cache::Status)>,
    /// The client's API (and what its answer repeats of its request) when the request was
    /// translated to Chat Completions: answers are translated back.
    translation: Option<Translation>,
    /// A translated Responses request to store (`store` not false): its input.
    kept: Option<stored::Pending>,
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
    let (raw, mut reserved) = intake::read_reserved(req, state.body_limits())?;
    let mut body = intake::parse_body(&raw, &mut reserved)?;
    drop(raw);
    if let Some(trace) = ex.trace() {
        trace.request(endpoint.operation(), &body);
    }
    // a body may name objects (`previous_response_id`, a `file_id`): only the key's own
    if let Some((status, refusal)) = owners::refused_reference(state, ex.client(), &body)? {
        ex.json(status, refusal);
        return Ok(Next::Done);
    }
    // a translated Responses request continues a stored conversation, and may be stored
    let mut kept = None;
    let mut previous = None;
    if translation(&state.config, endpoint, &body) == Some(Dialect::Responses) {
        previous = body
            .get("previous_response_id")
            .filter(|v| v.is_string())
            .cloned();
        match stored::continue_conversation(state, &mut body)? {
            Ok(pending) => kept = stored::asked(&body).then_some(pending),
            Err((status, refusal)) => {
                ex.json(status, refusal);
                return Ok(Next::Done);
            }
        }
    }
    let model = |body: &Map<String, Value>| {
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // a key's allow-list holds for the model it names and for the one the rules send upstream
    state.gate.allow_model(ex.client(), &model(&body))?;
    let Prepared {
        sent: endpoint,
        mut translation,
    } = prepare(&state.config, endpoint, &mut body, &mut headers)?;
    if let (Some(t), Some(_)) = (&mut translation, &kept) {
        t.base = Some(stored::fresh_base()?);
    }
    if let (Some(t), Some(id)) = (&mut translation, previous) {
        t.repeat("previous_response_id", id);
    }
    ex.access.model = model(&body);
    state.gate.allow_model(ex.client(), &ex.access.model)?;
    let delivery = cache::Delivery::of(&body);

    let mut cached = None;
    if let Some(cache) = &state.cache {
        let models = state
            .upstream
            .effective_models(endpoint.api(), &ex.access.model);
        let keyed = keyed_body(endpoint, &body, &headers);
        let plan = cache
            .plan(endpoint.path(), &keyed, (&headers, ex.principal()), &models)?
            .by_client(ex.client().map(|c| c.key_id.as_str()));
        let offline = plan.mode == cache::Mode::Replay;
        // a request the cache may not answer is not looked up, but in replay mode it is still
        // refused: replay never calls an upstream
        let cacheable = cacheable(endpoint, &body);
        if cacheable && ex.observed() {
            ex.access.cache_key = Some(plan.key.clone());
        }
        let found = if cacheable {
            cache.lookup(&plan)
        } else {
            Err(cache::Status::Bypass)
        };
        match found {
            Ok(entry) => {
                let keep = Keep::of(state, ex, kept.as_ref(), translation.as_ref());
                answer_hit(cache, &plan, &entry, ex, delivery, keep);
                return Ok(Next::Done);
            }
            Err(_) if offline => {
                // offline: a miss never reaches an upstream
                cache.missed();
                ex.access.cache = Some(crate::log::CacheResult::Miss);
                return Err(cache.replay_miss(&plan));
            }
            Err(status) if cacheable => cached = Some((plan, status)),
            Err(_) => {}
        }
    }
    state.upstream.check_forwardable(&headers)?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Next::Upstream(Work::Call(Box::new(Call {
        endpoint,
        headers,
        body,
        delivery,
        cached,
        translation,
        kept,
        _permit: permit,
        _reserved: reserved,
    }))))
}

/// Where [`prepare`] sends a request.
pub struct Prepared {
    /// The endpoint the request goes to (Chat when translated).
    pub sent: Endpoint,
    /// The client's API when the request was translated to Chat Completions.
    pub translation: Option<Translation>,
}

/// The body as it goes upstream and as the cache keys it (with [`keyed_body`]): translated to
/// a chat request if no endpoint for its model speaks the client's API (the client API's own
/// headers are then dropped), then model rules, then shaping of chat requests. The relay and
/// `llm-relay cache why` both prepare a request through this.
pub fn prepare(
    config: &Config,
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
    headers: &mut Vec<(String, String)>,
) -> Result<Prepared, ApiError> {
    let translation = translation(config, endpoint, body).map(|d| {
        let mut t = Translation::new(d, body);
        // a Responses client on a model only `anthropic` endpoints serve: Chat is the pivot
        t.pivot = d == Dialect::Responses && pivots(config, body);
        t
    });
    let sent = if let Some(t) = &translation {
        *body = translate::to_chat(t.dialect, body).map_err(|e| {
            // through the pivot the endpoint speaks Messages, whichever step refuses
            let message = if t.pivot {
                e.message(Dialect::Chat)
            } else {
                e.message(t.dialect)
            };
            ApiError::invalid("untranslatable_field", message)
        })?;
        if t.pivot {
            *body = translate::to_chat(Dialect::Chat, body).map_err(|mut e| {
                // named as the client wrote it
                e.field = translate::pivot_field(&e.field);
                ApiError::invalid("untranslatable_field", e.message(Dialect::Chat))
            })?;
        }
        if t.dialect == Dialect::Chat || t.pivot {
            // the anthropic endpoint's own headers (key, version) are set at send time
            Endpoint::Messages
        } else {
            // the client API's own headers mean nothing to a chat endpoint
            headers.retain(|(name, _)| !name.to_ascii_lowercase().starts_with("anthropic-"));
            Endpoint::Chat
        }
    } else {
        endpoint
    };
    rules::apply(&config.rules, body);
    if sent == Endpoint::Chat {
        shape::apply_chat(&config.shaping, body);
    }
    Ok(Prepared { sent, translation })
}

/// The client API a request on `endpoint` is translated from, if it is: when no endpoint that
/// serves its model (as the model rules leave it) speaks the client's API, but one speaks Chat
/// Completions.
pub fn translation(
    config: &Config,
    endpoint: Endpoint,
    body: &Map<String, Value>,
) -> Option<Dialect> {
    let (dialect, target) = match endpoint {
        Endpoint::Messages => (Dialect::Anthropic, Api::Chat),
        Endpoint::Responses => (Dialect::Responses, Api::Chat),
        Endpoint::Chat => (Dialect::Chat, Api::Anthropic),
        _ => return None,
    };
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    let model = ruled_model(config, asked);
    let up = &config.upstreams;
    let speaks =
        up.speaks(model, target) || (dialect == Dialect::Responses && pivots_to(config, model));
    (!up.speaks(model, endpoint.api()) && speaks).then_some(dialect)
}

/// True when a Responses request for the model in `body` goes to an `anthropic` endpoint through
/// Chat (no endpoint for it speaks Responses or Chat Completions).
fn pivots(config: &Config, body: &Map<String, Value>) -> bool {
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    pivots_to(config, ruled_model(config, asked))
}

fn pivots_to(config: &Config, model: &str) -> bool {
    let up = &config.upstreams;
    !up.speaks(model, Api::Responses)
        && !up.speaks(model, Api::Chat)
        && up.speaks(model, Api::Anthropic)
}

/// The model a request for `asked` goes upstream for, as the model rules set it.
pub fn ruled_model<'a>(config: &'a Config, asked: &'a str) -> &'a str {
    rules::select(&config.rules, asked)
        .and_then(|rule| rule.set.get("model"))
        .and_then(Value::as_str)
        .unwrap_or(asked)
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

/// How a cache hit is answered: the client's API when its answers are translated, and for a
/// translated Responses request to store, where it goes.
struct Keep<'a> {
    translation: Option<&'a Translation>,
    stored: Option<(&'a State, &'a stored::Pending)>,
    client: Option<crate::auth::Client>,
}

impl<'a> Keep<'a> {
    fn of(
        state: &'a State,
        ex: &Exchange,
        kept: Option<&'a stored::Pending>,
        translation: Option<&'a Translation>,
    ) -> Keep<'a> {
        Keep {
            translation,
            stored: kept.map(|p| (state, p)),
            client: ex.client().cloned(),
        }
    }
}

/// Answers a cache hit in the shape the client asked for (`keep.translation`: the client's API
/// when its answers are translated), storing a translated Responses answer first.
fn answer_hit(
    cache: &cache::Cache,
    plan: &cache::Plan,
    entry: &cache::Entry,
    ex: &mut Exchange,
    delivery: cache::Delivery,
    keep: Keep,
) {
    if ex.answered() {
        return;
    }
    if let Keep {
        stored: Some((state, pending)),
        translation: Some(t),
        ..
    } = &keep
    {
        // a fresh id, stored before the client sees it
        stored::keep_chat(state, keep.client.as_ref(), pending, t, &entry.response);
    }
    let translation = keep.translation;
    cache.served(entry);
    ex.access.cache = Some(crate::log::CacheResult::Hit);
    if let Some(trace) = ex.trace() {
        trace.answer(&entry.route, entry.response.clone(), cache::plain_answer);
    }
    if ex.observed() {
        ex.access.cache_key = Some(entry.key.clone());
    }
    // what the hit saved: the tokens of the stored answer, priced as the model it was sent as
    ex.access.usage = entry.usage.unwrap_or_default();
    ex.access.sent_model = plan.model_of(&entry.key).unwrap_or_default().to_string();
    ex.answer_with(|req| cache::respond_hit(req, entry, delivery, translation, plan.pace));
}

/// What [`flight`] leaves for the upstream call: the leader's place in the single flight (held
/// until the call is done), the cache headers of the answer and the cache's plan.
struct Flown<'a> {
    _leader: Option<cache::Leader<'a>>,
    reply_extra: Vec<(String, String)>,
    plan: Option<(&'a cache::Cache, &'a cache::Plan)>,
}

/// Single flight: a request the cache may store joins the flight of its key; a follower waits
/// for the leader and answers the hit it left. `None`: answered here (a hit).
fn flight<'a>(state: &'a State, ex: &mut Exchange, call: &'a Call) -> Option<Flown<'a>> {
    let mut flown = Flown {
        _leader: None,
        reply_extra: Vec::new(),
        plan: None,
    };
    let (Some(cache), Some((p, status))) = (state.cache.as_deref(), &call.cached) else {
        return Some(flown);
    };
    if *status == cache::Status::Miss && p.stores() {
        let keep =
            |ex: &Exchange| Keep::of(state, ex, call.kept.as_ref(), call.translation.as_ref());
        match cache.join(p, state.config.timeouts.first_byte) {
            cache::Role::Leader(guard) => flown._leader = Some(guard),
            cache::Role::Hit(entry) => {
                let keep = keep(ex);
                answer_hit(cache, p, &entry, ex, call.delivery, keep);
                return None;
            }
            cache::Role::Follower(flight) => {
                flight.wait(state.config.timeouts.first_byte);
                if let Ok(entry) = cache.lookup(p) {
                    let keep = keep(ex);
                    answer_hit(cache, p, &entry, ex, call.delivery, keep);
                    return None;
                }
            }
        }
    }
    if *status != cache::Status::Bypass {
        cache.missed();
    }
    ex.access.cache = Some(status.result());
    flown
        .reply_extra
        .push(("X-Cache".to_string(), status.header().to_string()));
    flown
        .reply_extra
        .push(("X-Cache-Key".to_string(), p.key.clone()));
    flown.plan = Some((cache, p));
    Some(flown)
}

/// Single flight ([`flight`]) → call an upstream endpoint with failover ([`send`]) → answer
/// as a stream relayed event by event (here), or whole ([`respond_whole`]); a complete success
/// is recorded in the cache before the client sees its end.
fn call_upstream(state: &State, ex: &mut Exchange, call: Call) -> Result<(), ApiError> {
    let cache = state.cache.as_deref();
    let Some(Flown {
        _leader,
        reply_extra,
        plan,
    }) = flight(state, ex, &call)
    else {
        return Ok(());
    };
    // Whether a complete success goes to the cache (not with `no-store`, `read_only`, or when
    // too large to store).
    let storing = plan.filter(|(_, p)| p.stores());
    // A streamed answer is recorded up to what the cache would store (else a fixed cap; the
    // copy also feeds the body log; usage is read from the events as they pass) — if anything
    // reads the copy: the cache, a trace, the body log, or the owner and stored-response
    // records made just before its end. Else none is kept (an open stream's memory).
    let max_record = cache.map_or(MAX_RECORD, |c| c.config.max_entry_bytes) as usize;
    let store = call.body.get("store").and_then(Value::as_bool);
    let read_by_owners = ex.client().is_some()
        && match (call.endpoint, &call.translation) {
            (Endpoint::Responses, None) => store != Some(false),
            (Endpoint::Chat, None) => store == Some(true),
            (_, Some(_)) => call.kept.is_some(),
            _ => false,
        };
    let recorded_copy_read = storing.is_some()
        || ex.trace().is_some()
        || body_log::enabled()
        || read_by_owners;
    let max_record = if recorded_copy_read { max_record } else { 0 };
    // A stream the cache keeps is asked for its usage, so it can answer every shape later, and
    // so is a chat stream charged to a key (its tokens count against the key's budget whether
    // or not the client asked); the client gets the usage chunk only if it asked for it.
    let metered =
        ex.client().is_some() && call.delivery.stream && cache::asks_usage(call.endpoint.path());
    let ask_usage =
        (metered || plan.is_some_and(|(_, p)| p.asks_usage())) && !call.delivery.include_usage;

    let up = &state.upstream;
    let api = call.endpoint.api();
    let path = call.endpoint.path();
    let model = ex.access.model.clone();
    let trace = ex.trace();
    let trace = trace.as_deref();
    let mode = if call.delivery.stream {
        Mode::Stream
    } else {
        Mode::Whole
    };
    let post = || send(up, &call, &model, mode, trace, ask_usage);
    // A stream is charged from inside the writer, before its end, so a next request sees it.
    let pending_charge: RefCell<Option<(Meter, Access)>> = RefCell::new(None);
    // a Responses answer the upstream itself stores is owned by the caller: a stream's id is
    // recorded just before its end reaches the client
    let owns_response = call.endpoint == Endpoint::Responses && call.translation.is_none();
    // so is a chat completion it stores (`store: true`)
    let owns_completion = call.endpoint == Endpoint::Chat && call.translation.is_none();
    let client = ex.client().cloned();
    let before_end = |recorded: &[u8]| {
        if owns_response {
            owners::record_response(state, client.as_ref(), &call.body, recorded);
        }
        if owns_completion {
            owners::record_stored_completion(state, client.as_ref(), &call.body, recorded);
        }
        if let (Some(pending), Some(t)) = (&call.kept, &call.translation) {
            stored::keep_chat(state, client.as_ref(), pending, t, recorded);
        }
    };
    let charge = |usage: Usage, sent_model: &str| {
        if let Some((meter, mut charged)) = pending_charge.borrow_mut().take() {
            charged.status = 200;
            charged.usage = usage;
            charged.sent_model = sent_model.to_string();
            meter(&charged);
        }
    };
    let streaming = Streaming {
        up,
        api,
        route: path,
        model: &model,
        translation: call.translation.as_ref(),
        bounds: sse::Bounds {
            record: max_record,
            event: state.config.max_event_bytes,
        },
        storing,
        client_usage: call.delivery.include_usage,
        charge: &charge,
        started: Instant::now(),
        before_end: &before_end,
        trace,
    };
    let upstream_started = streaming.started;
    if let (true, Some(every)) = (call.delivery.stream, state.config.stream_keepalive) {
        // The head goes out now; comment lines keep the connection busy until the upstream's.
        let mut outcome = None;
        if let Some(meter) = ex.take_meter() {
            *pending_charge.borrow_mut() = Some((meter, ex.access.clone()));
        }
        ex.answer_with(|req| {
            let Ok(mut out) = SseOut::start(Conn::of(req), &reply_extra) else {
                return (200, 0);
            };
            let posted = keepalive::while_waiting(&mut out, every, post);
            let (bytes, base, recorded, usage) = streaming.answer_late(posted, out);
            let sent_model = base.as_ref().map(|b| b.1.clone()).unwrap_or_default();
            outcome = Some((base.map(|b| b.0), recorded, usage, sent_model));
            (200, bytes)
        });
        // a late failure (no stream relayed) still counts against the key
        charge(Usage::default(), "");
        if let Some((base, recorded, usage, sent_model)) = outcome {
            ex.access.upstream = base.unwrap_or_default();
            ex.access.upstream_time = upstream_started.elapsed();
            traced_answer(trace, path, &recorded);
            ex.access.body_log_at = body_log::record(&ex.access.path, &call.body, 200, &recorded);
            ex.access.usage = usage;
            ex.access.sent_model = sent_model;
        }
        return Ok(());
    }
    let sent = post()?;
    ex.access.upstream = sent.base.clone();
    let status = sent.response.status().as_u16();
    let mut reply_headers = upstream::response_headers(sent.response.headers());
    reply_headers.extend(reply_extra);

    let effective = up.effective_model(&sent.endpoint, &model);
    ex.access.sent_model = effective.clone();
    if call.delivery.stream && is_event_stream(&sent) {
        let mut recorded = None;
        if let Some(meter) = ex.take_meter() {
            *pending_charge.borrow_mut() = Some((meter, ex.access.clone()));
        }
        ex.answer_with(|req| {
            let Ok(out) = SseOut::start(Conn::of(req), &reply_headers) else {
                return (200, 0); // the client left before the head was written
            };
            let (bytes, copy, usage) = streaming.relay(sent, out);
            recorded = Some((copy, usage));
            (200, bytes)
        });
        if let Some((recorded, usage)) = recorded {
            ex.access.upstream_time = upstream_started.elapsed();
            traced_answer(trace, path, &recorded);
            ex.access.body_log_at =
                body_log::record(&ex.access.path, &call.body, status, &recorded);
            ex.access.usage = usage;
        }
        return Ok(());
    }

    let whole = Whole {
        storing,
        effective: &effective,
        owns_response,
        owns_completion,
        started: upstream_started,
    };
    respond_whole(state, ex, &call, sent, reply_headers, whole)
}

/// Sends the call upstream (with failover), asking for usage with `ask_usage`: a server that
/// refuses `stream_options` gets the request again without it.
fn send(
    up: &upstream::Upstream,
    call: &Call,
    model: &str,
    mode: Mode,
    trace: Option<&crate::telemetry::Trace>,
    ask_usage: bool,
) -> Result<upstream::Sent, ApiError> {
    let (api, path) = (call.endpoint.api(), call.endpoint.path());
    if call.translation.is_some() && call.body.contains_key("stream_options") {
        // a translated stream asks for usage itself: a server that refuses the option gets
        // the request again without it (the answer then reports no usage)
        let sent = up.post(api, path, &call.headers, &call.body, model, mode, trace)?;
        return refused_stream_options(sent).or_else(|()| {
            let mut bare = call.body.clone();
            bare.remove("stream_options");
            up.post(api, path, &call.headers, &bare, model, mode, trace)
        });
    }
    if !ask_usage {
        return up.post(api, path, &call.headers, &call.body, model, mode, trace);
    }
    let mut asked = call.body.clone();
    ask_for_usage(&mut asked);
    let sent = up.post(api, path, &call.headers, &asked, model, mode, trace)?;
    refused_stream_options(sent).or_else(|()| {
        // sent again as the client sent it: the stream is stored without usage (and then
        // serves only streams that do not ask for it)
        up.post(api, path, &call.headers, &call.body, model, mode, trace)
    })
}

/// What [`respond_whole`] needs of the call beyond the request: where a complete success is
/// stored, the model the endpoint was sent, whether the caller owns a stored Responses answer,
/// and when the upstream call started.
struct Whole<'a> {
    storing: Option<(&'a cache::Cache, &'a cache::Plan)>,
    effective: &'a str,
    owns_response: bool,
    /// … or a chat completion it stores (`store: true`)
    owns_completion: bool,
    started: Instant,
}

/// A whole (not streamed) answer: read it, store a complete success before answering, record
/// it (trace, body log, usage), translate it for the client's API, charge, answer.
fn respond_whole(
    state: &State,
    ex: &mut Exchange,
    call: &Call,
    sent: upstream::Sent,
    mut reply_headers: Vec<(String, String)>,
    whole: Whole,
) -> Result<(), ApiError> {
    let status = sent.response.status().as_u16();
    let (api, path) = (call.endpoint.api(), call.endpoint.path());
    let client = ex.client().cloned();
    let trace = ex.trace();
    let data = state
        .upstream
        .read_body(&ex.access.upstream, sent.response.into_body())?;
    ex.access.upstream_time = whole.started.elapsed();
    traced_answer(trace.as_deref(), path, &data);
    // read once: the cache's check, the store, the meter and translation share the parse
    let read = Answer::read(api, &data);
    if let (true, Some((cache, p))) = ((200..300).contains(&status), whole.storing) {
        if cache.too_large(data.len()) {
            reply_headers.push((SKIP_HEADER.to_string(), SKIP_TOO_LARGE.to_string()));
        }
        // before answering, so the client's next request finds it
        cache.store(p, whole.effective, &data, &read);
    }
    if whole.owns_response && (200..300).contains(&status) {
        // before answering, so the client's next request finds the owner
        owners::record_response(state, client.as_ref(), &call.body, &data);
    }
    if whole.owns_completion && (200..300).contains(&status) {
        owners::record_stored_completion(state, client.as_ref(), &call.body, &data);
    }
    ex.access.body_log_at = body_log::record(&ex.access.path, &call.body, status, &data);
    ex.access.usage = read.usage.unwrap_or_default();
    let data = match &call.translation {
        Some(t) => translated_answer(t, status, &data, read.json.as_ref(), &mut reply_headers),
        None => data,
    };
    if let (Some(pending), true) = (&call.kept, (200..300).contains(&status)) {
        // before answering, so the client's next request finds it
        stored::keep_bytes(state, client.as_ref(), pending, &data);
    }
    ex.access.status = status;
    ex.charge(); // before answering, so the client's next request sees the charge
    ex.respond(status, &reply_headers, data);
    Ok(())
}

/// Tells the trace (if any) that the upstream's answer is in: a whole answer, or a stream's
/// recording (`path`: the upstream route, whose API it speaks). It reads a copy once the
/// client has its answer.
fn traced_answer(trace: Option<&crate::telemetry::Trace>, path: &str, answer: &[u8]) {
    if let Some(trace) = trace {
        trace.upstream_done();
        trace.answer(path, answer.to_vec(), cache::plain_answer);
    }
}

/// `Err(())` when `sent` is a 400 naming `stream_options` (some OpenAI-compatible servers
/// refuse the option the relay added); else the answer, its body put back if it was read.
fn refused_stream_options(sent: upstream::Sent) -> Result<upstream::Sent, ()> {
    if sent.response.status().as_u16() != 400 {
        return Ok(sent);
    }
    let (parts, body) = sent.response.into_parts();
    // read whole already, by `post`
    let text = upstream::read_limited(&sent.base, body, u64::MAX).unwrap_or_default();
    if String::from_utf8_lossy(&text).contains("stream_options") {
        return Err(());
    }
    let response = ureq::http::Response::from_parts(parts, ureq::Body::builder().data(text));
    Ok(upstream::Sent { response, ..sent })
}

/// Sets `stream_options.include_usage` (keeping any other stream options).
fn ask_for_usage(body: &mut Map<String, Value>) {
    let options = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Some(o) = options.as_object_mut() {
        o.insert("include_usage".to_string(), Value::Bool(true));
    }
}

/// A whole chat answer (or error) in the client's API; its content type becomes JSON.
/// `parsed`: `data` parsed as JSON already (`None`: it is not JSON).
fn translated_answer(
    translation: &Translation,
    status: u16,
    data: &[u8],
    parsed: Option<&Value>,
    headers: &mut Vec<(String, String)>,
) -> Vec<u8> {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    headers.push(json_content_type());
    if !(200..300).contains(&status) {
        return translation.error(status, data);
    }
    if let Some(chat) = parsed {
        return translation.answer(chat).to_string().into_bytes();
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(chat) => translation.answer(&chat).to_string().into_bytes(),
        Err(e) => translation.error(
            502,
            format!("the upstream's answer is not JSON: {e}").as_bytes(),
        ),
    }
}

/// Whether a body with `input` is an embeddings request rather than a Responses one: only the
/// embeddings API's keys, and an `input` of text or token ids (a Responses `input` may hold
/// message objects). `{"model", "input": "text"}` fits both and counts as embeddings.
fn looks_like_embeddings(body: &Map<String, Value>) -> bool {
    const EMBEDDINGS: [&str; 5] = ["model", "input", "encoding_format", "dimensions", "user"];
    let text_or_ids = |v: &Value| !v.is_object() && !v.is_array();
    body.keys().all(|k| EMBEDDINGS.contains(&k.as_str()))
        && match body.get("input") {
            Some(Value::Array(items)) => items
                .iter()
                .all(|i| text_or_ids(i) || i.as_array().is_some_and(|t| t.iter().all(text_or_ids))),
            _ => true,
        }
}

/// `cache why` (the command and the dashboard): prepares `body` as the relay would (translation,
/// rules, shaping, the keyed headers: [`prepare`] and [`keyed_body`]) on `route` (guessed from
/// the body when `None`), and asks the cache which keys it has and what is closest (reading at
/// most `bound`'s number of recorded requests).
pub fn why(
    cfg: &Config,
    route: Option<&str>,
    mut body: Map<String, Value>,
    mut headers: Vec<(String, String)>,
    bound: cache::WhyBound,
    responses: Option<&Responses>,
) -> Result<String, String> {
    let anthropic = headers
        .iter()
        .any(|(name, _)| name.to_ascii_lowercase().starts_with("anthropic-"));
    let endpoint = match route.map(|r| r.strip_prefix("/v1").unwrap_or(r)) {
        Some(r) => Endpoint::of_path(r).ok_or_else(|| {
            format!(
                "route {r}: use /chat/completions, /completions, /embeddings, /responses or \
                 /messages"
            )
        })?,
        None if body.contains_key("messages") && anthropic => Endpoint::Messages,
        None if body.contains_key("messages") => Endpoint::Chat,
        None if body.contains_key("prompt") => Endpoint::Completions,
        None if body.contains_key("input") && !looks_like_embeddings(&body) => Endpoint::Responses,
        None if body.contains_key("input") => Endpoint::Embeddings,
        None => {
            return Err(
                "cannot tell the route from the body; give the route (/chat/completions, \
                 /completions, /embeddings, /responses or /messages)"
                    .to_string(),
            )
        }
    };
    let continued = if translation(cfg, endpoint, &body) == Some(Dialect::Responses) {
        match stored::continued_for_why(cfg, &mut body, responses)? {
            Ok(continued) => continued,
            Err(explained) => return Ok(explained),
        }
    } else {
        None
    };
    let prepared = prepare(cfg, endpoint, &mut body, &mut headers).map_err(|e| e.message)?;
    let endpoint = prepared.sent;
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let models = cfg.upstreams.effective_models(endpoint.api(), model);
    let keyed = keyed_body(endpoint, &body, &headers);
    let text = cache::why_command(
        &cfg.cache,
        endpoint.path(),
        &keyed,
        &headers,
        &models,
        bound,
    )?;
    Ok(match continued {
        Some((id, n)) => format!(
            "continues the stored response {id}: its conversation ({n} items) is in front of \
             `input`, as the relay keys it\n{text}"
        ),
        None => text,
    })
}
