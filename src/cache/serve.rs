//! Answering a hit, and recording a live stream.
//!
//! A plain request gets JSON (a stored stream is assembled first); a streamed request gets SSE
//! events (a stored plain answer is cut into chunks first; a stored stream's usage chunk only
//! if the client asked for it), written over the raw connection with [`SseOut`] and flushed
//! per event, as a live stream would be. For a client that speaks another API than the stored
//! chat answer, the answer goes through [`crate::translate`] first. [`StreamTap`] is the
//! cache's side of a live stream: it holds back the usage chunk the relay asked for on the
//! client's behalf, and stores the complete stream before its final event reaches the client.

use serde_json::Value;
use tiny_http::Request;

use super::apis;
use super::replay::Delivery;
use super::{Cache, Entry, Plan};
use crate::exchange::{json_content_type, respond};
use crate::sse::Tap;
use crate::sse_out::{Conn, SseOut};
use crate::translate::Translation;

/// Sends `entry` as the answer in `delivery`'s shape, translated by `translation` when the client
/// speaks another API than the stored chat answer. Returns the status and body bytes written.
pub fn respond_hit(
    req: Request,
    entry: &Entry,
    delivery: Delivery,
    translation: Option<&Translation>,
) -> (u16, u64) {
    let headers = vec![
        ("X-Cache".to_string(), "HIT".to_string()),
        ("X-Cache-Key".to_string(), entry.key.clone()),
    ];
    if !delivery.stream {
        let body = apis::plain_body(&entry.route, &entry.response);
        let body = match translation {
            Some(t) => {
                let chat: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                t.answer(&chat).to_string().into_bytes()
            }
            None => body,
        };
        let mut headers = headers;
        headers.push(json_content_type());
        return (200, respond(req, 200, &headers, body));
    }
    // a translated stream reports usage at its end, so it always takes the usage chunk
    let usage = delivery.include_usage || translation.is_some();
    let mut events = apis::stream_events(&entry.route, &entry.response, usage);
    if let Some(t) = translation {
        events = translate_events(t, &events);
    }
    let Ok(mut out) = SseOut::start(Conn::of(req), &headers) else {
        return (200, 0);
    };
    for e in &events {
        if out.write(e).and_then(|()| out.flush()).is_err() {
            return (200, out.bytes);
        }
    }
    let bytes = out.bytes;
    let _ = out.finish();
    (200, bytes)
}

/// The cache's tap on a live stream (see the module doc).
pub struct StreamTap<'a> {
    /// The cache and plan to store into (`None`: nothing is stored), and the effective model
    /// the answering endpoint was sent.
    pub store: Option<(&'a Cache, &'a Plan, &'a str)>,
    pub route: &'a str,
    /// Whether the client asked for the usage chunk.
    pub client_usage: bool,
}

impl Tap for StreamTap<'_> {
    fn pass(&mut self, event: &[u8]) -> bool {
        self.client_usage || !apis::is_usage_only(self.route, event)
    }

    fn complete(&mut self, recorded: &[u8]) {
        if let Some((cache, plan, model)) = self.store {
            cache.store(plan, model, recorded);
        }
    }
}

/// Chat SSE events → the client's events (one group per chat event, then the closing ones).
fn translate_events(translation: &Translation, events: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = translation.stream();
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
