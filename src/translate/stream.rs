//! [`Stream`]: the translator of an upstream stream into the client's events, one upstream
//! line at a time, over the per-API states (`anthropic_stream`, `responses_stream`,
//! `messages_stream`), chained through Chat when the translation pivots.

use serde_json::Value;

use super::text_chunk::TextChunk;
use super::{anthropic_stream, messages_stream, responses_stream, Dialect};

/// Translates a chat stream into the client's events, one upstream SSE line at a time: each
/// call returns the bytes to write (and flush) now, so nothing waits for the stream's end.
pub struct Stream {
    pub(super) state: StreamState,
    /// The Messages → Chat translator whose chunks this one translates on (see
    /// [`super::Translation::pivot`]).
    pub(super) pivot: Option<Box<Stream>>,
    /// The upstream sent an error event.
    failed: bool,
}

pub(super) enum StreamState {
    Anthropic(anthropic_stream::State),
    Responses(responses_stream::State),
    Chat(messages_stream::State),
}

impl Stream {
    pub fn new(dialect: Dialect) -> Stream {
        let state = match dialect {
            Dialect::Anthropic => StreamState::Anthropic(anthropic_stream::State::default()),
            Dialect::Responses => StreamState::Responses(responses_stream::State::default()),
            Dialect::Chat => StreamState::Chat(messages_stream::State::default()),
        };
        Stream {
            state,
            pivot: None,
            failed: false,
        }
    }

    /// One line of the upstream stream (with its line ending) → client bytes.
    pub fn line(&mut self, line: &[u8]) -> Vec<u8> {
        if let Some(inner) = &mut self.pivot {
            let chat = inner.line(line);
            return self.on(&chat);
        }
        self.own_line(line)
    }

    /// The pivot's chat bytes, translated on line by line.
    fn on(&mut self, chat: &[u8]) -> Vec<u8> {
        // extended line by line (collecting a flattened iterator copies byte by byte)
        let mut out = Vec::new();
        for line in chat.split_inclusive(|&b| b == b'\n') {
            crate::util::append(&mut out, self.own_line(line));
        }
        out
    }

    fn own_line(&mut self, line: &[u8]) -> Vec<u8> {
        let Some(data) = crate::answer::data_payload(line) else {
            return Vec::new();
        };
        if data == b"[DONE]" {
            return self.end();
        }
        // the common chunk (text only) without a `Value`, once the client's stream is open
        if self.started() {
            let fast = match &mut self.state {
                StreamState::Anthropic(s) => TextChunk::read(data).map(|c| s.text_chunk(&c)),
                StreamState::Responses(s) => TextChunk::read(data).map(|c| s.text_chunk(&c)),
                StreamState::Chat(_) => None, // reads Anthropic events, not chat chunks
            };
            if let Some(bytes) = fast {
                return bytes;
            }
        }
        let Ok(chunk) = crate::json::from_slice::<Value>(data) else {
            return Vec::new();
        };
        if let Some(err) = chunk.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream sent an error event");
            self.failed = true;
            return self.fail(message);
        }
        match &mut self.state {
            StreamState::Anthropic(s) => s.chunk(&chunk),
            StreamState::Responses(s) => s.chunk(&chunk),
            StreamState::Chat(s) => s.chunk(&chunk),
        }
    }

    /// The upstream closed after its last chunk: the closing events, if not sent yet. A stream
    /// that ended before any chunk (only `[DONE]`) answered nothing: the client gets the error
    /// event, and the stream counts as failed.
    pub fn end(&mut self) -> Vec<u8> {
        if let Some(mut inner) = self.pivot.take() {
            let chat = inner.end();
            let mut out = self.on(&chat);
            self.failed |= inner.failed();
            if !self.finished() {
                out.extend(self.end());
            }
            self.pivot = Some(inner);
            return out;
        }
        if !self.started() && !self.finished() {
            self.failed = true;
            return self.fail("the upstream ended its stream without any chunk of an answer");
        }
        match &mut self.state {
            StreamState::Anthropic(s) => s.end(),
            StreamState::Responses(s) => s.end(),
            StreamState::Chat(s) => s.end(),
        }
    }

    /// The stream broke: the client's error event, once.
    pub fn fail(&mut self, message: &str) -> Vec<u8> {
        match &mut self.state {
            StreamState::Anthropic(s) => s.fail(message),
            StreamState::Responses(s) => s.fail(message),
            StreamState::Chat(s) => s.fail(message),
        }
    }

    /// True once the closing events (`message_stop`, `response.completed`) or an error went out.
    pub fn finished(&self) -> bool {
        match &self.state {
            StreamState::Anthropic(s) => s.finished(),
            StreamState::Responses(s) => s.finished(),
            StreamState::Chat(s) => s.finished(),
        }
    }

    /// True once the first chunk opened the client's stream.
    fn started(&self) -> bool {
        match &self.state {
            StreamState::Anthropic(s) => s.started(),
            StreamState::Responses(s) => s.started(),
            StreamState::Chat(s) => s.started(),
        }
    }

    /// True if the upstream sent an error event.
    pub fn failed(&self) -> bool {
        self.failed || self.pivot.as_ref().is_some_and(|p| p.failed())
    }
}

/// `sse::relay` drives a [`Stream`] line by line when it relays to a client of another API.
impl crate::sse_frame::Translate for Stream {
    fn line(&mut self, line: &[u8]) -> Vec<u8> {
        Stream::line(self, line)
    }
    fn end(&mut self) -> Vec<u8> {
        Stream::end(self)
    }
    fn fail(&mut self, message: &str) -> Vec<u8> {
        Stream::fail(self, message)
    }
    fn failed(&self) -> bool {
        Stream::failed(self)
    }
}
