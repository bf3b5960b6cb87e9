//! A whole (not streamed) upstream answer: read once, stored before it is answered, recorded,
//! translated for the client's API, charged, answered ([`respond_whole`]).

use std::time::Instant;

use serde_json::{Map, Value};

use crate::answer::Answer;
use crate::cache;
use crate::error::ApiError;
use crate::exchange::{json_content_type, Exchange};
use crate::state::State;
use crate::streaming::{SKIP_HEADER, SKIP_TOO_LARGE};
use crate::translate::Translation;
use crate::upstream;
use crate::{body_log, owners, stored};

use super::Call;

/// What [`respond_whole`] needs of the call beyond the request: where a complete success is
/// stored, the model the endpoint was sent, whether the caller owns a stored Responses answer,
/// and when the upstream call started.
pub(super) struct Whole<'a> {
    pub(super) storing: Option<(&'a cache::Cache, &'a cache::Plan)>,
    pub(super) effective: &'a str,
    pub(super) owns_response: bool,
    /// … or a chat completion it stores (`store: true`)
    pub(super) owns_completion: bool,
    pub(super) started: Instant,
}

/// A whole (not streamed) answer: read it, store a complete success before answering, record
/// it (trace, body log, usage), translate it for the client's API, charge, answer.
pub(super) fn respond_whole(
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
    let mut sent = sent;
    let data = state.upstream.whole_bytes(&mut sent)?;
    ex.access.upstream_time = whole.started.elapsed();
    traced_answer(trace.as_deref(), path, &data);
    // read once: the cache's check, the store, the meter and translation share the parse;
    // the meter alone needs only the usage
    let read = if whole.storing.is_some() || call.translation.is_some() {
        Answer::read(api, &data)
    } else {
        Answer::read_usage(api, &data)
    };
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
pub(super) fn traced_answer(trace: Option<&crate::telemetry::Trace>, path: &str, answer: &[u8]) {
    if let Some(trace) = trace {
        trace.upstream_done();
        trace.answer(path, answer.to_vec(), cache::plain_answer);
    }
}

/// `Err(())` when `sent` is a 400 naming `stream_options` (some OpenAI-compatible servers
/// refuse the option the relay added); else the answer, its body put back if it was read.
pub(super) fn refused_stream_options(
    up: &upstream::Upstream,
    mut sent: upstream::Sent,
) -> Result<upstream::Sent, ()> {
    if sent.response.status().as_u16() != 400 {
        return Ok(sent);
    }
    let text = up.whole_bytes(&mut sent).unwrap_or_default();
    if String::from_utf8_lossy(&text).contains("stream_options") {
        return Err(());
    }
    sent.whole = Some(text);
    Ok(sent)
}

/// Sets `stream_options.include_usage` (keeping any other stream options).
pub(super) fn ask_for_usage(body: &mut Map<String, Value>) {
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
pub(super) fn translated_answer(
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
    match crate::json::from_slice::<Value>(data) {
        Ok(chat) => translation.answer(&chat).to_string().into_bytes(),
        Err(e) => translation.error(
            502,
            format!("the upstream's answer is not JSON: {e}").as_bytes(),
        ),
    }
}
