//! What a pass-through call is charged to its key. Most pass-through routes report no tokens
//! (files, batches, speech, moderations, stored objects), so a call there counts as a request
//! and its status only. A few are billed by the tokens their answer reports ([`billed`]):
//! image generation and edits (`gpt-image-1`), transcription and translation
//! (`gpt-4o-transcribe`) and Responses' compaction. Their answer's top-level `usage` (whole,
//! or in a streamed event) is read as the bytes pass ([`Tokens`], with `answer::Members`:
//! an answer of megabytes of base64 images is never held), priced as the `model` the request
//! named, and charged once: before the answer's last bytes reach the client, so the client's
//! next request sees it, as on the pipeline's routes.

use crate::answer::{data_payload, lines, Api, Members, Usage};
use crate::exchange::{Charge, Exchange};
use crate::sse_frame::Tap;

/// Whether `method` on `route` (without `/v1`) is billed by the tokens its answer reports.
/// Objects that carry a `usage` of other calls (a batch, a stored response or completion read
/// or updated by id) are not: their tokens were, or will be, billed elsewhere.
pub fn billed(method: &str, route: &str) -> bool {
    method == "POST"
        && matches!(
            route,
            "/images/generations"
                | "/images/edits"
                | "/images/variations"
                | "/audio/transcriptions"
                | "/audio/translations"
                | "/responses/compact"
        )
}

/// The `usage` a billed answer reports, read as its bytes pass: a JSON body's top-level
/// member, or an event's (`image_generation.completed`, `transcript.text.done`). Read with
/// the Responses API's names (`input_tokens`, `output_tokens` and their details), which these
/// routes all use. The last one reported counts.
#[derive(Debug)]
pub struct Tokens {
    body: Members,
    usage: Option<Usage>,
}

const USAGE: &[&str] = &["usage"];

impl Default for Tokens {
    fn default() -> Tokens {
        Tokens {
            body: Members::new(USAGE),
            usage: None,
        }
    }
}

impl Tokens {
    /// The next bytes of a JSON body.
    pub fn body(&mut self, data: &[u8]) {
        self.body.feed(data);
    }

    /// One whole event of an event stream (its lines and blank line).
    pub fn event(&mut self, event: &[u8]) {
        let mut data = Members::new(USAGE);
        for payload in lines(event).filter_map(data_payload) {
            data.feed(payload);
            data.feed(b"\n"); // the lines of one event's data are joined by newlines
        }
        if let Some(usage) = data
            .get("usage")
            .and_then(|raw| Usage::of_text(Api::Responses, raw))
        {
            self.usage = Some(usage);
        }
    }

    /// What the answer reported so far (an event's, else the body's).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.or_else(|| {
            let raw = self.body.get("usage")?;
            Usage::of_text(Api::Responses, raw)
        })
    }
}

impl Tap for Tokens {
    fn pass(&mut self, event: &[u8]) -> bool {
        self.event(event);
        true
    }

    fn complete(&mut self, _recorded: &[u8]) {}
}

/// The charge of a billed call: the exchange's [`Charge`] and the tokens its answer reports,
/// made once with the tokens read so far, by [`Bill::now`] before the answer's last bytes, or
/// when dropped (an answer cut by the upstream or left by the client counts what it reported
/// before).
pub struct Bill {
    charge: Charge,
    pub tokens: Tokens,
}

impl Bill {
    /// Takes the exchange's charge for an answer of `status`.
    pub fn take(ex: &mut Exchange, status: u16) -> Bill {
        Bill {
            charge: Charge::take(ex, status),
            tokens: Tokens::default(),
        }
    }

    /// Charges now, with the usage read so far.
    pub fn now(&mut self) {
        self.charge.now(self.usage(), "");
    }

    /// The usage read so far (none: zeros).
    pub fn usage(&self) -> Usage {
        self.tokens.usage().unwrap_or_default()
    }
}

impl Drop for Bill {
    fn drop(&mut self) {
        self.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_billed_by_their_own_tokens_are_billed() {
        assert!(billed("POST", "/images/generations"));
        assert!(billed("POST", "/audio/transcriptions"));
        assert!(billed("POST", "/responses/compact"));
        assert!(!billed("GET", "/images/generations"));
        assert!(!billed("POST", "/batches"));
        assert!(!billed("POST", "/chat/completions/chatcmpl-1"));
        assert!(!billed("GET", "/responses/resp_1"));
        assert!(!billed("POST", "/audio/speech"));
    }

    #[test]
    fn an_event_with_usage_sets_it_and_others_leave_it() {
        let mut t = Tokens::default();
        t.event(b"event: image_generation.partial_image\ndata: {\"b64_json\":\"AAAA\"}\n\n");
        assert_eq!(t.usage(), None);
        t.event(
            b"event: image_generation.completed\ndata: {\"type\":\"image_generation.completed\",\n\
              data: \"usage\":{\"input_tokens\":50,\"output_tokens\":4160,\
              \"input_tokens_details\":{\"text_tokens\":50,\"image_tokens\":0}}}\n\n",
        );
        let u = t.usage().unwrap();
        assert_eq!((u.input, u.output), (50, 4160));
        t.event(b"data: {\"type\":\"done\",\"usage\":null}\n\n");
        assert_eq!(t.usage(), Some(u), "a null usage reports nothing");
    }

    #[test]
    fn a_body_in_pieces_gives_its_usage_with_cached_tokens_apart() {
        let body = br#"{"object":"response.compaction","output":[],"usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":600},"output_tokens":80,"output_tokens_details":{"reasoning_tokens":20}}}"#;
        let mut t = Tokens::default();
        for piece in body.chunks(5) {
            t.body(piece);
        }
        let u = t.usage().unwrap();
        assert_eq!(
            (u.input, u.cache_read, u.output, u.reasoning),
            (300, 600, 80, 20)
        );
    }
}
