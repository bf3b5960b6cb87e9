//! Reading a whole (non-streamed) upstream answer within the relay's bounds: at most
//! `max_response_bytes` each, and all of them together within `max_response_bytes_in_flight`
//! (a [`Reservation`] held in [`Sent`](super::Sent) while the caller has the answer).

use std::io::Read;

use ureq::Body;

use super::{transport_error, Upstream};
use crate::body_cost::{self, Reservation};
use crate::error::{ApiError, ClientFault};

/// Bytes read at a time from a whole answer (each read grows its reservation).
const RESPONSE_CHUNK: u64 = 64 * 1024;

impl Upstream {
    /// Reads a whole answer within `max_response_bytes`, holding its bytes against
    /// `max_response_bytes_in_flight` (from `Content-Length` at once, else as they arrive).
    /// Over either: the answer is dropped and the error (502 `response_too_large`, 503
    /// `relay_busy`) travels as a [`ClientFault`], so it never counts against the endpoint nor
    /// fails over (another endpoint's answer would be as large).
    pub(super) fn read_whole(&self, body: Body) -> Result<(Vec<u8>, Reservation), ureq::Error> {
        let max = self.settings.max_response_bytes;
        let refuse = |e: ApiError| ureq::Error::Io(ClientFault::io(e));
        let too_large = |size: u64| {
            refuse(body_cost::response_too_large(
                size,
                "max_response_bytes",
                max,
            ))
        };
        let mut held = Reservation::response(self.settings.max_response_bytes_in_flight);
        let announced = body.content_length();
        if let Some(n) = announced.filter(|&n| n > max) {
            return Err(too_large(n));
        }
        held.grow_to(announced.unwrap_or(0)).map_err(refuse)?;
        let capacity = announced.unwrap_or(0).min(max) as usize;
        let mut data = Vec::with_capacity(capacity);
        let mut reader = body.into_reader();
        // read straight into `data`, a chunk at a time: no zero-filled buffer per answer
        loop {
            match (&mut reader).take(RESPONSE_CHUNK).read_to_end(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ureq::Error::from(e)),
            }
            let total = data.len() as u64;
            if total > max {
                return Err(too_large(total));
            }
            held.grow_to(total).map_err(refuse)?;
        }
        Ok((data, held))
    }

    /// Reads a whole upstream body not read by [`post`](Upstream::post) (a model list, an
    /// error answer to a stream request) within `max_response_bytes`.
    pub fn read_body(&self, base: &str, body: Body) -> Result<Vec<u8>, ApiError> {
        read_limited(base, body, self.settings.max_response_bytes)
    }
}

/// Reads a whole (non-streamed) upstream body of at most `max` bytes.
pub fn read_limited(base: &str, body: Body, max: u64) -> Result<Vec<u8>, ApiError> {
    body.into_with_config()
        .limit(max)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                body_cost::response_too_large(max.saturating_add(1), "max_response_bytes", max)
            }
            e => transport_error(base, &e),
        })
}
