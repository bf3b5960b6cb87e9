//! Answering a hit: the stored response in the mode the client asked for.
//!
//! A plain request gets JSON (a stored stream is assembled first); a streamed request gets SSE
//! events (a stored plain answer is cut into chunks first), written over the raw connection
//! with [`SseOut`] and flushed per event, as a live stream would be. For a client that speaks
//! another API than the stored chat answer, the answer goes through [`crate::translate`] first.

use serde_json::Value;
use tiny_http::Request;

use super::replay::{self, Form};
use super::{apis, Entry};
use crate::api::Api;
use crate::exchange::{json_content_type, respond};
use crate::sse::SseOut;
use crate::translate::{self, Dialect};

/// Sends `entry` (stored for a route of `api`) as the answer, translated for `dialect` when the
/// client speaks another API than the stored chat answer. Returns the status and body bytes
/// written.
pub fn respond_hit(
    req: Request,
    api: Api,
    key: &str,
    entry: &Entry,
    (stream, include_usage): (bool, bool),
    dialect: Option<Dialect>,
) -> (u16, u64) {
    let headers = vec![
        ("X-Cache".to_string(), "HIT".to_string()),
        ("X-Cache-Key".to_string(), key.to_string()),
    ];
    let form = replay::form(&entry.response);
    if !stream {
        let body = match form {
            Form::Json => entry.response.clone(),
            Form::Sse => match apis::sse_to_json(api, &entry.response) {
                Some(v) => v.to_string().into_bytes(),
                None => entry.response.clone(),
            },
        };
        let body = match dialect {
            Some(d) => {
                let chat: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                translate::from_chat(d, &chat).to_string().into_bytes()
            }
            None => body,
        };
        let mut headers = headers;
        headers.push(json_content_type());
        return (200, respond(req, 200, &headers, body));
    }
    let converted;
    let mut events: Vec<&[u8]> = match form {
        Form::Sse => replay::events(&entry.response),
        Form::Json => {
            let answer: Value = serde_json::from_slice(&entry.response).unwrap_or(Value::Null);
            // a translated stream reports usage at its end, so it always asks for it
            converted = apis::json_to_sse(api, &answer, include_usage || dialect.is_some());
            converted.iter().map(Vec::as_slice).collect()
        }
    };
    let translated: Vec<Vec<u8>>;
    if let Some(d) = dialect {
        translated = translate_events(d, &events);
        events = translated.iter().map(Vec::as_slice).collect();
    }
    let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
    let Ok(mut out) = SseOut::start(req.into_writer(), http11, &headers) else {
        return (200, 0);
    };
    for e in events {
        if out.write(e).and_then(|()| out.flush()).is_err() {
            return (200, out.bytes);
        }
    }
    let bytes = out.bytes;
    let _ = out.finish();
    (200, bytes)
}

/// Chat SSE events → the client's events (one group per chat event, then the closing ones).
fn translate_events(dialect: Dialect, events: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut stream = translate::Stream::new(dialect);
    let mut out: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            e.split_inclusive(|&b| b == b'\n')
                .flat_map(|line| stream.line(line))
                .collect()
        })
        .collect();
    out.push(stream.end());
    out.retain(|e| !e.is_empty());
    out
}
