//! The second part of an API call, on the `workers` pool: [`call_upstream`] reads as its steps
//! — single flight ([`flight`]; a follower answers the leader's hit with `hit::answer_hit`), send
//! with failover ([`send`]), then the stream relay or the whole answer (`whole.rs`).

use std::cell::RefCell;
use std::time::Instant;

use serde_json::Value;

use crate::answer::Usage;
use crate::cache;
use crate::client_headers::ClientHeaders;
use crate::error::ApiError;
use crate::exchange::{Charge, Exchange};
use crate::sse;
use crate::sse_out::{Conn, SseOut};
use crate::state::State;
use crate::streaming::{is_event_stream, Streaming};
use crate::upstream::{self, Mode};
use crate::{body_log, keepalive, owners, stored};

use super::hit::{answer_hit, Keep};
use super::whole::{ask_for_usage, refused_stream_options, respond_whole, traced_answer, Whole};
use super::{Call, Endpoint};

/// What [`flight`] leaves for the upstream call: the leader's place in the single flight (held
/// until the call is done), the cache headers of the answer and the cache's plan.
pub(super) struct Flown<'a> {
    _leader: Option<cache::Leader<'a>>,
    reply_extra: Vec<(String, String)>,
    plan: Option<(&'a cache::Cache, &'a cache::Plan)>,
}

/// Single flight: a request the cache may store joins the flight of its key; a follower waits
/// for the leader and answers the hit it left. `None`: answered here (a hit).
pub(super) fn flight<'a>(state: &'a State, ex: &mut Exchange, call: &'a Call) -> Option<Flown<'a>> {
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
        let limit = state
            .config
            .timeouts
            .first_byte
            .saturating_sub(call.followed);
        match cache.join(p, limit) {
            cache::Role::Leader(guard) => flown._leader = Some(guard),
            cache::Role::Hit(entry) => {
                let keep = keep(ex);
                answer_hit(cache, p, &entry, ex, call.delivery, keep);
                return None;
            }
            cache::Role::Follower(flight) => {
                flight.wait(limit);
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

/// The most of a streamed answer recorded when no cache sets `max_entry_bytes`.
pub(super) const MAX_RECORD: u64 = 32 * 1024 * 1024;

/// Single flight ([`flight`]) → call an upstream endpoint with failover ([`send`]) → answer
/// as a stream relayed event by event (here), or whole ([`respond_whole`]); a complete success
/// is recorded in the cache before the client sees its end.
pub(super) fn call_upstream(state: &State, ex: &mut Exchange, call: Call) -> Result<(), ApiError> {
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
    let recorded_copy_read =
        storing.is_some() || ex.trace().is_some() || body_log::enabled() || read_by_owners;
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
    let post =
        |headers: ClientHeaders<'_>| send(up, &call, headers, &model, mode, trace, ask_usage);
    // A stream is charged from inside the writer, before its end, so a next request sees it.
    let pending_charge: RefCell<Charge> = RefCell::new(Charge::default());
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
    let charge =
        |usage: Usage, sent_model: &str| pending_charge.borrow_mut().now(usage, sent_model);
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
        *pending_charge.borrow_mut() = Charge::take(ex, 200);
        // the request is the connection's once the head is out: its headers go as a copy
        let held = super::sent_headers(ex, call.drops_anthropic).to_pairs();
        ex.answer_with(|req| {
            let Ok(mut out) = SseOut::start(Conn::of(req), &reply_extra) else {
                return (200, 0);
            };
            let posted =
                keepalive::while_waiting(&mut out, every, || post(ClientHeaders::pairs(&held)));
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
    let sent = post(super::sent_headers(ex, call.drops_anthropic))?;
    ex.access.upstream = sent.base.clone();
    let status = sent.response.status().as_u16();
    let mut reply_headers = upstream::response_headers(sent.response.headers());
    reply_headers.extend(reply_extra);

    let effective = up.effective_model(&sent.endpoint, &model);
    if effective != model {
        ex.access.sent_model = effective.to_string(); // else empty: the model asked for
    }
    if call.delivery.stream && is_event_stream(&sent) {
        let mut recorded = None;
        *pending_charge.borrow_mut() = Charge::take(ex, 200);
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
        effective,
        owns_response,
        owns_completion,
        started: upstream_started,
    };
    respond_whole(state, ex, &call, sent, reply_headers, whole)
}

/// Sends the call upstream (with failover), asking for usage with `ask_usage`: a server that
/// refuses `stream_options` gets the request again without it.
pub(super) fn send(
    up: &upstream::Upstream,
    call: &Call,
    headers: ClientHeaders<'_>,
    model: &str,
    mode: Mode,
    trace: Option<&crate::telemetry::Trace>,
    ask_usage: bool,
) -> Result<upstream::Sent, ApiError> {
    let (api, path) = (call.endpoint.api(), call.endpoint.path());
    if call.translation.is_some() && call.body.contains_key("stream_options") {
        // a translated stream asks for usage itself: a server that refuses the option gets
        // the request again without it (the answer then reports no usage)
        let sent = up.post(api, path, headers, &call.body, model, mode, trace)?;
        return refused_stream_options(up, sent).or_else(|()| {
            let mut bare = call.body.clone();
            bare.remove("stream_options");
            up.post(api, path, headers, &bare, model, mode, trace)
        });
    }
    if !ask_usage {
        return up.post(api, path, headers, &call.body, model, mode, trace);
    }
    let mut asked = call.body.clone();
    ask_for_usage(&mut asked);
    let sent = up.post(api, path, headers, &asked, model, mode, trace)?;
    refused_stream_options(up, sent).or_else(|()| {
        // sent again as the client sent it: the stream is stored without usage (and then
        // serves only streams that do not ask for it)
        up.post(api, path, headers, &call.body, model, mode, trace)
    })
}
