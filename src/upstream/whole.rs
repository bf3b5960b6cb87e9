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
    /// Reads a whole answer within its [`Bound`] (held from `Content-Length` at once, else as
    /// the bytes arrive).
    pub(super) fn read_whole(&self, body: Body) -> Result<(Vec<u8>, Reservation), ureq::Error> {
        let announced = body.content_length();
        let mut bound = self.bound(announced)?;
        let mut data = Vec::with_capacity(bound.capacity(announced));
        let mut reader = body.into_reader();
        // read straight into `data`, a chunk at a time: no zero-filled buffer per answer
        loop {
            match (&mut reader).take(RESPONSE_CHUNK).read_to_end(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ureq::Error::from(e)),
            }
            bound.grew(data.len() as u64)?;
        }
        Ok((data, bound.held))
    }

    /// The bounds of a whole answer about to be read whose `Content-Length` is `announced`:
    /// refused at once when that is over `max_response_bytes` or the room left in flight.
    pub(super) fn bound(&self, announced: Option<u64>) -> Result<Bound, ureq::Error> {
        let mut bound = Bound {
            max: self.settings.max_response_bytes,
            held: Reservation::response(self.settings.max_response_bytes_in_flight),
        };
        if let Some(n) = announced.filter(|&n| n > bound.max) {
            return Err(bound.too_large(n));
        }
        bound.held.grow_to(announced.unwrap_or(0)).map_err(refuse)?;
        Ok(bound)
    }

    /// Reads a whole upstream body not read by [`post`](Upstream::post) (a model list, an
    /// error answer to a stream request) within `max_response_bytes`.
    pub fn read_body(&self, base: &str, body: Body) -> Result<Vec<u8>, ApiError> {
        read_limited(base, body, self.settings.max_response_bytes)
    }
}

/// A whole answer's bounds while it is read: at most `max_response_bytes`, its bytes held
/// against `max_response_bytes_in_flight`. Over either: the answer is dropped and the error
/// (502 `response_too_large`, 503 `relay_busy`) travels as a [`ClientFault`], so it never
/// counts against the endpoint nor fails over (another endpoint's answer would be as large).
pub(super) struct Bound {
    max: u64,
    pub held: Reservation,
}

impl Bound {
    /// The room to reserve for a body of `announced` bytes (within the bound).
    pub fn capacity(&self, announced: Option<u64>) -> usize {
        usize::try_from(announced.unwrap_or(0).min(self.max)).unwrap_or(0)
    }

    /// Checks a body that grew to `total` bytes, holding them.
    pub fn grew(&mut self, total: u64) -> Result<(), ureq::Error> {
        if total > self.max {
            return Err(self.too_large(total));
        }
        self.held.grow_to(total).map_err(refuse)
    }

    fn too_large(&self, size: u64) -> ureq::Error {
        refuse(body_cost::response_too_large(
            size,
            "max_response_bytes",
            self.max,
        ))
    }
}

fn refuse(e: ApiError) -> ureq::Error {
    ureq::Error::Io(ClientFault::io(e))
}

/// Reads a whole (non-streamed) upstream body of at most `max` bytes.
fn read_limited(base: &str, body: Body, max: u64) -> Result<Vec<u8>, ApiError> {
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
