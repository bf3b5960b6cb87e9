//! Answering a streamed API call: relaying the upstream's event stream to the client event by
//! event ([`Streaming::relay`]), keeping a complete one in the cache, and — with
//! `stream_keepalive_ms`, when the 200 head went out before the upstream answered — turning a
//! late upstream failure into the client API's error event ([`Streaming::answer_late`]). A
//! translated stream goes through a `translate::Stream` on its way.

use std::io::{BufReader, Read};
use std::time::Instant;

use crate::answer::Usage;
use crate::api::{self, Api};
use crate::cache::{self, Cache, Plan};
use crate::error::ApiError;
use crate::sse::{self, End};
use crate::sse_out::SseOut;
use crate::telemetry::Trace;
use crate::translate::Translation;
use crate::upstream::{self, Sent, Upstream};

/// Says why an answer the cache would have stored was not: larger than `max_entry_bytes`.
pub const SKIP_HEADER: &str = "X-Relay-Cache";
pub const SKIP_TOO_LARGE: &str = "skip-too-large";

/// The line buffer over a stream's upstream body. The body reader copies out of the pooled
/// connection's own input buffer (`upstream/slim.rs`), so this one only has to hold what one
/// read hands over (a longer line is read across fills; an LLM's events are a few hundred
/// bytes); it is held for the whole stream (issue 19: memory per open stream).
const READ_BUFFER_BYTES: usize = 1024;

/// A 200 `text/event-stream` answer (what a streamed request relays event by event).
pub fn is_event_stream(sent: &Sent) -> bool {
    sent.response.status().as_u16() == 200
        && sent
            .response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// The message of the error event that ends a stream the upstream at `base` broke (`e`).
pub fn broken_stream(base: &str, e: &std::io::Error) -> String {
    if upstream::is_timeout(e) {
        format!("upstream {base} went silent mid-stream (idle timeout): {e}")
    } else {
        format!("upstream {base} broke the stream: {e}")
    }
}

/// What relaying a stream to the client needs besides the stream.
pub struct Streaming<'a> {
    pub up: &'a Upstream,
    pub api: Api,
    /// The API route (the cache's rules for it).
    pub route: &'a str,
    /// The request's model after rules (an endpoint may send another: its override).
    pub model: &'a str,
    /// The client's API when the chat stream is translated for it.
    pub translation: Option<&'a Translation>,
    /// Most bytes of the stream recorded (the cache's entry limit) and of one upstream event
    /// (`max_event_bytes`).
    pub bounds: sse::Bounds,
    /// Where a complete stream goes (the cache, unless `no-store` or `read_only`).
    pub storing: Option<(&'a Cache, &'a Plan)>,
    /// Whether the client asked for the usage chunk (the relay may have asked for it anyway).
    pub client_usage: bool,
    /// Charges the stream to the client's key (given its usage and the model the upstream was
    /// sent), before its end.
    pub charge: &'a dyn Fn(Usage, &str),
    /// When the upstream call started: a kept stream's first recorded gap (its time to first
    /// event) counts from here.
    pub started: Instant,
    /// Given the recorded copy just before the stream's end reaches the client (the owner of a
    /// stored response is recorded there, so the client's next request finds it).
    pub before_end: &'a dyn Fn(&[u8]),
    /// The request's trace: told when the stream's first bytes arrive.
    pub trace: Option<&'a Trace>,
}

/// The upstream's stream, telling the trace when its first bytes arrive.
struct FirstBytes<'a, R> {
    inner: R,
    trace: Option<&'a Trace>,
}

impl<R: Read> Read for FirstBytes<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(trace) = self.trace.take() {
                trace.first_token();
            }
        }
        Ok(n)
    }
}

/// The base URL of the endpoint that answered a stream, and the model it was sent.
pub type Answered = (std::sync::Arc<str>, String);

impl Streaming<'_> {
    /// Relays `sent` (a 200 event stream) into `out` event by event, keeps a complete stream,
    /// and ends the answer. Returns the bytes written, the recorded copy and the usage.
    pub fn relay(&self, sent: Sent, mut out: SseOut) -> (u64, Vec<u8>, Usage) {
        let base = sent.base.clone();
        let describe = move |e: &std::io::Error| broken_stream(&base, e);
        let effective = self.up.effective_model(&sent.endpoint, self.model);
        // stores a complete stream before its final event reaches the client, and holds back
        // the usage chunk the client did not ask for
        let mut tap = cache::StreamTap::new(
            self.storing.map(|(c, p)| (c, p, effective)),
            self.route,
            // a translated stream reports usage at its end: the translator takes the chunk
            self.client_usage || self.translation.is_some(),
            self.started,
        );
        let body = FirstBytes {
            inner: sent.response.into_body().into_reader(),
            trace: self.trace,
        };
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, body);
        let mut translation = self.translation.map(Translation::stream);
        let relayed = sse::relay(
            sse::Kind::Api(self.api),
            &mut reader,
            &mut out,
            &describe,
            self.bounds,
            &mut tap,
            translation
                .as_mut()
                .map(|t| t as &mut dyn crate::sse_frame::Translate),
        );
        if matches!(relayed.end, End::Interrupted(_)) {
            self.up.stream_failed(&sent.endpoint);
        }
        if relayed.truncated && self.storing.is_some() && relayed.end != End::ClientGone {
            // The head is long gone: an SSE comment (ignored by clients) says it instead.
            let _ = out.write(format!(": {SKIP_HEADER}: {SKIP_TOO_LARGE}\n\n").as_bytes());
        }
        let bytes = out.bytes;
        let usage = relayed.usage.unwrap_or_default();
        (self.before_end)(&relayed.recorded);
        (self.charge)(usage, effective);
        if relayed.end != End::ClientGone {
            let _ = out.finish();
        }
        (bytes, relayed.recorded, usage)
    }

    /// The 200 head is already out (`stream_keepalive_ms`): an event stream is relayed as
    /// usual; anything else — an upstream error status, a failed call — becomes the API's error
    /// event. Returns the bytes written, the upstream's base URL and the model it was sent if
    /// one answered with a stream, the copy and its usage.
    pub fn answer_late(
        &self,
        posted: Result<Sent, ApiError>,
        mut out: SseOut,
    ) -> (u64, Option<Answered>, Vec<u8>, Usage) {
        let (base, message) = match posted {
            Ok(sent) if is_event_stream(&sent) => {
                let answered = (
                    sent.base.clone(),
                    self.up
                        .effective_model(&sent.endpoint, self.model)
                        .to_string(),
                );
                let (bytes, copy, usage) = self.relay(sent, out);
                return (bytes, Some(answered), copy, usage);
            }
            Ok(mut sent) => {
                let status = sent.response.status().as_u16();
                let body: String = self
                    .up
                    .whole_bytes(&mut sent)
                    .map(|b| String::from_utf8_lossy(&b).chars().take(2000).collect())
                    .unwrap_or_default();
                let message = format!("upstream {} answered {status}: {body}", sent.base);
                (Some(sent.base), message)
            }
            Err(err) => (None, err.message),
        };
        let cut = match self.translation {
            Some(t) => t.stream().fail(&message),
            None => api::cut_event(self.api, &message),
        };
        let _ = out.write(&cut);
        let bytes = out.bytes;
        let _ = out.finish();
        let base = base.map(|b| (b, String::new()));
        (bytes, base, Vec::new(), Usage::default())
    }
}
