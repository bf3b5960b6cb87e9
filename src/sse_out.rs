//! The client side of an event stream, over the raw connection: status line, headers and
//! chunked framing written by hand, flushed at every event boundary.
//!
//! tiny_http's own response path copies a `Read` through a buffered chunk encoder, which lumps
//! events together; a stream therefore takes over the connection's writer and frames it itself.

use std::io::{self, Write};

/// The client side of a streamed response, over the raw connection.
pub struct SseOut {
    w: Box<dyn Write + Send>,
    /// HTTP/1.1 gets chunked framing; HTTP/1.0 gets the raw bytes and a closed connection.
    chunked: bool,
    /// Bytes of payload written (without framing), for the access log.
    pub bytes: u64,
}

impl SseOut {
    /// Writes the response head for a 200 event stream. `headers` are extra headers (name, value).
    pub fn start(
        w: Box<dyn Write + Send>,
        http11: bool,
        headers: &[(String, String)],
    ) -> io::Result<SseOut> {
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
        SseOut::start_as(w, http11, 200, &all)
    }

    /// Writes the head of an event stream answered with `status` and exactly `headers` (a
    /// pass-through keeps the upstream's), plus `X-Accel-Buffering: no` and the relay's own
    /// framing. Header lines with CR or LF are dropped.
    pub fn start_as(
        mut w: Box<dyn Write + Send>,
        http11: bool,
        status: u16,
        headers: &[(String, String)],
    ) -> io::Result<SseOut> {
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

    /// Ends the response (the zero-length chunk) and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.w.write_all(b"0\r\n\r\n")?;
        }
        self.w.flush()
    }
}
