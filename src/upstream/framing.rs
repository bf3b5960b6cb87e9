//! The framing of an HTTP/1.1 response read by the direct client (`direct`): the bytes read
//! and not yet used ([`Inbox`]), the head parsed as ureq parses one (`ureq_proto::parser`, 1xx
//! interim answers skipped), the length of the body (RFC 9112 §6.3: [`Framing`]), and the
//! body read whole by its `Content-Length`, chunked, or up to the close.
//!
//! Reads go through any `Read` (a socket under a deadline in `direct`, bytes in tests); an
//! I/O error is returned as `ureq::Error::Io` for the caller to name by phase, and a framing
//! error as ureq reports it (`ureq::Error::Protocol`), so failures map to the same 502 either
//! way.

use std::io::{self, Read};

use ureq::http::{header, HeaderMap, Response, StatusCode, Version};
use ureq_proto::parser::try_parse_response;

/// The most headers a response may have (ureq's limit).
const MAX_HEADERS: usize = 128;

/// The longest line of a chunked body accepted (a chunk size with its extensions, a trailer).
const MAX_LINE: usize = 4 * 1024;

/// Bytes read at a time straight into a body (each read is followed by a bounds check).
const BODY_STEP: u64 = 64 * 1024;

/// How a connection ends after an upstream closed it in the middle of an answer (ureq's words).
pub fn disconnected() -> ureq::Error {
    ureq::Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "Peer disconnected",
    ))
}

/// Bytes read from a connection and not used yet: `buf[start..end]`. `buf` is zero-filled once
/// and grows only for a response head longer than it.
#[derive(Debug)]
pub struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    pub fn new(size: usize) -> Inbox {
        Inbox {
            buf: vec![0; size.max(1)],
            start: 0,
            end: 0,
        }
    }

    /// The bytes read and not used.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Shrinks the buffer back to `size` once a long head grew it (nothing is pending then).
    pub fn reset(&mut self, size: usize) {
        (self.start, self.end) = (0, 0);
        if self.buf.len() > size {
            self.buf.truncate(size.max(1));
            self.buf.shrink_to_fit();
        }
    }

    /// Reads once more behind what is pending, first making room (moving the pending bytes to
    /// the front, or growing the buffer up to `max` bytes). `Ok(0)`: the connection closed.
    fn fill(&mut self, r: &mut impl Read, max: usize) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() && self.buf.len() < max {
            let grown = (self.buf.len() * 2).min(max);
            self.buf.resize(grown, 0);
        }
        let Some(room) = self.buf.get_mut(self.end..) else {
            return Ok(0);
        };
        loop {
            match r.read(room) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
            }
        }
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// A response head: the response (its body to come) and how its body is framed.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub keep_alive: bool,
}

/// Reads a response head of at most `max` bytes (interim 1xx answers are skipped), leaving
/// what follows it in `inbox`.
pub fn read_head(inbox: &mut Inbox, r: &mut impl Read, max: usize) -> Result<Head, ureq::Error> {
    loop {
        let pending = inbox.pending();
        if let Some((used, response)) = try_parse_response::<MAX_HEADERS>(pending)? {
            if used > max {
                return Err(ureq::Error::LargeResponseHeader(used, max));
            }
            inbox.consume(used);
            let status = response.status();
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return head_of(response);
        }
        if pending.len() >= max {
            return Err(ureq::Error::LargeResponseHeader(pending.len(), max));
        }
        if inbox.fill(r, max)? == 0 {
            return Err(disconnected());
        }
    }
}

/// The framing of `response`'s body and whether its connection stays open.
fn head_of(response: Response<()>) -> Result<Head, ureq::Error> {
    let headers = response.headers();
    let chunked_last = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.rsplit(',').next())
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
        });
    let length = content_length(headers)?;
    let status = response.status().as_u16();
    let framing = if status == 204 || status == 304 || status == 101 {
        Framing::Empty
    } else {
        match (chunked_last, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    let closing = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    // a message with both framings may have been smuggled: never reuse its connection
    let keep_alive = response.version() == Version::HTTP_11
        && !closing
        && framing != Framing::Close
        && status != 101
        && !(chunked_last.is_some() && length.is_some());
    Ok(Head {
        response,
        framing,
        keep_alive,
    })
}

/// The `Content-Length` of a head: every value (and list member) the same number, or an error.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ureq::Error> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().unwrap_or("x");
        for part in text.split(',') {
            let part = part.trim();
            let parsed = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (None, _) => return Err(ureq_proto::Error::BadContentLengthHeader.into()),
                (Some(n), Some(m)) if n != m => {
                    return Err(ureq_proto::Error::TooManyContentLengthHeaders.into())
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    Ok(length)
}

/// Reads a body framed by `framing` whole into `data`, calling `grew` with its length each
/// time it grew (the caller's bounds; its error ends the read). Returns whether the connection
/// ended at the end of the message (so it may carry another).
pub fn read_body(
    framing: Framing,
    inbox: &mut Inbox,
    r: &mut impl Read,
    data: &mut Vec<u8>,
    grew: &mut dyn FnMut(u64) -> Result<(), ureq::Error>,
) -> Result<bool, ureq::Error> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(n) => {
            take(inbox, r, n, data, grew)?;
            Ok(true)
        }
        Framing::Close => {
            let pending = inbox.pending().len() as u64;
            take(inbox, r, pending, data, grew)?;
            loop {
                match read_some(r, BODY_STEP, data)? {
                    0 => return Ok(false),
                    _ => grew(data.len() as u64)?,
                }
            }
        }
        Framing::Chunked => chunked(inbox, r, data, grew),
    }
}

/// Moves `n` body bytes into `data`: those pending first, then straight from `r`.
fn take(
    inbox: &mut Inbox,
    r: &mut impl Read,
    n: u64,
    data: &mut Vec<u8>,
    grew: &mut dyn FnMut(u64) -> Result<(), ureq::Error>,
) -> Result<(), ureq::Error> {
    let pending = inbox.pending();
    let now = pending.len().min(usize::try_from(n).unwrap_or(usize::MAX));
    data.extend_from_slice(pending.get(..now).unwrap_or_default());
    inbox.consume(now);
    if now > 0 {
        grew(data.len() as u64)?;
    }
    let mut left = n - now as u64;
    while left > 0 {
        match read_some(r, left.min(BODY_STEP), data)? {
            0 => return Err(disconnected()),
            got => left -= got as u64,
        }
        grew(data.len() as u64)?;
    }
    Ok(())
}

/// Moves up to `most` body bytes into `buf`: those pending, else what one read of `r` brings
/// (straight into `buf`). `Ok(0)`: the connection closed.
pub(super) fn take_some(
    inbox: &mut Inbox,
    r: &mut impl Read,
    most: u64,
    buf: &mut [u8],
) -> Result<usize, ureq::Error> {
    let room = buf.len().min(usize::try_from(most).unwrap_or(usize::MAX));
    let pending = inbox.pending();
    if !pending.is_empty() {
        let n = pending.len().min(room);
        if let (Some(to), Some(from)) = (buf.get_mut(..n), pending.get(..n)) {
            to.copy_from_slice(from);
        }
        inbox.consume(n);
        return Ok(n);
    }
    let Some(to) = buf.get_mut(..room) else {
        return Ok(0);
    };
    loop {
        match r.read(to) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return Ok(other?),
        }
    }
}

/// Reads up to `most` bytes from `r` onto the end of `data` (into its spare capacity, not a
/// zero-filled buffer). `Ok(0)`: the connection closed.
fn read_some(r: &mut impl Read, most: u64, data: &mut Vec<u8>) -> Result<usize, ureq::Error> {
    Ok(r.by_ref().take(most).read_to_end(data)?)
}

/// A chunked body: each chunk's size line, its bytes and their CRLF; then the trailers up to
/// the empty line. A close right after the last chunk's size line ends the body too (ureq
/// accepts that), but not the connection.
fn chunked(
    inbox: &mut Inbox,
    r: &mut impl Read,
    data: &mut Vec<u8>,
    grew: &mut dyn FnMut(u64) -> Result<(), ureq::Error>,
) -> Result<bool, ureq::Error> {
    loop {
        let len = line(inbox, r)?.ok_or_else(disconnected)?;
        let size = chunk_size(inbox.pending().get(..len).unwrap_or_default())?;
        inbox.consume(len);
        if size == 0 {
            // trailers, up to the empty line
            loop {
                match line(inbox, r)? {
                    None => return Ok(false),
                    Some(len) => {
                        let empty = matches!(inbox.pending().get(..len), Some(b"\r\n" | b"\n"));
                        inbox.consume(len);
                        if empty {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        take(inbox, r, size, data, grew)?;
        let len = line(inbox, r)?.ok_or_else(disconnected)?;
        let ends = matches!(inbox.pending().get(..len), Some(b"\r\n" | b"\n"));
        if !ends {
            return Err(ureq_proto::Error::ChunkExpectedCrLf.into());
        }
        inbox.consume(len);
    }
}

/// Makes sure a whole line is pending; returns its length with its `\n` (`None`: the
/// connection closed first).
pub(super) fn line(inbox: &mut Inbox, r: &mut impl Read) -> Result<Option<usize>, ureq::Error> {
    let mut searched = 0;
    loop {
        let pending = inbox.pending();
        let fresh = pending.get(searched..).unwrap_or_default();
        if let Some(at) = memchr::memchr(b'\n', fresh) {
            return Ok(Some(searched + at + 1));
        }
        searched = pending.len();
        if searched >= MAX_LINE {
            return Err(ureq_proto::Error::HttpParseFail(format!(
                "a line of the chunked body is longer than {MAX_LINE} bytes"
            ))
            .into());
        }
        if inbox.fill(r, MAX_LINE.max(inbox.buf.len()))? == 0 {
            return Ok(None);
        }
    }
}

/// The size on a chunk's size line (hex digits, then optional extensions after `;`).
pub(super) fn chunk_size(line: &[u8]) -> Result<u64, ureq::Error> {
    let digits = line
        .split(|&b| b == b';' || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ureq_proto::Error::ChunkLenNotANumber.into());
    }
    let mut size = 0u64;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(ureq_proto::Error::ChunkLenNotANumber.into()),
        };
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
