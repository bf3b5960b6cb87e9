//! A reader with a total time budget, for request bodies: a client that trickles its body
//! (one byte a second) is cut off when the budget is spent, not when it chooses to finish.
//!
//! Each single read is already bounded by the socket timeout (`client_timeout_ms`, set on every
//! accepted connection by the patched tiny_http); this bounds their sum.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::error::ApiError;

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
