//! Routing and the request pipeline: which path does what, and the relay of one API call.
//!
//! [`handle`] maps a path (with or without the `/v1` prefix) to a handler, after the gate
//! (client key, rate limit). [`relay`] and [`call_upstream`] are the pipeline of one API call,
//! readable top to bottom: read the body → apply model rules → shape chat requests → cache
//! lookup (a hit answers here, on the front threads) → single-flight → call an upstream
//! endpoint (with failover, within the in-flight limit) → answer (whole, or as a stream relayed
//! event by event) → record a complete success in the cache.

use std::io::{BufReader, Read};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tiny_http::{Method, Request};

use crate::admin;
use crate::cache;
use crate::error::ApiError;
use crate::intake::{self, Deadline};
use crate::log::Access;
use crate::server::{json_content_type, respond, respond_error, Handled, State};
use crate::shape;
use crate::sse::{self, End, SseOut};
use crate::translate::{self, Dialect};
use crate::upstream::{self, limit, Mode, NOT_RETURNED};
use crate::{body_log, lifecycle, metrics, rules, usage};

/// The OpenAI endpoints the relay forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path below the upstream base URL (which includes `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// Handles one request on a front thread. `slot` holds the request until a response is sent
/// (then it is taken); `access` collects what the access log records. Work that needs the
/// upstream comes back as [`Handled::Continue`] for the `workers` pool.
pub fn handle(state: &State, slot: &mut Option<Request>, access: &mut Access) -> Handled {
    let Some(req) = slot.as_ref() else {
        return Handled::Done;
    };
    let path = access.path.clone();
    let route = path
        .strip_prefix("/v1")
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(&path);
    let method = req.method().clone();
    let client = match state.gate.check(route, req) {
        Ok(client) => client,
        Err(refusal) => {
            state.gate.refuse(slot, access, *refusal);
            return Handled::Done;
        }
    };
    let result = match (route, &method) {
        ("/health", Method::Get | Method::Head) => {
            reply_json(slot, access, 200, br#"{"status":"ok"}"#.to_vec());
            Ok(Handled::Done)
        }
        ("/ready", Method::Get | Method::Head) => {
            let (status, body) = lifecycle::readiness(&state.upstream.health());
            reply_json(slot, access, status, body);
            Ok(Handled::Done)
        }
        ("/metrics", Method::Get) => {
            let ct = (
                "Content-Type".to_string(),
                metrics::CONTENT_TYPE.to_string(),
            );
            access.status = 200;
            if let Some(req) = slot.take() {
                if let Some(cache) = &state.cache {
                    let c = &cache.counters;
                    metrics::cache_size(
                        c.entries.load(std::sync::atomic::Ordering::Relaxed),
                        c.bytes.load(std::sync::atomic::Ordering::Relaxed),
                    );
                }
                let mut text = metrics::render();
                metrics::render_upstreams(&mut text, &state.upstream.health());
                access.bytes = respond(req, 200, &[ct], text.into_bytes());
            }
            Ok(Handled::Done)
        }
        ("/cache/stats", Method::Get) => {
            let body = match &state.cache {
                Some(cache) => cache.stats_json(),
                None => br#"{"enabled":false}"#.to_vec(),
            };
            reply_json(slot, access, 200, body);
            Ok(Handled::Done)
        }
        ("/chat/completions", Method::Post) => relay(state, slot, access, Endpoint::Chat, None),
        ("/completions", Method::Post) => relay(state, slot, access, Endpoint::Completions, None),
        ("/embeddings", Method::Post) => relay(state, slot, access, Endpoint::Embeddings, None),
        // Clients of other APIs, translated to Chat Completions for the endpoint.
        ("/messages", Method::Post) => relay(
            state,
            slot,
            access,
            Endpoint::Chat,
            Some(Dialect::Anthropic),
        ),
        ("/responses", Method::Post) => relay(
            state,
            slot,
            access,
            Endpoint::Chat,
            Some(Dialect::Responses),
        ),
        ("/models", Method::Get) => Ok(Handled::Continue(Box::new(|state, slot, access| {
            if let Err(err) = models(state, slot, access) {
                answer_error(slot, access, &err);
            }
        }))),
        ("/openapi.json", Method::Get) => {
            let doc = include_str!("../openapi.json").as_bytes().to_vec();
            reply_json(slot, access, 200, doc);
            Ok(Handled::Done)
        }
        (r, _) if r.starts_with("/admin/") => {
            admin::handle(state, slot, access, r, &method).map(|()| Handled::Done)
        }
        ("/__test/panic", Method::Get) if state.test_hooks => {
            panic!("test hook: deliberate panic")
        }
        ("/health" | "/models" | "/ready" | "/metrics" | "/cache/stats", _) => {
            Err(ApiError::method_not_allowed(method.as_str(), &path, "GET"))
        }
        ("/chat/completions" | "/completions" | "/embeddings" | "/messages" | "/responses", _) => {
            Err(ApiError::method_not_allowed(method.as_str(), &path, "POST"))
        }
        _ => Err(ApiError::not_found(&path)),
    };
    match result {
        Ok(Handled::Continue(next)) => Handled::Continue(Box::new(move |state, slot, access| {
            next(state, slot, access);
            state.gate.record(client.as_ref(), access);
        })),
        Ok(Handled::Done) => {
            state.gate.record(client.as_ref(), access);
            Handled::Done
        }
        Err(err) => {
            answer_error_as(slot, access, &err, client_dialect(route));
            state.gate.record(client.as_ref(), access);
            Handled::Done
        }
    }
}

/// The API a route's clients speak when it is not OpenAI's (their errors take its shape).
fn client_dialect(route: &str) -> Option<Dialect> {
    (route == "/messages").then_some(Dialect::Anthropic)
}

fn answer_error(slot: &mut Option<Request>, access: &mut Access, err: &ApiError) {
    answer_error_as(slot, access, err, None);
}

/// Answers `err` in the client API's error shape (OpenAI's unless `dialect` is Anthropic).
fn answer_error_as(
    slot: &mut Option<Request>,
    access: &mut Access,
    err: &ApiError,
    dialect: Option<Dialect>,
) {
    access.status = err.status;
    let Some(req) = slot.take() else {
        return;
    };
    access.bytes = match dialect {
        Some(Dialect::Anthropic) => respond(
            req,
            err.status,
            &[json_content_type()],
            translate::anthropic_error(err.status, &err.message),
        ),
        _ => respond_error(req, err),
    };
}

/// The pipeline of one API call, first part (front threads): read the body → translate it to
/// a chat request if the client speaks another API (`dialect`) → apply model rules → shape chat
/// requests → cache lookup; a hit is answered here. Anything else takes an in-flight permit
/// and continues in [`call_upstream`] on the `workers` pool.
fn relay(
    state: &State,
    slot: &mut Option<Request>,
    access: &mut Access,
    endpoint: Endpoint,
    dialect: Option<Dialect>,
) -> Result<Handled, ApiError> {
    let Some(req) = slot.as_mut() else {
        return Ok(Handled::Done);
    };
    let mut headers = request_headers(req);
    intake::check_content_type(req)?;
    let raw = read_body(
        req,
        state.config.max_body_bytes,
        state.config.client_timeout,
    )?;
    let mut body = parse_body(&raw)?;
    if let Some(d) = dialect {
        body = translate::to_chat(d, &body)
            .map_err(|e| ApiError::invalid("untranslatable_field", e.message()))?;
        // the client API's own headers mean nothing to a chat endpoint
        headers.retain(|(name, _)| !name.to_ascii_lowercase().starts_with("anthropic-"));
    }
    rules::apply(&state.config.rules, &mut body);
    if endpoint == Endpoint::Chat {
        shape::apply_chat(&state.config.shaping, &mut body);
    }
    access.model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let stream = body.get("stream") == Some(&Value::Bool(true));
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));

    let mut cached = None;
    if let Some(cache) = &state.cache {
        let plan = cache.plan(endpoint.path(), &body, &headers);
        match cache.lookup(&plan) {
            Ok(entry) => {
                let mode = (stream, include_usage);
                answer_hit(cache, &plan, &entry, slot, access, mode, dialect);
                return Ok(Handled::Done);
            }
            Err(status) => cached = Some((plan, status)),
        }
    }
    let permit = match state.upstream.limiter.try_acquire() {
        Ok(permit) => permit,
        Err(busy) => {
            reply_busy(slot, access, &busy);
            return Ok(Handled::Done);
        }
    };
    let call = Call {
        endpoint,
        headers,
        body,
        stream,
        include_usage,
        cached,
        dialect,
    };
    Ok(Handled::Continue(Box::new(move |state, slot, access| {
        let _in_flight = permit;
        if let Err(err) = call_upstream(state, slot, access, call) {
            answer_error_as(slot, access, &err, dialect);
        }
    })))
}

/// Answers a cache hit; `mode` is (streamed, include_usage) as the client asked, `dialect`
/// the client's API when its answers are translated.
fn answer_hit(
    cache: &cache::Cache,
    plan: &cache::Plan,
    entry: &cache::Entry,
    slot: &mut Option<Request>,
    access: &mut Access,
    mode: (bool, bool),
    dialect: Option<Dialect>,
) {
    if let Some(req) = slot.take() {
        cache.served(&plan.key, entry);
        access.cache = "hit";
        (access.status, access.bytes) = cache::respond_hit(req, &plan.key, entry, mode, dialect);
    }
}

/// A request on its way upstream.
struct Call {
    endpoint: Endpoint,
    headers: Vec<(String, String)>,
    /// The body after rules and shaping (the per-endpoint `model` override comes at send time).
    body: Map<String, Value>,
    stream: bool,
    include_usage: bool,
    /// The cache's plan and why it did not answer, when the cache is on.
    cached: Option<(cache::Plan, cache::Status)>,
    /// The client's API when it is not Chat Completions: answers are translated back.
    dialect: Option<Dialect>,
}

/// The pipeline, second part (`workers` pool): single-flight → call an upstream endpoint (with
/// failover) → answer (whole, or as a stream relayed event by event) → record a complete
/// success in the cache.
fn call_upstream(
    state: &State,
    slot: &mut Option<Request>,
    access: &mut Access,
    call: Call,
) -> Result<(), ApiError> {
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
                        let mode = (call.stream, call.include_usage);
                        answer_hit(cache, plan, &entry, slot, access, mode, call.dialect);
                        return Ok(());
                    }
                }
            }
        }
        if *status != cache::Status::Bypass {
            cache.missed();
        }
        access.cache = status.label();
        reply_extra.push(("X-Cache".to_string(), status.header().to_string()));
        reply_extra.push(("X-Cache-Key".to_string(), plan.key.clone()));
    }
    // Where a complete success goes: the cache, unless `no-store`.
    let record = |response: &[u8]| {
        if let (Some(cache), Some((plan, status))) = (cache, &call.cached) {
            if *status != cache::Status::Bypass {
                cache.store(plan, response);
            }
        }
    };

    let up = &state.upstream;
    let mode = if call.stream {
        Mode::Stream
    } else {
        Mode::Whole
    };
    let upstream_started = Instant::now();
    let sent = up.post(
        call.endpoint.path(),
        &call.headers,
        &call.body,
        &access.model,
        mode,
    )?;
    access.upstream = sent.base.clone();
    let response = sent.response;
    let status = response.status().as_u16();
    let mut reply_headers = response_headers(response.headers());
    reply_headers.extend(reply_extra);
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if call.stream && status == 200 && is_sse {
        let Some(req) = slot.take() else {
            return Ok(());
        };
        access.status = 200;
        let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let Ok(mut out) = SseOut::start(req.into_writer(), http11, &reply_headers) else {
            return Ok(()); // the client left before the head was written
        };
        let mut reader = BufReader::with_capacity(16 * 1024, response.into_body().into_reader());
        let base = sent.base.clone();
        let describe = move |e: &std::io::Error| {
            if upstream::is_timeout(e) {
                format!("upstream {base} went silent mid-stream (idle timeout): {e}")
            } else {
                format!("upstream {base} broke the stream: {e}")
            }
        };
        let relayed = match call.dialect {
            Some(d) => translate::relay::relay(
                &mut reader,
                &mut out,
                &describe,
                &mut translate::Stream::new(d),
            ),
            None => sse::relay(&mut reader, &mut out, &describe),
        };
        access.bytes = out.bytes;
        if relayed.end == End::Complete {
            record(&relayed.recorded); // before the stream's end, so a next request finds it
        } else if matches!(relayed.end, End::Interrupted(_)) {
            up.stream_failed(&sent.endpoint);
        }
        if relayed.end != End::ClientGone {
            let _ = out.finish();
        }
        access.upstream_time = upstream_started.elapsed();
        body_log::record(&access.path, &call.body, status, &relayed.recorded);
        (access.prompt_tokens, access.completion_tokens) = usage::stream_tokens(&relayed.recorded);
        return Ok(());
    }

    let data = upstream::read_body(&access.upstream, response.into_body())?;
    access.upstream_time = upstream_started.elapsed();
    access.status = status;
    if (200..300).contains(&status) {
        record(&data); // before answering, so the client's next request finds it
    }
    body_log::record(&access.path, &call.body, status, &data);
    (access.prompt_tokens, access.completion_tokens) = usage::tokens(&data);
    let data = match call.dialect {
        Some(d) => translated_answer(d, status, &data, &mut reply_headers),
        None => data,
    };
    if let Some(req) = slot.take() {
        access.bytes = respond(req, status, &reply_headers, data);
    }
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

/// `GET /v1/models`: the upstream's list plus each rule's model name, so clients can discover
/// the aliases the rules define.
fn models(state: &State, slot: &mut Option<Request>, access: &mut Access) -> Result<(), ApiError> {
    let Some(req) = slot.as_ref() else {
        return Ok(());
    };
    let auth = header(req, "authorization");
    let sent = state.upstream.get("/models", auth.as_deref())?;
    access.upstream = sent.base;
    let response = sent.response;
    let status = response.status().as_u16();
    let headers = response_headers(response.headers());
    let data = upstream::read_body(&access.upstream, response.into_body())?;
    let merged = (status == 200)
        .then(|| add_aliases(&data, &state.config.rules))
        .flatten();
    access.status = status;
    if let Some(req) = slot.take() {
        access.bytes = match merged {
            Some(body) => {
                let mut headers: Vec<_> = headers
                    .into_iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
                    .collect();
                headers.push(json_content_type());
                respond(req, status, &headers, body)
            }
            None => respond(req, status, &headers, data),
        };
    }
    Ok(())
}

/// Appends `{"id": alias, "object": "model", "owned_by": "llm-relay"}` for each rule alias not
/// already listed. `None` if the upstream's body is not a model list.
fn add_aliases(data: &[u8], rules: &[rules::Rule]) -> Option<Vec<u8>> {
    let mut list: Value = serde_json::from_slice(data).ok()?;
    let entries = list.get_mut("data")?.as_array_mut()?;
    for alias in rules::aliases(rules) {
        let known = entries
            .iter()
            .any(|m| m.get("id").and_then(Value::as_str) == Some(alias));
        if !known {
            entries.push(serde_json::json!({
                "id": alias, "object": "model", "created": 0, "owned_by": "llm-relay"
            }));
        }
    }
    serde_json::to_vec(&list).ok()
}

/// 503 with `Retry-After` when `max_concurrent_requests` calls are already in flight.
fn reply_busy(slot: &mut Option<Request>, access: &mut Access, busy: &ApiError) {
    access.status = busy.status;
    if let Some(req) = slot.take() {
        let retry_after = (
            "Retry-After".to_string(),
            limit::RETRY_AFTER_SECS.to_string(),
        );
        access.bytes = respond(
            req,
            busy.status,
            &[json_content_type(), retry_after],
            busy.body(),
        );
    }
}

fn reply_json(slot: &mut Option<Request>, access: &mut Access, status: u16, body: Vec<u8>) {
    access.status = status;
    if let Some(req) = slot.take() {
        access.bytes = respond(req, status, &[json_content_type()], body);
    }
}

/// Reads the request body, refusing more than `max` bytes (by Content-Length before reading
/// anything, and by counting for chunked bodies).
fn read_body(req: &mut Request, max: u64, budget: Duration) -> Result<Vec<u8>, ApiError> {
    let announced = req.body_length().map(|n| n as u64);
    if announced.is_some_and(|n| n > max) {
        return Err(ApiError::too_large(max));
    }
    let mut buf = Vec::with_capacity(announced.unwrap_or(0) as usize);
    Deadline::new(req.as_reader(), budget)
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| intake::body_error(&e, budget))?;
    if buf.len() as u64 > max {
        return Err(ApiError::too_large(max));
    }
    Ok(buf)
}

/// Parses an API request body: a JSON object with a string `model`.
fn parse_body(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::invalid(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid(
            "invalid_request",
            "the request body must be a JSON object".to_string(),
        ));
    };
    if body
        .get("stream")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(ApiError::invalid(
            "invalid_request",
            "`stream` must be true or false".to_string(),
        ));
    }
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(body),
        _ => Err(ApiError::invalid(
            "invalid_request",
            "the request body needs a `model` string, e.g. {\"model\": \"gpt-4o-mini\", ...}"
                .to_string(),
        )),
    }
}

fn request_headers(req: &Request) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
        .collect()
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

/// Upstream response headers that pass to the client.
fn response_headers(map: &ureq::http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter(|(name, _)| !NOT_RETURNED.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}
