//! Server-sent events: relaying a stream line by line, and writing one to the client.
//!
//! The client side is [`SseOut`] (in `sse_out.rs`), which flushes at every event boundary.
//! [`relay`] forwards each upstream event as its lines arrive, records a copy, and knows whether
//! the stream ended properly (chat: `data: [DONE]` or a `finish_reason`; the typed streams of
//! the Responses and Messages APIs: their terminal event, see `api`); a stream cut short ends
//! with an error event in the client API's shape instead of a silent cut. The upstream is read
//! in bounded pieces: one event (its lines and the blank line ending it) may take at most
//! `max_event_bytes`; a longer one — a line that never ends, an event that never gets its blank
//! line — ends the stream as cut short, and the rest is never read. A [`Tap`] sees every
//! event on the way: it may hold one back from the client, and it gets the complete recording
//! just before the stream's final event reaches the client (so the cache has it before the
//! client can ask again).

use std::io::{self, BufRead, Read};

use crate::answer::{data_payload, StreamUsage, Usage};
use crate::api::{self, Api, Completion, Ending};
use crate::sse_frame::{is_blank, Tap, Translate};
use crate::sse_out::SseOut;

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `data: [DONE]` or a `finish_reason` was seen and the upstream closed cleanly.
    Complete,
    /// The upstream stopped early or failed; the message says how.
    Interrupted(String),
    /// The client went away; the upstream was abandoned.
    ClientGone,
}

/// What [`relay`] did.
pub struct Relayed {
    pub end: End,
    /// Every byte received from the upstream, in order (the stream as recorded) — or, when
    /// `truncated`, only its last lines.
    pub recorded: Vec<u8>,
    /// The stream was longer than the recording cap: `recorded` holds its tail only, and it
    /// must not be stored.
    pub truncated: bool,
    /// The usage its events reported, read as they passed (so a stream longer than the
    /// recording still counts its first events' usage, e.g. Messages' `message_start`);
    /// `None` for a pass-through stream.
    pub usage: Option<Usage>,
}

/// What is kept of a stream past the recording cap: about this many bytes of its last lines.
const TAIL: usize = 64 * 1024;

/// The recorded copy of a stream, at most `cap` bytes; past it only the tail.
struct Recording {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Recording {
    fn push(&mut self, line: &[u8]) {
        if self.cap == 0 {
            return; // nothing reads this stream's copy: none is kept (`truncated` from the start)
        }
        if !self.truncated && self.bytes.len() + line.len() > self.cap {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(line);
        if self.truncated && self.bytes.len() > 2 * TAIL {
            // Keep whole lines: drop up to the first line start in the last TAIL bytes.
            let from = self.bytes.len() - TAIL;
            let cut = self
                .bytes
                .iter()
                .skip(from)
                .position(|&b| b == b'\n')
                .map_or(from, |i| from + i + 1);
            self.bytes.drain(..cut);
        }
    }
}

/// A tap that passes everything and keeps nothing (a pass-through stream).
pub struct NoTap;

impl Tap for NoTap {
    fn pass(&mut self, _event: &[u8]) -> bool {
        true
    }
    fn complete(&mut self, _recorded: &[u8]) {}
}

/// A client connection that keeps what is written to it (shared by its clones).
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Sink(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What stream [`relay`] relays, and so how it tells a proper end from a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stream of a client API the relay speaks: complete at that API's end
    /// (`api::Completion`); an upstream that closes before it cut it short.
    Api(Api),
    /// A pass-through stream of a route the relay does not know the events of: complete when
    /// the upstream closes it cleanly. The `Api` is the route's, for the error event of a
    /// stream the upstream breaks or that passes `max_event_bytes`.
    Passthrough(Api),
}

impl Kind {
    fn api(self) -> Api {
        match self {
            Kind::Api(api) | Kind::Passthrough(api) => api,
        }
    }
}

/// How much of a stream [`relay`] holds in memory.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most bytes of the stream recorded (past it, only the tail); 0: no copy at all, for a
    /// stream whose copy nothing reads.
    pub record: usize,
    /// Most bytes of one upstream event, its blank line included (`max_event_bytes`).
    pub event: usize,
}

/// Forwards `upstream` (a stream of `kind`) to `out` event by event (each flushed as its
/// blank line arrives), and records a copy of at most `bounds.record` bytes (past it, only the
/// tail). An event longer than `bounds.event` ends the stream as cut short: it is not passed
/// on, and the upstream is read no further. `describe_error` turns a read error into the message of the closing error event;
/// `tap` may hold events back and is told when the stream is complete (only if it was recorded
/// whole). With `translate`, the client gets the translated events instead of the upstream's
/// (the recording, and what the tap sees, stay the upstream's).
pub fn relay(
    kind: Kind,
    upstream: &mut dyn BufRead,
    out: &mut SseOut,
    describe_error: &dyn Fn(&io::Error) -> String,
    bounds: Bounds,
    tap: &mut dyn Tap,
    mut translate: Option<&mut dyn Translate>,
) -> Relayed {
    let mut recorded = Recording {
        bytes: Vec::with_capacity(bounds.record.min(4096)),
        cap: bounds.record,
        truncated: bounds.record == 0,
    };
    let api = kind.api();
    let mut completion = Completion::new(api);
    // a pass-through stream's events are not its API's: its caller reads what it needs (a
    // billed call's `usage`) through its tap, and no event is parsed here for it
    let reads_usage = matches!(kind, Kind::Api(_));
    let mut usage = StreamUsage::new(api);
    let mut line = Vec::with_capacity(512);
    let mut event = Vec::with_capacity(1024);
    let mut told = false;
    let failure = loop {
        line.clear();
        // one byte more than the event may still take tells an oversized event from a full one
        let room = bounds.event.saturating_sub(event.len());
        match Read::take(&mut *upstream, (room as u64).saturating_add(1))
            .read_until(b'\n', &mut line)
        {
            Ok(0) => break None,
            Ok(n) if n > room => {
                // the event is dropped whole; the rest of the upstream is never read
                event.clear();
                let e = io::Error::new(io::ErrorKind::InvalidData, oversized(bounds.event));
                break Some(describe_error(&e));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(describe_error(&e)),
        }
        recorded.push(&line);
        completion.observe(&line);
        if let Some(data) = data_payload(&line).filter(|_| reads_usage) {
            usage.observe_data(data);
        }
        event.extend_from_slice(&line);
        if !is_blank(&line) {
            continue;
        }
        if (completion.done || completion.ending == Ending::Succeeded) && !told {
            told = true;
            if !recorded.truncated {
                tap.complete(&recorded.bytes);
            }
        }
        let sent = !tap.pass(&event) || write_event(out, &event, translate.as_deref_mut());
        event.clear();
        if !sent {
            return Relayed {
                end: End::ClientGone,
                recorded: recorded.bytes,
                truncated: recorded.truncated,
                usage: usage.usage(),
            };
        }
    };
    let mut end = match failure {
        None if completion.complete() || matches!(kind, Kind::Passthrough(_)) => End::Complete,
        None => End::Interrupted("upstream closed the stream before it finished".to_string()),
        Some(msg) => End::Interrupted(msg),
    };
    if end == End::Complete && !told && !recorded.truncated {
        tap.complete(&recorded.bytes);
    }
    let mut tail = std::mem::take(&mut event);
    if let Some(t) = translate {
        // a half-written last event still goes through the translator
        let mut bytes = translated(t, &tail);
        if end == End::Complete && t.failed() {
            end = End::Interrupted("the upstream sent an error event".to_string());
        }
        bytes.extend(match &end {
            End::Interrupted(msg) => t.fail(msg),
            _ => t.end(),
        });
        tail = bytes;
    } else {
        if !tail.is_empty() {
            // close a half-written event so the client's parser sees it end
            tail.extend_from_slice(if tail.ends_with(b"\n") {
                b"\n"
            } else {
                b"\n\n"
            });
        }
        if let End::Interrupted(msg) = &end {
            tail.extend_from_slice(&api::cut_event(api, msg));
        }
    }
    let written = out.write(&tail).and_then(|_| out.flush());
    Relayed {
        end: if written.is_err() {
            End::ClientGone
        } else {
            end
        },
        recorded: recorded.bytes,
        truncated: recorded.truncated,
        usage: usage.usage(),
    }
}

/// Why a stream was cut at an event over `max_event_bytes` (`max`).
fn oversized(max: usize) -> String {
    format!(
        "it sent an event longer than max_event_bytes ({max} bytes) without ending it, so the \
         stream was cut (raise max_event_bytes if the upstream really sends such events)"
    )
}

/// Writes one whole upstream event (its lines and the blank line ending it) to the client,
/// translated if asked, and flushes it. False once the client is gone.
fn write_event<'t>(
    out: &mut SseOut,
    event: &[u8],
    translate: Option<&mut (dyn Translate + 't)>,
) -> bool {
    let written = match translate {
        None => out.write(event),
        Some(t) => {
            let events = translated(t, event);
            if events.is_empty() {
                return true;
            }
            out.write(&events)
        }
    };
    written.and_then(|()| out.flush()).is_ok()
}

/// The client's bytes for the upstream lines of `event`.
fn translated(t: &mut dyn Translate, event: &[u8]) -> Vec<u8> {
    // extended line by line (collecting a flattened iterator copies byte by byte); the lines
    // (each with its `\n`, as `split_inclusive` gives them) found with memchr, not a closure
    // per byte
    let mut out = Vec::new();
    let mut rest = event;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
        let (line, after) = rest.split_at(end);
        crate::util::append(&mut out, t.line(line));
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests;
