//! The client side of an event stream, over the raw connection: its head (`http_head`) and
//! chunked framing written by the relay, flushed at every event boundary. What is written between
//! two flushes goes out in one write (head, chunk sizes, events and their framing together), so
//! a stream whose events are all at hand (a cache hit) costs one syscall, not one per event.
//!
//! tiny_http's own response path copies a `Read` through a buffered chunk encoder, which lumps
//! events together; a stream therefore takes over the connection's writer and frames it itself.
//!
//! The connection serves a next request only after a stream ended with its framing's end (the
//! last chunk, over HTTP/1.1). An HTTP/1.0 stream is delimited by the connection's close, so its
//! connection is closed right after the last event, even when the client asked for
//! `Connection: keep-alive`; so is the connection of a stream cut short.

use std::io::{self, Write};

use crate::http_head::{Framing, Head};

/// Where a stream is written: the raw connection of a request, and whether it may serve a next
/// request once the stream ended properly.
pub struct Conn {
    w: Box<dyn Write + Send>,
    http11: bool,
    /// Called once the stream ended with its framing's end (HTTP/1.1); dropped unused, the
    /// connection closes.
    completion: Option<tiny_http::Completion>,
}

impl Conn {
    /// The raw connection of `req`.
    pub fn of(req: tiny_http::Request) -> Conn {
        let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let (w, completion) = req.into_writer_or_close();
        Conn {
            w,
            http11,
            completion: Some(completion),
        }
    }

    /// A writer that is no connection (tests).
    #[cfg(test)]
    pub fn raw(w: Box<dyn Write + Send>, http11: bool) -> Conn {
        Conn {
            w,
            http11,
            completion: None,
        }
    }
}

/// An event stream's own headers, then the extra `headers` (name, value) but those.
fn stream_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let ours = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
    ];
    let mut all: Vec<(String, String)> = ours
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    all.extend(
        headers
            .iter()
            .filter(|(n, _)| {
                !ours.iter().any(|(o, _)| n.eq_ignore_ascii_case(o))
                    && !n.eq_ignore_ascii_case("x-accel-buffering")
            })
            .cloned(),
    );
    all
}

/// Bytes held unflushed before they are written anyway.
const HELD_MAX: usize = 64 * 1024;

/// The client side of a streamed response, over the raw connection.
pub struct SseOut {
    w: Box<dyn Write + Send>,
    /// Written since the last flush: the framed bytes of one write.
    held: Vec<u8>,
    /// HTTP/1.1 gets chunked framing; HTTP/1.0 gets the raw bytes and a closed connection.
    chunked: bool,
    /// Bytes of payload written (without framing), for the access log.
    pub bytes: u64,
    completion: Option<tiny_http::Completion>,
}

impl SseOut {
    /// Writes the response head for a 200 event stream. `headers` are extra headers (name, value).
    pub fn start(conn: Conn, headers: &[(String, String)]) -> io::Result<SseOut> {
        SseOut::start_as(conn, 200, &stream_headers(headers))
    }

    /// [`SseOut::start`] with the head held until the first flush (a stream whose events are
    /// all at hand goes out in one write).
    pub fn start_held(conn: Conn, headers: &[(String, String)]) -> io::Result<SseOut> {
        Ok(SseOut::open(conn, 200, &stream_headers(headers)))
    }

    /// Writes the head of an event stream answered with `status` and exactly `headers` (a
    /// pass-through keeps the upstream's), plus `X-Accel-Buffering: no` and the relay's own
    /// framing. Header lines with CR or LF are dropped.
    pub fn start_as(conn: Conn, status: u16, headers: &[(String, String)]) -> io::Result<SseOut> {
        let mut out = SseOut::open(conn, status, headers);
        out.flush()?;
        Ok(out)
    }

    /// The stream with its head held, not yet written.
    fn open(conn: Conn, status: u16, headers: &[(String, String)]) -> SseOut {
        let Conn {
            w,
            http11,
            completion,
        } = conn;
        // `X-Accel-Buffering: no` first, then the caller's but their own of it
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("X-Accel-Buffering".to_string(), "no".to_string()));
        all.extend(
            headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("x-accel-buffering"))
                .cloned(),
        );
        let head = Head {
            http11,
            status,
            headers: &all,
            framing: Framing::open_ended(http11),
            drop_framing: true,
            close: false,
        }
        .render();
        SseOut {
            w,
            held: head.into_bytes(),
            chunked: http11,
            bytes: 0,
            completion,
        }
    }

    /// Writes bytes (one chunk); not flushed (held, up to [`HELD_MAX`]).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            crate::util::push_hex(&mut self.held, data.len());
            self.held.extend_from_slice(b"\r\n");
            self.held.extend_from_slice(data);
            self.held.extend_from_slice(b"\r\n");
        } else {
            self.held.extend_from_slice(data);
        }
        self.bytes += data.len() as u64;
        if self.held.len() >= HELD_MAX {
            self.write_held()?;
        }
        Ok(())
    }

    /// Writes what is held, in one write.
    fn write_held(&mut self) -> io::Result<()> {
        if !self.held.is_empty() {
            let written = self.w.write_all(&self.held);
            self.held.clear();
            if self.held.capacity() > HELD_MAX {
                self.held = Vec::new();
            }
            written?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_held()?;
        self.w.flush()
    }

    /// Ends the response (the zero-length chunk) and flushes. Over HTTP/1.1 the connection
    /// then serves the client's next request; over HTTP/1.0 it closes here, since the close is
    /// what ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.held.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush()?;
        if let (true, Some(completion)) = (self.chunked, self.completion.take()) {
            completion.complete();
        }
        Ok(())
    }
}
