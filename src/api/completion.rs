//! Whether a stream has ended properly, one line at a time, in each API's terms: chat at
//! `data: [DONE]` or a `finish_reason`, the typed streams at their terminal event (see
//! [`super::terminal`]). The relay loop (`sse/`) and the cache's checks (`cache/replay`)
//! both ask it.

use serde_json::Value;

use super::{event_type, terminal, Api, Ending};
use crate::answer::{data_payload, has_non_null, FINISH_REASON};

/// Tracks whether a stream has ended properly, one line at a time.
#[derive(Debug)]
pub struct Completion {
    api: Api,
    pub done: bool,
    pub finished: bool,
    /// Typed streams: whether a terminal event came.
    pub ending: Ending,
}

impl Default for Completion {
    fn default() -> Self {
        Completion::new(Api::Chat)
    }
}

/// Words one of which every terminal event's data holds (a cheap filter before parsing).
const TERMINAL_WORDS: &[&[u8]] = &[b"completed", b"failed", b"incomplete", b"error", b"_stop"];

impl Completion {
    pub fn new(api: Api) -> Completion {
        Completion {
            api,
            done: false,
            finished: false,
            ending: Ending::Open,
        }
    }

    pub fn observe(&mut self, line: &[u8]) {
        let Some(data) = data_payload(line) else {
            return;
        };
        if self.api != Api::Chat {
            if self.ending == Ending::Open && TERMINAL_WORDS.iter().any(|w| contains(data, w)) {
                let kind = event_type(data).unwrap_or_default();
                self.ending = terminal(self.api, &kind).unwrap_or(Ending::Open);
            }
        } else if data == b"[DONE]" {
            self.done = true;
        } else if !self.finished && has_non_null(data, &FINISH_REASON) {
            self.finished = has_finish_reason(data);
        }
    }

    /// The upstream ended the stream properly (for typed streams possibly with a failure
    /// event, which it sent itself).
    pub fn complete(&self) -> bool {
        self.done || self.finished || self.ending != Ending::Open
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// True if a chunk's JSON carries a non-null `finish_reason` in any choice.
fn has_finish_reason(data: &[u8]) -> bool {
    let Ok(v) = crate::json::from_slice::<Value>(data) else {
        return false;
    };
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_by_done_or_finish_reason() {
        let cases: &[(&[&str], bool)] = &[
            (
                &["data: {\"choices\":[{\"delta\":{}}]}\n", "data: [DONE]\n"],
                true,
            ),
            (
                &["data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n"],
                true,
            ),
            (&["data: {\"choices\":[{\"finish_reason\":null}]}\n"], false),
            (
                &["data: {\"choices\":[{\"delta\":{\"content\":\"finish_reason\"}}]}\n"],
                false,
            ),
            (&[": comment\n", "event: x\n"], false),
        ];
        for (lines, expected) in cases {
            let mut c = Completion::default();
            for l in *lines {
                c.observe(l.as_bytes());
            }
            assert_eq!(c.complete(), *expected, "{lines:?}");
        }
    }

    #[test]
    fn typed_streams_end_at_their_terminal_event() {
        let cases: &[(Api, &[&str], bool, Ending)] = &[
            (
                Api::Responses,
                &[
                    "event: response.output_text.delta\n",
                    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"error\"}\n",
                ],
                false,
                Ending::Open,
            ),
            (
                Api::Responses,
                &["data: {\"type\": \"response.completed\", \"response\": {}}\n"],
                true,
                Ending::Succeeded,
            ),
            (
                Api::Responses,
                &["data: {\"type\":\"response.incomplete\"}\n"],
                true,
                Ending::Failed,
            ),
            (
                Api::Anthropic,
                &["data: {\"type\":\"message_stop\"}\n"],
                true,
                Ending::Succeeded,
            ),
            (
                Api::Anthropic,
                &["data: {\"type\":\"content_block_stop\",\"index\":0}\n"],
                false,
                Ending::Open,
            ),
            (Api::Anthropic, &["data: [DONE]\n"], false, Ending::Open),
        ];
        for (api, lines, complete, ending) in cases {
            let mut c = Completion::new(*api);
            for l in *lines {
                c.observe(l.as_bytes());
            }
            assert_eq!((c.complete(), c.ending), (*complete, *ending), "{lines:?}");
        }
    }
}
