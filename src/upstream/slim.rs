//! The buffers ureq reads and writes an upstream connection through ([`SlimBuffers`]): sized to
//! what each phase needs, so an open stream holds a few KiB instead of two zero-filled 16 KiB
//! buffers for its whole length.
//!
//! - The output buffer ([`OUTPUT_BYTES`]) exists only while a request is sent: each request
//!   header line must fit it whole (tiny_http accepts lines up to 16 KiB). Once the response
//!   head is awaited it goes back to a process-wide spare list (at most [`SPARE_OUTPUTS`]),
//!   which the next request on any connection takes it from.
//! - The input buffer starts at [`INPUT_START_BYTES`] and doubles while a response head does not
//!   fit it, up to the head limit ([`INPUT_MAX_BYTES`]: a bigger head stays a 502 naming the
//!   limit, as ureq reports it); once the body is read it goes back to its start size.
//!
//! `idle::IdleTransport` owns them and copies bytes to and from the transport below it, whose
//! own buffers are small (`TRANSPORT_BUFFER_BYTES` in `agent.rs`).

use std::sync::Mutex;

use ureq::unversioned::transport::Buffers;

/// The output buffer while a request is sent: the longest request header line it carries.
pub const OUTPUT_BYTES: usize = 16 * 1024;
/// The input buffer of a connection until a response head needs more.
pub const INPUT_START_BYTES: usize = 2 * 1024;
/// The most the input buffer grows to: one byte over the largest response head accepted.
pub const INPUT_MAX_BYTES: usize = 16 * 1024;
/// Room kept for reading a request body when sending one (ureq reads it into the free input).
const TMP_MIN_BYTES: usize = 1024;
/// Output buffers kept between requests (at most this many), so that a request takes one
/// instead of zero-filling a fresh 16 KiB (~17,000 instructions a request in callgrind).
const SPARE_OUTPUTS: usize = 64;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A spare output buffer, or a new one. Its bytes are stale: ureq writes before it sends.
fn take_output() -> Vec<u8> {
    let spare = SPARE.lock().ok().and_then(|mut spare| spare.pop());
    spare.unwrap_or_else(|| vec![0; OUTPUT_BYTES])
}

/// Keeps `output` for a next request, if there is room.
fn give_back(output: Vec<u8>) {
    if output.len() != OUTPUT_BYTES {
        return;
    }
    if let Ok(mut spare) = SPARE.lock() {
        if spare.len() < SPARE_OUTPUTS {
            spare.push(output);
        }
    }
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct SlimBuffers {
    /// Zero-filled to its length; `consumed..filled` is unread input.
    input: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// Empty between requests.
    output: Vec<u8>,
    /// The last `input_consume` consumed something (ureq's `can_use_input`).
    progress: bool,
}

impl SlimBuffers {
    /// Room after the unread input: moves it to the front when it reached the end, and grows
    /// the buffer (up to `max`) when it is still full.
    fn make_room(&mut self, max: usize) {
        if self.consumed == self.filled {
            (self.consumed, self.filled) = (0, 0);
        } else if self.filled == self.input.len() && self.consumed > 0 {
            self.input.copy_within(self.consumed..self.filled, 0);
            (self.filled, self.consumed) = (self.filled - self.consumed, 0);
        }
        if self.filled == self.input.len() && self.input.len() < max {
            let len = (self.input.len() * 2).clamp(INPUT_START_BYTES, max);
            self.input.resize(len, 0);
        }
    }

    /// The request is sent: the output buffer goes back until the next one.
    pub fn request_sent(&mut self) {
        give_back(std::mem::take(&mut self.output));
    }

    /// The output buffer, taken when a request starts.
    fn output_buf(&mut self) -> &mut Vec<u8> {
        if self.output.is_empty() {
            self.output = take_output();
        }
        &mut self.output
    }

    /// The response body is being read: a buffer a big head grew goes back to its start size.
    pub fn reading_body(&mut self) {
        self.request_sent();
        let unread = self.filled - self.consumed;
        if self.input.len() > INPUT_START_BYTES && unread <= INPUT_START_BYTES {
            let mut small = vec![0; INPUT_START_BYTES];
            copy_prefix(&mut small, self.input());
            (self.input, self.filled, self.consumed) = (small, unread, 0);
        }
    }
}

/// Copies as much of `from` as fits to the start of `to`; returns how much that was.
pub fn copy_prefix(to: &mut [u8], from: &[u8]) -> usize {
    let n = to.len().min(from.len());
    if let (Some(to), Some(from)) = (to.get_mut(..n), from.get(..n)) {
        to.copy_from_slice(from);
    }
    n
}

impl Buffers for SlimBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.output_buf()
    }

    fn input(&self) -> &[u8] {
        self.input
            .get(self.consumed..self.filled)
            .unwrap_or_default()
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.make_room(INPUT_MAX_BYTES);
        self.input.get_mut(self.filled..).unwrap_or_default()
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled = (self.filled + amount).min(self.input.len());
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed = (self.consumed + amount).min(self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        // a peer that answers while the body is still being sent may fill the input: the
        // scratch room then grows past the head limit rather than reading the body into nothing
        self.make_room(INPUT_MAX_BYTES);
        if self.input.len() - self.filled < TMP_MIN_BYTES {
            self.input.resize(self.filled + TMP_MIN_BYTES, 0);
        }
        self.output_buf();
        let tmp = self.input.get_mut(self.filled..).unwrap_or_default();
        (tmp, &mut self.output)
    }

    fn can_use_input(&self) -> bool {
        self.progress && self.filled > self.consumed
    }
}

impl Drop for SlimBuffers {
    fn drop(&mut self) {
        self.request_sent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(b: &mut SlimBuffers, bytes: &[u8]) -> usize {
        let room = b.input_append_buf();
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
        b.input_appended(n);
        n
    }

    #[test]
    fn input_grows_for_a_big_head_up_to_the_limit_then_shrinks_for_the_body() {
        let mut b = SlimBuffers::default();
        let head = vec![b'h'; 20 * 1024];
        let mut taken = 0;
        while taken < head.len() {
            let n = append(&mut b, &head[taken..]);
            if n == 0 {
                break;
            }
            taken += n;
        }
        assert_eq!(taken, INPUT_MAX_BYTES, "the buffer stops at the head limit");
        assert_eq!(b.input().len(), INPUT_MAX_BYTES);
        b.input_consume(INPUT_MAX_BYTES - 10);
        b.reading_body();
        assert_eq!(b.input.len(), INPUT_START_BYTES);
        assert_eq!(b.input(), &head[..10]);
        assert!(b.output.is_empty());
    }

    #[test]
    fn unread_input_moves_to_the_front_before_the_buffer_grows() {
        let mut b = SlimBuffers::default();
        append(&mut b, &[1; INPUT_START_BYTES]);
        b.input_consume(INPUT_START_BYTES - 3);
        assert!(b.can_use_input());
        assert_eq!(b.input_append_buf().len(), INPUT_START_BYTES - 3);
        assert_eq!(b.input(), &[1, 1, 1]);
        assert_eq!(b.input.len(), INPUT_START_BYTES);
    }

    #[test]
    fn output_exists_only_while_a_request_is_sent() {
        let mut b = SlimBuffers::default();
        assert_eq!(b.output().len(), OUTPUT_BYTES);
        b.request_sent();
        assert!(b.output.is_empty());
        let (tmp, out) = b.tmp_and_output();
        assert!(tmp.len() >= TMP_MIN_BYTES);
        assert_eq!(out.len(), OUTPUT_BYTES);
    }
}
