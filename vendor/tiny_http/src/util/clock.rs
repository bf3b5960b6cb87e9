//! llm-relay patch: milliseconds on one monotonic clock, for the request-head deadline.
//!
//! The head reader once checked its deadline after every byte, and this clock was an atomic a
//! background thread advanced every 10 ms (cheaper than `Instant::now()` per byte). The reader
//! now asks once per chunk of the read buffer (a few times a request: `head_scan::line_chunk`),
//! where `Instant::now()` (a vDSO call, no system call) costs less than the thread did: it woke
//! 100 times a second for the life of the process, idle or not.

use std::convert::TryFrom;
use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the clock was first read (monotonic).
pub fn now_ms() -> u64 {
    let origin = ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}
