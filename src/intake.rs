//! Taking in request bodies from clients that may be hostile: a total time budget (a client
//! that trickles its body one byte a second is cut off when the budget is spent, not when it
//! chooses to finish), the size cap, the content-type check, and parsing an API body.
//!
//! Each single read is already bounded by the socket timeout (`client_timeout_ms`, set on every
//! accepted connection by the patched tiny_http); this bounds their sum.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use tiny_http::Request;

use serde_json::{Map, Value};

use crate::body_cost::{self, Reservation};
use crate::error::ApiError;

/// Refuses a body labelled as something other than JSON (415). No `Content-Type` at all is
/// read as JSON, as the OpenAI API does.
pub fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(h) = req.headers().iter().find(|h| h.field.equiv("content-type")) else {
        return Ok(());
    };
    let value = h.value.as_str();
    if is_json_media(value.split(';').next().unwrap_or("").trim()) {
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

/// Whether a media type (without parameters) is JSON: `application/json` or
/// `application/*+json`, in any case. Compared in place, not on a lowercased copy: this runs on
/// every API request.
fn is_json_media(media: &str) -> bool {
    let has = |at: usize, part: &str| {
        media
            .get(at..at + part.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(part))
    };
    media.eq_ignore_ascii_case("application/json")
        || (has(0, "application/") && has(media.len().saturating_sub(5), "+json"))
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
/// The most bytes of a body read before its reservation grows.
const BODY_CHUNK: u64 = 16 * 1024;

/// Reads the request body, refusing more than `max` bytes (by Content-Length before reading
/// anything, and by counting for chunked bodies), and holding the memory it will take in
/// `reserved` (from Content-Length at once, else as its bytes arrive) so bodies in flight stay
/// within their budget.
pub fn read_body(
    req: &mut Request,
    max: u64,
    budget: Duration,
    reserved: &mut Reservation,
) -> Result<Vec<u8>, ApiError> {
    let announced = req.body_length().map(|n| n as u64);
    if announced.is_some_and(|n| n > max) {
        return Err(ApiError::too_large(max));
    }
    reserved.grow_to(body_cost::minimum(announced.unwrap_or(0)))?;
    let mut buf = Vec::with_capacity(announced.unwrap_or(0) as usize);
    let mut reader = Deadline::new(req.as_reader(), budget).take(max + 1);
    // read straight into `buf`, a chunk at a time: no zero-filled buffer per request
    loop {
        match (&mut reader).take(BODY_CHUNK).read_to_end(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(body_error(&e, budget)),
        }
        if buf.len() as u64 > max {
            return Err(ApiError::too_large(max));
        }
        reserved.grow_to(body_cost::minimum(buf.len() as u64))?;
    }
    Ok(buf)
}

/// The config's limits on a body read whole.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `max_body_bytes`.
    pub max: u64,
    /// `client_timeout_ms`, for the whole body.
    pub budget: Duration,
    /// `max_body_bytes_in_flight`.
    pub in_flight: u64,
}

/// [`read_body`] with a fresh reservation against `max_body_bytes_in_flight`, returned with
/// the body: it holds the body's cost until the caller's call is done.
pub fn read_reserved(
    req: &mut Request,
    limits: BodyLimits,
) -> Result<(Vec<u8>, Reservation), ApiError> {
    let mut reserved = Reservation::new(limits.in_flight);
    let raw = read_body(req, limits.max, limits.budget, &mut reserved)?;
    Ok((raw, reserved))
}

/// Parses an API request body: a JSON object with a string `model`.
/// Refuses JSON whose parse would cost more than a small multiple of its size (413, see
/// `body_cost`), and holds the memory the body will take in `reserved`.
pub fn parse_body(raw: &[u8], reserved: &mut Reservation) -> Result<Map<String, Value>, ApiError> {
    reserved.grow_to(body_cost::check_density(raw)?)?;
    let value: Value = crate::json::from_slice(raw).map_err(|e| {
        ApiError::invalid(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid(
            "invalid_request",
            "the request body must be a JSON object".to_string(),
        ));
    };
    if body
        .get("stream")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(ApiError::invalid(
            "invalid_request",
            "`stream` must be true or false".to_string(),
        ));
    }
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(body),
        _ => Err(ApiError::invalid(
            "invalid_request",
            "the request body needs a `model` string, e.g. {\"model\": \"gpt-4o-mini\", ...}"
                .to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_media;

    #[test]
    fn json_media_types_are_what_the_lowercased_comparison_took() {
        let lowered = |media: &str| {
            let media = media.to_ascii_lowercase();
            media == "application/json"
                || (media.starts_with("application/") && media.ends_with("+json"))
        };
        for media in [
            "application/json",
            "Application/JSON",
            "application/vnd.api+json",
            "APPLICATION/PROBLEM+JSON",
            "application/+json",
            "application/json5",
            "application/jsonx",
            "text/json",
            "text/plain",
            "application/",
            "+json",
            "json",
            "",
            "application/é+json",
            "applicatioñ/x+json",
            "application/x+jsoñ",
        ] {
            assert_eq!(is_json_media(media), lowered(media), "{media}");
        }
    }
}
