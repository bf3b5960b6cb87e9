//! What to answer a hit with, and recording a live stream.
//!
//! [`hit_answer`] says what to send, as a [`HitAnswer`] the pipeline writes: a plain request
//! gets JSON (a stored stream is assembled first); a streamed request gets SSE events (a stored
//! plain answer is cut into chunks first; a stored stream's usage chunk only if the client
//! asked for it), with the waits of `X-Relay-Cache-Timing` when it paces them. For a client
//! that speaks another API than the stored chat answer, the answer goes through [`crate::translate`] first. [`StreamTap`] is the
//! cache's side of a live stream: it holds back the usage chunk the relay asked for on the
//! client's behalf, and stores the complete stream before its final event reaches the client,
//! with the time before each event (so `X-Relay-Cache-Timing` can replay it at its pace).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::apis;
use super::replay::Delivery;
use super::{Cache, Entry, Plan};
use crate::sse_frame::Tap;
use crate::translate::Translation;

/// The longest wait before one replayed event (`X-Relay-Cache-Timing`).
const MAX_GAP: Duration = Duration::from_secs(60);

/// What to send for a hit; the pipeline writes it (`pipeline/hit.rs`), the cache never
/// writes HTTP itself.
#[derive(Debug)]
pub enum HitAnswer<'a> {
    /// A plain answer: 200 with [`hit_headers`] of `key` (the JSON content type is the
    /// writer's) and `body` (the entry's own bytes when it is stored as plain JSON).
    Json { key: &'a str, body: Cow<'a, [u8]> },
    /// A streamed answer: a 200 event stream with [`hit_headers`] of `key`, then `events` in
    /// order. With `waits`, the i-th event goes out (flushed on its own) after the i-th wait
    /// (an event past the waits goes at once); without, all are at hand and go out together.
    Events {
        key: &'a str,
        events: Vec<Vec<u8>>,
        waits: Option<Vec<Duration>>,
    },
}

/// The headers a hit on the entry of `key` carries (borrowed: a memory hit's answer was eight
/// allocations of them).
pub fn hit_headers(key: &str) -> [(&'static str, &str); 2] {
    [("X-Cache", "HIT"), ("X-Cache-Key", key)]
}

/// `entry` as the answer in `delivery`'s shape, translated by `translation` when the client
/// speaks another API than the stored chat answer. With `pace`, a streamed answer's i-th event
/// waits the recorded gap before the i-th event times `pace` (at most [`MAX_GAP`]); else events
/// go as fast as the client reads.
pub fn hit_answer<'a>(
    entry: &'a Entry,
    delivery: Delivery,
    translation: Option<&Translation>,
    pace: Option<f64>,
) -> HitAnswer<'a> {
    let key = entry.key.as_str();
    if !delivery.stream {
        let body = apis::plain_body_of(&entry.route, &entry.response);
        let body = match translation {
            Some(t) => {
                let chat: Value = crate::json::from_slice(&body).unwrap_or(Value::Null);
                Cow::Owned(t.answer(&chat).to_string().into_bytes())
            }
            None => body,
        };
        return HitAnswer::Json { key, body };
    }
    // a translated stream reports usage at its end, so it always takes the usage chunk
    let usage = delivery.include_usage || translation.is_some();
    let mut events = apis::stream_events(&entry.route, &entry.response, usage);
    if let Some(t) = translation {
        events = translate_events(t, &events);
    }
    let waits = pace.map(|f| {
        entry
            .gaps_ms
            .iter()
            .map(|&ms| Duration::from_secs_f64(f64::from(ms) / 1000.0 * f).min(MAX_GAP))
            .collect()
    });
    HitAnswer::Events { key, events, waits }
}

/// The cache's tap on a live stream (see the module doc).
pub struct StreamTap<'a> {
    /// The cache and plan to store into (`None`: nothing is stored), and the effective model
    /// the answering endpoint was sent.
    pub store: Option<(&'a Cache, &'a Plan, &'a str)>,
    pub route: &'a str,
    /// Whether the client asked for the usage chunk.
    pub client_usage: bool,
    /// When the upstream call started.
    started: Instant,
    /// Milliseconds counted into `gaps` so far.
    counted: u128,
    /// Milliseconds before each event so far.
    gaps: Vec<u32>,
}

impl<'a> StreamTap<'a> {
    /// `started`: when the upstream call started (the first gap counts from it).
    pub fn new(
        store: Option<(&'a Cache, &'a Plan, &'a str)>,
        route: &'a str,
        client_usage: bool,
        started: Instant,
    ) -> Self {
        StreamTap {
            store,
            route,
            client_usage,
            started,
            counted: 0,
            gaps: Vec::new(),
        }
    }

    /// Milliseconds since the previous event. Counted from the start, so the gaps add up to
    /// the stream's whole time (a clock restarted per event would drop each lap's fraction of a
    /// millisecond, and a long stream's gaps would fall short of it).
    fn lap(&mut self) -> u32 {
        let now = self.started.elapsed().as_millis();
        let ms = now.saturating_sub(self.counted);
        self.counted = now;
        u32::try_from(ms).unwrap_or(u32::MAX)
    }
}

/// The events of a stream's text (each ends with a blank line; a last unterminated one counts).
fn count_events(stream: &[u8]) -> usize {
    let (mut events, mut open) = (0, false);
    for line in crate::answer::lines(stream) {
        let blank = line.iter().all(|&b| b == b'\r');
        if blank && open {
            events += 1;
        }
        open = !blank;
    }
    events + usize::from(open)
}

impl Tap for StreamTap<'_> {
    fn pass(&mut self, event: &[u8]) -> bool {
        let gap = self.lap();
        self.gaps.push(gap);
        self.client_usage || !apis::is_usage_only(self.route, event)
    }

    fn complete(&mut self, recorded: &[u8]) {
        // told before the final event passes: its gap is the time until now
        if self.gaps.len() < count_events(recorded) {
            let gap = self.lap();
            self.gaps.push(gap);
        }
        if let Some((cache, plan, model)) = self.store {
            let read = super::apis::read(self.route, recorded);
            cache.store_timed(plan, model, recorded, &read, &self.gaps);
        }
    }
}

/// Chat SSE events → the client's events (one group per chat event, then the closing ones).
fn translate_events(translation: &Translation, events: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = translation.stream();
    let mut out: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            // extended line by line (collecting a flattened iterator copies byte by byte)
            let mut group = Vec::new();
            for line in e.split_inclusive(|&b| b == b'\n') {
                group.extend_from_slice(&stream.line(line));
            }
            group
        })
        .collect();
    out.push(stream.end());
    out.retain(|e| !e.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::{count_events, StreamTap};
    use crate::sse_frame::Tap;
    use std::time::{Duration, Instant};

    #[test]
    fn events_are_counted_by_their_blank_lines() {
        assert_eq!(count_events(b""), 0);
        assert_eq!(
            count_events(b"data: a\n\ndata: b\r\n\r\ndata: [DONE]\n\n"),
            3
        );
        assert_eq!(count_events(b"event: x\ndata: a\n\n\n\ndata: b"), 2);
    }

    #[test]
    fn recorded_gaps_add_up_to_the_streams_whole_time() {
        // events 0.6 ms apart: a clock restarted per event would record mostly 0 ms gaps
        let started = Instant::now();
        let mut tap = StreamTap::new(None, "/v1/chat/completions", true, started);
        for _ in 0..40 {
            std::thread::sleep(Duration::from_micros(600));
            tap.pass(b"data: {}\n\n");
        }
        let total: u128 = tap.gaps.iter().map(|&g| u128::from(g)).sum();
        // the whole time, in whole milliseconds, at the last event: at least 40 × 0.6 ms
        assert_eq!(total, tap.counted);
        assert!(total >= 24, "{:?}", tap.gaps);
        assert_eq!(tap.gaps.len(), 40);
    }
}
