//! Relaying a chat stream to a client that speaks another API: each upstream line goes
//! through [`Stream`] and the events it yields are written and flushed at once.

use std::io::{self, BufRead};

use super::Stream;
use crate::sse::{Completion, End, Relayed, SseOut};

/// Reads the upstream chat stream line by line, writes the translated events to `out`
/// (flushed per upstream line that yields any), and records the upstream bytes (the cache
/// keeps the chat form). Ends like [`crate::sse::relay`]: complete at `[DONE]` or after a
/// `finish_reason`, else with the client API's error event.
pub fn relay(
    upstream: &mut dyn BufRead,
    out: &mut SseOut,
    describe_error: &dyn Fn(&io::Error) -> String,
    stream: &mut Stream,
) -> Relayed {
    let mut recorded = Vec::with_capacity(4096);
    let mut completion = Completion::default();
    let mut line = Vec::with_capacity(512);
    let gone = |recorded| Relayed {
        end: End::ClientGone,
        recorded,
    };
    let failure = loop {
        line.clear();
        match upstream.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(describe_error(&e)),
        }
        recorded.extend_from_slice(&line);
        completion.observe(&line);
        let events = stream.line(&line);
        if !events.is_empty() && out.write(&events).and_then(|()| out.flush()).is_err() {
            return gone(recorded);
        }
    };
    let mut end = match failure {
        None if completion.complete() => End::Complete,
        None => End::Interrupted("upstream closed the stream before it finished".to_string()),
        Some(msg) => End::Interrupted(msg),
    };
    // An error event inside the stream (already translated) makes it incomplete too.
    if end == End::Complete && stream.failed() {
        end = End::Interrupted("the upstream sent an error event".to_string());
    }
    let tail = match &end {
        End::Interrupted(msg) => stream.fail(msg),
        _ => stream.end(),
    };
    if out.write(&tail).and_then(|()| out.flush()).is_err() {
        return gone(recorded);
    }
    Relayed { end, recorded }
}
