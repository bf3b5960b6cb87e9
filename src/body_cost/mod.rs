//! What a request body costs in memory, bounded in bytes: an estimate of its parse from a scan
//! of the raw bytes (no allocation), the density limit that refuses JSON whose parse would cost
//! more than a small multiple of the body, and the process-wide budgets for bodies in flight:
//! request bodies (`max_body_bytes_in_flight`) and whole upstream answers
//! (`max_response_bytes_in_flight`), each with its own count.
//!
//! Measured with a counting allocator on serde_json 1.0 (`Value`): a value costs 32 bytes, an
//! array's buffer up to twice that while it grows, an object member about 64 bytes of its
//! B-tree plus its key, and every non-empty object at least one 640-byte B-tree node. So
//! `[0,0,…]` costs ~25× its bytes and `[{"a":0},…]` ~83×, while chat messages cost ~9×.
//! Each string (keys too) is also its own allocation, at least the allocator's least chunk:
//! `["a","a",…]` costs ~24× its bytes, not the 16× its values alone would suggest. The
//! estimate counts it; the density limit weighs values, members and objects only.
//! [`estimate`] stays above those figures; [`check_density`] refuses a body whose structure
//! alone would cost more than [`DENSITY`] × its size (plus [`SLACK`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ApiError;

/// A body's parse may cost at most this many times its size (plus [`SLACK`]).
pub const DENSITY: u64 = 16;
/// Allowance on top of the density limit, so small bodies of any shape pass.
pub const SLACK: u64 = 1024 * 1024;
/// Copies of a body's bytes alive while it is relayed: the raw body, the parsed strings, the
/// cache key's canonical form and the serialized request sent upstream.
const COPIES: u64 = 4;

/// Counts of a JSON text's structure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Values of any kind (the root, array elements and member values).
    pub values: u64,
    /// Object members (`"key": value`).
    pub members: u64,
    /// Objects with at least one member.
    pub objects: u64,
    /// Strings, keys included: each is its own heap allocation.
    pub strings: u64,
}

/// serde_json's nesting limit: it refuses the text at that depth, having built only the part
/// before it.
const MAX_DEPTH: u32 = 128;

/// Scans `raw` as JSON without parsing it. Invalid JSON gives counts of its valid-looking
/// prefix (up to where it nests deeper than the parser goes); the parser refuses it anyway,
/// and it cannot build more than that prefix.
pub fn scan(raw: &[u8]) -> Shape {
    let mut shape = Shape {
        values: 1,
        ..Shape::default()
    };
    // The last structural byte seen outside strings and whitespace.
    let mut last = 0u8;
    let mut depth = 0u32;
    let mut at = 0;
    while let Some(&b) = raw.get(at) {
        at += 1;
        if b.is_ascii_whitespace() {
            continue;
        }
        match b {
            b'"' => {
                shape.strings += 1;
                at = string_end(raw, at);
            }
            b',' => shape.values += 1,
            b':' => shape.members += 1,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_DEPTH {
            break;
        }
        if (last == b'[' && b != b']') || (last == b'{' && b != b'}') {
            // A container with content: its first element (or member) is one more value.
            shape.values += 1;
            if last == b'{' {
                shape.objects += 1;
            }
        }
        last = b;
    }
    shape
}

/// Where the string whose text starts at `from` ends: just after its closing quote (the end of
/// `raw` if it has none). A string's text is most of a chat body: a tight search for the two
/// bytes that matter, not the structural match per byte.
fn string_end(raw: &[u8], from: usize) -> usize {
    let mut at = from;
    loop {
        let Some(rest) = raw.get(at..) else {
            return raw.len();
        };
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return raw.len(),
            // an escape: skip it and the byte it escapes
            Some(i) if rest.get(i) == Some(&b'\\') => at += i + 2,
            Some(i) => return at + i + 1,
        }
    }
}

/// The memory the relay may spend on a body of `len` bytes with `shape`: its parse plus the
/// copies of its bytes alive while it is relayed.
pub fn estimate(len: u64, shape: Shape) -> u64 {
    structure(shape).saturating_add(len.saturating_mul(COPIES))
}

/// The least a body of `len` bytes takes while relayed: the copies of its bytes. Reserved from
/// `Content-Length` before the body is read.
pub fn minimum(len: u64) -> u64 {
    len.saturating_mul(COPIES)
}

/// What each string's own allocation costs beyond its bytes (counted in [`COPIES`]): the
/// allocator's header and rounding, and its least chunk. glibc's malloc hands out chunks of at
/// least 32 bytes in steps of 16 with an 8-byte header, so a string of `n` bytes takes at most
/// `max(32, n + 23)`: at most 31 bytes more than `n`.
const STRING_ALLOCATION: u64 = 32;

/// The parse's memory beyond the strings' bytes: values, members, objects and each string's
/// own allocation.
fn structure(shape: Shape) -> u64 {
    nodes(shape).saturating_add(shape.strings.saturating_mul(STRING_ALLOCATION))
}

/// The parse's values, members and objects: what the density limit weighs (the strings'
/// allocations are left out of it, so chat messages of short texts are not refused).
fn nodes(shape: Shape) -> u64 {
    (shape.values.saturating_add(shape.members))
        .saturating_mul(64)
        .saturating_add(shape.objects.saturating_mul(640))
}

/// Refuses (413) a body whose parse would cost more than [`DENSITY`] × its size plus
/// [`SLACK`]; otherwise returns [`estimate`] for the budget.
pub fn check_density(raw: &[u8]) -> Result<u64, ApiError> {
    let len = raw.len() as u64;
    let shape = scan(raw);
    let cost = nodes(shape);
    if cost > len.saturating_mul(DENSITY).saturating_add(SLACK) {
        return Err(ApiError::new(
            413,
            "invalid_request_error",
            "json_too_dense",
            format!(
                "the request body's JSON has {} values in {len} bytes; parsing it would take \
                 about {} MB, more than the relay spends on a body ({DENSITY} × its size + 1 MiB); \
                 send fewer, larger values (e.g. text instead of long arrays of small numbers)",
                shape.values,
                cost / 1_000_000
            ),
        ));
    }
    Ok(estimate(len, shape))
}

/// Bytes reserved by request bodies in flight, process-wide (so a reload keeps the count).
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
/// Bytes reserved by whole upstream answers in flight, process-wide.
static RESPONSES_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// Which budget a reservation draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Request bodies: `max_body_bytes_in_flight`.
    Requests,
    /// Whole upstream answers: `max_response_bytes_in_flight`.
    Responses,
}

impl Pool {
    fn counter(self) -> &'static AtomicU64 {
        match self {
            Pool::Requests => &IN_FLIGHT,
            Pool::Responses => &RESPONSES_IN_FLIGHT,
        }
    }
}

/// Bytes of a budget held for one request or answer; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
    limit: u64,
    pool: Pool,
}

impl Reservation {
    /// An empty reservation against a budget of `limit` bytes (`max_body_bytes_in_flight`).
    pub fn new(limit: u64) -> Reservation {
        Reservation {
            bytes: 0,
            limit,
            pool: Pool::Requests,
        }
    }

    /// An empty reservation for a whole upstream answer against a budget of `limit` bytes
    /// (`max_response_bytes_in_flight`).
    pub fn response(limit: u64) -> Reservation {
        Reservation {
            bytes: 0,
            limit,
            pool: Pool::Responses,
        }
    }

    /// Raises the reservation to `total` bytes: 413 if one request alone needs more than the
    /// whole budget, 503 (retry shortly) if the budget is taken by other requests now. For an
    /// answer: 502 `response_too_large` and 503 `relay_busy`, both naming the response.
    pub fn grow_to(&mut self, total: u64) -> Result<(), ApiError> {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        if total > self.limit {
            return Err(self.too_large(total));
        }
        let taken = self
            .pool
            .counter()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                let next = used.checked_add(more)?;
                (next <= self.limit).then_some(next)
            });
        match taken {
            Ok(_) => {
                self.bytes = total;
                Ok(())
            }
            Err(_) => Err(self.busy()),
        }
    }

    fn too_large(&self, total: u64) -> ApiError {
        match self.pool {
            Pool::Requests => ApiError::new(
                413,
                "invalid_request_error",
                "request_too_large",
                format!(
                    "this request body would take about {} MB of memory to relay, more than \
                     `max_body_bytes_in_flight` ({} bytes); send a smaller request or raise it",
                    total / 1_000_000,
                    self.limit
                ),
            ),
            Pool::Responses => {
                response_too_large(total, "max_response_bytes_in_flight", self.limit)
            }
        }
    }

    fn busy(&self) -> ApiError {
        let message = match self.pool {
            Pool::Requests => format!(
                "request bodies in flight already take the relay's body budget \
                 (`max_body_bytes_in_flight`, {} bytes); retry shortly",
                self.limit
            ),
            Pool::Responses => format!(
                "upstream responses in flight already take the relay's response budget \
                 (`max_response_bytes_in_flight`, {} bytes); the response was dropped, retry \
                 shortly",
                self.limit
            ),
        };
        ApiError::busy("relay_busy", message, 1)
    }
}

/// The 502 for an upstream answer over `setting` (`limit` bytes): the answer is dropped, not
/// passed on in part, and not cached.
pub fn response_too_large(size: u64, setting: &str, limit: u64) -> ApiError {
    ApiError::new(
        502,
        "upstream_error",
        "response_too_large",
        format!(
            "the upstream response is larger than the relay holds for one answer (at least {size} \
             bytes, over `{setting}`, {limit} bytes); the response was dropped: ask for a \
             shorter one (e.g. lower `max_tokens`), stream it, or raise `{setting}`"
        ),
    )
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.counter().fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
