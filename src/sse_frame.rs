//! Server-sent events as frames, what every layer that handles a stream shares: the blank line
//! that ends an event ([`is_blank`]; `answer::data_payload` reads a `data:` line), and the two
//! seams of the relay loop (`sse::relay`): a [`Tap`] that watches the events (the cache's
//! recorder) and a [`Translate`] that turns a chat stream into another API's events (the
//! translators). They live here, below the relay loop, so the cache and the translators
//! implement them without importing it. Imports nothing of the relay.

/// True for the blank line that ends an event.
pub fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Watches a relayed stream (the cache's recorder).
pub trait Tap {
    /// Whether `event` (its lines and the blank line ending it) goes to the client.
    fn pass(&mut self, event: &[u8]) -> bool;
    /// The stream is complete; `recorded` is all of it. Called at most once (never for a stream
    /// longer than the recording cap), before the final event (`data: [DONE]`, a typed
    /// stream's success terminal, or the end of the response for chat streams without
    /// `[DONE]`) reaches the client.
    fn complete(&mut self, recorded: &[u8]);
}

/// Turns a chat stream into another API's events, one upstream line at a time (implemented
/// by `translate::Stream`).
pub trait Translate {
    /// The client's bytes for one upstream line (often none); written and flushed at once.
    fn line(&mut self, line: &[u8]) -> Vec<u8>;
    /// The closing events of a complete stream.
    fn end(&mut self) -> Vec<u8>;
    /// The error event of a stream cut short.
    fn fail(&mut self, message: &str) -> Vec<u8>;
    /// True if the upstream sent an error event (the stream is then not complete).
    fn failed(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::is_blank;

    #[test]
    fn blank_lines_end_events() {
        assert!(is_blank(b"\r\n") && is_blank(b"\n") && !is_blank(b" \n") && !is_blank(b""));
    }
}
