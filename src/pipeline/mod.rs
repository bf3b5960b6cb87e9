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
//!
//! Here: the front ([`relay`]) and the plain data between the steps. `prepare.rs`: translation,
//! rules, shaping and the cache's keyed body; `call.rs`: the second part ([`upstream`] →
//! `call_upstream`: flight → send → stream relay); `whole.rs`: a whole answer; `why.rs`:
//! `llm-relay cache why`.

mod call;
mod hit;
mod prepare;
mod whole;
mod why;

use serde_json::{Map, Value};

use crate::api::Api;
use crate::body_cost::Reservation;
use crate::cache;
use crate::client_headers::ClientHeaders;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::intake;
use crate::state::State;
use crate::translate::{Dialect, Translation};
use crate::upstream::limit;
use crate::{models, owners, passthrough, stored};

use call::call_upstream;
use hit::{answer_hit, Keep};
use prepare::cacheable;
pub use prepare::{keyed_body, prepare, ruled_model, translation, Prepared};
pub use why::why;

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
    /// The client's `anthropic-*` headers stay behind ([`Prepared::drops_anthropic`]); the
    /// others are read from the request when the call is sent ([`sent_headers`]).
    drops_anthropic: bool,
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
    /// How long the request already waited for another leader of its key where it was
    /// received: the single flight's wait on the worker gets the rest of the first-byte timeout.
    followed: std::time::Duration,
}

/// The first part, where the request was received: body → rules → shaping → cache lookup (a
/// hit answers here) → forwardable headers → in-flight permit. The rest comes back as [`Next::Upstream`].
pub fn relay(state: &State, ex: &mut Exchange, endpoint: Endpoint) -> Result<Next, ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok(Next::Done);
    };
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
    fn model(body: &Map<String, Value>) -> &str {
        body.get("model").and_then(Value::as_str).unwrap_or("")
    }
    // a key's allow-list holds for the model it names and for the one the rules send upstream
    state.gate.allow_model(ex.client(), model(&body))?;
    let Prepared {
        sent: endpoint,
        mut translation,
        drops_anthropic,
    } = prepare(&state.config, endpoint, &mut body)?;
    if let (Some(t), Some(_)) = (&mut translation, &kept) {
        t.base = Some(stored::fresh_base()?);
    }
    if let (Some(t), Some(id)) = (&mut translation, previous) {
        t.repeat("previous_response_id", id);
    }
    ex.access.model = model(&body).to_string();
    state.gate.allow_model(ex.client(), &ex.access.model)?;
    let delivery = cache::Delivery::of(&body);

    let mut cached = None;
    let mut followed = std::time::Duration::ZERO;
    if let Some(cache) = &state.cache {
        let models = state
            .upstream
            .effective_models(endpoint.api(), &ex.access.model);
        let headers = sent_headers(ex, drops_anthropic);
        let keyed = keyed_body(endpoint, &body, headers);
        let plan = cache
            .plan(endpoint.path(), &keyed, (headers, ex.principal()), &models)?
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
            Err(cache::Status::Miss) if cacheable => {
                // a leader of this replica is fetching the same answer: wait for it here, on
                // this connection's thread, so a follower never holds a worker
                let limit = state.config.timeouts.first_byte;
                let started = std::time::Instant::now();
                if let Some(entry) = cache.follow_here(&plan, limit) {
                    let keep = Keep::of(state, ex, kept.as_ref(), translation.as_ref());
                    answer_hit(cache, &plan, &entry, ex, delivery, keep);
                    return Ok(Next::Done);
                }
                followed = started.elapsed();
                cached = Some((plan, cache::Status::Miss));
            }
            Err(status) if cacheable => cached = Some((plan, status)),
            Err(_) => {}
        }
    }
    state
        .upstream
        .check_forwardable(sent_headers(ex, drops_anthropic))?;
    let permit = state.upstream.limiter.try_acquire()?;
    Ok(Next::Upstream(Work::Call(Box::new(Call {
        endpoint,
        drops_anthropic,
        body,
        delivery,
        cached,
        translation,
        kept,
        _permit: permit,
        _reserved: reserved,
        followed,
    }))))
}

/// The client's headers as the call keys and sends them: read from the request where the
/// exchange holds it (no copy a request; none once it is answered), less the `anthropic-*`
/// ones when `drops_anthropic`.
fn sent_headers(ex: &Exchange, drops_anthropic: bool) -> ClientHeaders<'_> {
    ex.request()
        .map_or(ClientHeaders::none(), |req| {
            ClientHeaders::parsed(req.headers())
        })
        .without_anthropic(drops_anthropic)
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
