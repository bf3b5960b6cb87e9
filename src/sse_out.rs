//! The client side of an event stream, over the raw connection: status line, headers and
//! chunked framing written by hand, flushed at every event boundary.
//!
//! tiny_http's own response path copies a `Read` through a buffered chunk encoder, which lumps
//! events together; a stream therefore takes over the connection's writer and frames it itself.
//!
//! The connection serves a next request only after a stream ended with its framing's end (the
//! last chunk, over HTTP/1.1). An HTTP/1.0 stream is delimited by the connection's close, so its
//! connection is closed right after the last event, even when the client asked for
//! `Connection: keep-alive`; so is the connection of a stream cut short.

use std::io::{self, Write};

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

/// The client side of a streamed response, over the raw connection.
pub struct SseOut {
    w: Box<dyn Write + Send>,
    /// HTTP/1.1 gets chunked framing; HTTP/1.0 gets the raw bytes and a closed connection.
    chunked: bool,
    /// Bytes of payload written (without framing), for the access log.
    pub bytes: u64,
    completion: Option<tiny_http::Completion>,
}

impl SseOut {
    /// Writes the response head for a 200 event stream. `headers` are extra headers (name, value).
    pub fn start(conn: Conn, headers: &[(String, String)]) -> io::Result<SseOut> {
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
        SseOut::start_as(conn, 200, &all)
    }

    /// Writes the head of an event stream answered with `status` and exactly `headers` (a
    /// pass-through keeps the upstream's), plus `X-Accel-Buffering: no` and the relay's own
    /// framing. Header lines with CR or LF are dropped.
    pub fn start_as(conn: Conn, status: u16, headers: &[(String, String)]) -> io::Result<SseOut> {
        let Conn {
            mut w,
            http11,
            completion,
        } = conn;
        let reason = tiny_http::StatusCode(status).default_reason_phrase();
        let minor = if http11 { 1 } else { 0 };
        let mut head = format!("HTTP/1.{minor} {status} {reason}\r\nX-Accel-Buffering: no\r\n");
        for (name, value) in headers {
            let framing = [
                "x-accel-buffering",
                "transfer-encoding",
                "content-length",
                "connection",
            ]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
            if framing || name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(if http11 {
            "Transfer-Encoding: chunked\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        w.write_all(head.as_bytes())?;
        w.flush()?;
        Ok(SseOut {
            w,
            chunked: http11,
            bytes: 0,
            completion,
        })
    }

    /// Writes bytes (one chunk); not flushed.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            write!(self.w, "{:x}\r\n", data.len())?;
            self.w.write_all(data)?;
            self.w.write_all(b"\r\n")?;
        } else {
            self.w.write_all(data)?;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Ends the response (the zero-length chunk) and flushes. Over HTTP/1.1 the connection
    /// then serves the client's next request; over HTTP/1.0 it closes here, since the close is
    /// what ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.w.write_all(b"0\r\n\r\n")?;
        }
        self.w.flush()?;
        if let (true, Some(completion)) = (self.chunked, self.completion.take()) {
            completion.complete();
        }
        Ok(())
    }
}
