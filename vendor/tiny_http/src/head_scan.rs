//! llm-relay patch: byte scans of a request head, kept apart from `client.rs`'s reading:
//! where a request that has arrived whole ends (`request_len`, for kept connections) and what
//! the next chunk of the read buffer adds to a head line (`line_chunk`).

use crate::client::MAX_LINE;

/// llm-relay patch: why a head line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineError {
    /// A bare CR or LF, or a NUL (RFC 9112 section 2.2: recipients disagree on where such a
    /// line ends).
    Bare,
    /// The head's deadline passed.
    Late,
    /// The line passed `MAX_LINE`.
    Long,
}

/// llm-relay patch: takes the next piece of a head line from `available` (a chunk of the read
/// buffer) into `line` (without its CR LF). Returns how many bytes it used, how many of them count as head bytes
/// (all but a refused byte and the line's LF), and, once the line ends or is refused, how.
/// `cr`: the line's last byte so far was CR (it carries over chunks). The checks and their
/// order are those of tiny_http's loop over each byte; runs of plain bytes are found with a
/// search and copied at once, and `late` is asked once per call.
pub(crate) fn line_chunk(
    available: &[u8],
    line: &mut Vec<u8>,
    cr: &mut bool,
    late: impl Fn() -> bool,
) -> (usize, usize, Option<Result<(), LineError>>) {
    let mut known_late = None;
    let mut late = || *known_late.get_or_insert_with(&late);
    let (mut at, mut taken) = (0, 0);
    loop {
        if !*cr {
            let rest = available.get(at..).unwrap_or_default();
            let run = memchr::memchr3(b'\n', b'\r', 0, rest).unwrap_or(rest.len());
            if run > 0 {
                if late() {
                    return (at + 1, taken + 1, Some(Err(LineError::Late)));
                }
                let room = MAX_LINE.saturating_sub(line.len());
                if run > room {
                    line.extend_from_slice(rest.get(..room).unwrap_or_default());
                    return (at + room + 1, taken + room + 1, Some(Err(LineError::Long)));
                }
                line.extend_from_slice(rest.get(..run).unwrap_or_default());
                at += run;
                taken += run;
            }
        }
        let Some(&byte) = available.get(at) else {
            return (at, taken, None);
        };
        at += 1;
        if byte == b'\n' && *cr {
            *cr = false;
            return (at, taken, Some(Ok(())));
        }
        if byte == b'\n' || byte == 0 || *cr {
            return (at, taken, Some(Err(LineError::Bare)));
        }
        *cr = byte == b'\r';
        taken += 1;
        if late() {
            return (at, taken, Some(Err(LineError::Late)));
        }
        if line.len() >= MAX_LINE {
            return (at, taken, Some(Err(LineError::Long)));
        }
        // the only byte that gets here is a CR (the others end or refuse the line): it is not
        // part of the line, and pushing it cost a reallocation per line (the line's own
        // allocation was exactly its text)
    }
}

/// llm-relay patch: the length of the request at the start of `bytes` — its head and its
/// `Content-Length` body — once its head is there; `None` while it is not, and for a head
/// [`ClientConnection::whole_request_within`] leaves to the usual path (a chunked body, a
/// `Content-Length` it cannot read or two of them, a head past 64 KiB).
pub(crate) fn request_len(bytes: &[u8]) -> Option<usize> {
    // the end of the head: the first CR LF CR LF, its last LF within 64 KiB
    const MAX_HEAD: usize = 64 * 1024;
    let within = bytes.get(..bytes.len().min(MAX_HEAD + 1))?;
    let head = memchr::memmem::find(within, b"\r\n\r\n")? + 4;
    let mut body = None;
    let mut lines = memchr::memchr_iter(b'\n', bytes.get(..head)?);
    let mut start = lines.next()? + 1; // past the request line
    for nl in lines {
        let line = bytes.get(start..nl)?;
        start = nl + 1;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if body.is_some() {
                return None; // two lengths: which one counts is the usual path's to say
            }
            let value = std::str::from_utf8(value.get(1..)?).ok()?.trim();
            body = Some(value.parse::<usize>().ok()?);
        }
    }
    head.checked_add(body.unwrap_or(0))
}

#[cfg(test)]
mod request_len_tests {
    use super::request_len;

    #[test]
    fn a_request_is_its_head_and_its_content_length_body() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\n\r\n";
        assert_eq!(request_len(head), Some(head.len() + 5));
        assert_eq!(
            request_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET"),
            Some(27)
        );
    }

    #[test]
    fn part_of_a_head_a_chunked_body_or_a_bad_length_is_left_to_the_usual_path() {
        assert_eq!(request_len(b"POST /x HTTP/1.1\r\nHost: a\r\n"), None);
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello";
        assert_eq!(request_len(chunked), None);
        assert_eq!(
            request_len(b"POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            None
        );
        assert_eq!(
            request_len(b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            None
        );
        let twice = b"POST /x HTTP/1.1\r\nContent-Length: 900\r\nContent-Length: 1\r\n\r\nab";
        assert_eq!(request_len(twice), None);
    }

    /// The scan as it was, newline by newline: the oracle.
    fn by_newlines(bytes: &[u8]) -> Option<usize> {
        let mut from = 0;
        let head = loop {
            let nl = from + bytes.get(from..)?.iter().position(|&b| b == b'\n')?;
            if nl > 64 * 1024 {
                return None;
            }
            if nl >= 3 && bytes.get(nl - 3..nl) == Some(b"\r\n\r") {
                break nl + 1;
            }
            from = nl + 1;
        };
        let mut body = None;
        for line in bytes.get(..head)?.split(|&b| b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = line.split_at(colon);
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                return None;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                if body.is_some() {
                    return None;
                }
                let value = std::str::from_utf8(value.get(1..)?).ok()?.trim();
                body = Some(value.parse::<usize>().ok()?);
            }
        }
        head.checked_add(body.unwrap_or(0))
    }

    #[test]
    fn the_search_finds_what_the_scan_by_newlines_found() {
        const PIECES: &[&[u8]] = &[
            b"POST /v1/chat/completions HTTP/1.1",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host: a",
            b"Content-Length: 12",
            b"content-length:7 ",
            b"Content-Length: x",
            b"Transfer-Encoding: chunked",
            b"X: a:b",
            b"{\"a\":1}",
            b"",
            b"\r\n\r\n",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..100_000 {
            let mut bytes = Vec::new();
            for _ in 0..next(12) {
                bytes.extend_from_slice(PIECES[next(PIECES.len())]);
            }
            assert_eq!(
                request_len(&bytes),
                by_newlines(&bytes),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // around the 64 KiB bound of the head
        for pad in (64 * 1024 - 8)..(64 * 1024 + 8) {
            let mut bytes = b"GET / HTTP/1.1\r\nX: ".to_vec();
            bytes.resize(pad, b'a');
            bytes.extend_from_slice(b"\r\n\r\n");
            assert_eq!(request_len(&bytes), by_newlines(&bytes), "{pad}");
        }
    }
}

#[cfg(test)]
mod line_chunk_tests {
    use super::{line_chunk, LineError, MAX_LINE};

    /// tiny_http's loop over each byte, as it was: the oracle.
    fn per_byte(
        available: &[u8],
        line: &mut Vec<u8>,
        cr: &mut bool,
        late: bool,
    ) -> (usize, usize, Option<Result<(), LineError>>) {
        let (mut used, mut taken) = (0, 0);
        for &byte in available {
            used += 1;
            if byte == b'\n' && *cr {
                line.pop();
                *cr = false;
                return (used, taken, Some(Ok(())));
            }
            if byte == b'\n' || byte == 0 || *cr {
                return (used, taken, Some(Err(LineError::Bare)));
            }
            *cr = byte == b'\r';
            taken += 1;
            if late {
                return (used, taken, Some(Err(LineError::Late)));
            }
            if line.len() >= MAX_LINE {
                return (used, taken, Some(Err(LineError::Long)));
            }
            line.push(byte);
        }
        (used, taken, None)
    }

    #[test]
    fn a_chunk_is_taken_as_the_loop_over_each_byte_took_it() {
        let alphabet = [b'a', b' ', b':', b'\r', b'\n', 0];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for round in 0..200_000u32 {
            let len = (next() % 12) as usize;
            let chunk: Vec<u8> = (0..len)
                .map(|_| {
                    // mostly plain bytes, as in real heads
                    let r = next() % 16;
                    alphabet.get(r as usize).copied().unwrap_or(b'x')
                })
                .collect();
            let start_len = match round % 4 {
                0 => 0,
                1 => MAX_LINE - (next() % 8) as usize,
                _ => (next() % 20) as usize,
            };
            let start = vec![b'h'; start_len];
            let cr = next() % 3 == 0;
            let late = next() % 10 == 0;
            let (mut a_line, mut a_cr) = (start.clone(), cr);
            // the loop's line held the CR that `cr` says was the last byte
            let mut b_line = start;
            if cr {
                b_line.push(b'\r');
            }
            let mut b_cr = cr;
            let a = line_chunk(&chunk, &mut a_line, &mut a_cr, || late);
            let b = per_byte(&chunk, &mut b_line, &mut b_cr, late);
            assert_eq!(
                (a, a_cr),
                (b, b_cr),
                "{chunk:?} after {start_len} bytes, cr {cr}, late {late}"
            );
            // the loop kept a CR in the line until its LF came; the line's text is the same
            if b_cr && b_line.last() == Some(&b'\r') {
                b_line.pop();
            }
            assert!(a_line == b_line, "{chunk:?}");
            checked += 1;
        }
        assert_eq!(checked, 200_000);
    }

    #[test]
    fn a_head_line_ends_at_its_crlf() {
        let mut line = Vec::new();
        let mut cr = false;
        let got = line_chunk(b"Host: x\r\nAccept: */*\r\n", &mut line, &mut cr, || false);
        assert_eq!(got, (9, 8, Some(Ok(()))));
        assert_eq!(line, b"Host: x");
        // a CR at the end of one chunk and its LF at the start of the next
        let (mut line, mut cr) = (Vec::new(), false);
        assert_eq!(
            line_chunk(b"Ho\r", &mut line, &mut cr, || false),
            (3, 3, None)
        );
        assert!(cr);
        assert_eq!(
            line_chunk(b"\nX", &mut line, &mut cr, || false),
            (1, 0, Some(Ok(())))
        );
        assert_eq!(line, b"Ho");
    }
}
