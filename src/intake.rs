//! Taking in request bodies from clients that may be hostile: a total time budget (a client
//! that trickles its body one byte a second is cut off when the budget is spent, not when it
//! chooses to finish) and the content-type check.
//!
//! Each single read is already bounded by the socket timeout (`client_timeout_ms`, set on every
//! accepted connection by the patched tiny_http); this bounds their sum.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use tiny_http::Request;

use crate::error::ApiError;

/// Refuses a body labelled as something other than JSON (415). No `Content-Type` at all is
/// read as JSON, as the OpenAI API does.
pub fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(h) = req.headers().iter().find(|h| h.field.equiv("content-type")) else {
        return Ok(());
    };
    let value = h.value.as_str();
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        return Ok(());
    }
    Err(ApiError::new(
        415,
        "invalid_request_error",
        "unsupported_media_type",
        format!(
            "the body must be JSON, sent with `Content-Type: application/json`; got `{}`",
            value
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        ),
    ))
}

pub struct Deadline<R> {
    inner: R,
    until: Instant,
}

impl<R: Read> Deadline<R> {
    pub fn new(inner: R, budget: Duration) -> Deadline<R> {
        Deadline {
            inner,
            until: Instant::now() + budget,
        }
    }
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body took too long",
            ));
        }
        self.inner.read(buf)
    }
}

/// The error for a body that could not be read: 408 when the client was too slow.
pub fn body_error(e: &io::Error, budget: Duration) -> ApiError {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        ApiError::new(
            408,
            "invalid_request_error",
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms (client_timeout_ms); send it at \
                 once",
                budget.as_millis()
            ),
        )
    } else {
        ApiError::invalid(
            "body_read_failed",
            format!("could not read the request body: {e}"),
        )
    }
}
