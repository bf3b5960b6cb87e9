use std::io::{self, Read};

use super::*;

/// Bytes handed out `step` at a time (then `Ok(0)`, or an error with `fail`).
struct Pieces {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
    fail: Option<io::ErrorKind>,
}

impl Pieces {
    fn new(bytes: &[u8], step: usize) -> Pieces {
        Pieces {
            bytes: bytes.to_vec(),
            at: 0,
            step,
            fail: None,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.bytes.len() - self.at;
        if left == 0 {
            return match self.fail {
                Some(kind) => Err(io::Error::new(kind, "test")),
                None => Ok(0),
            };
        }
        let n = left.min(self.step).min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads one response from `wire` in reads of `step` bytes: the head, the body, whether the
/// connection may be reused, and what was left pending.
fn read(wire: &[u8], step: usize) -> Result<(Head, Vec<u8>, bool, Vec<u8>), ureq::Error> {
    let mut r = Pieces::new(wire, step);
    let mut inbox = Inbox::new(64);
    let head = read_head(&mut inbox, &mut r, 16 * 1024)?;
    let mut data = Vec::new();
    let reusable = read_body(head.framing, &mut inbox, &mut r, &mut data, &mut |_| Ok(()))?;
    let left = inbox.pending().to_vec();
    Ok((head, data, reusable, left))
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n\
    5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: t\r\n\r\n";

#[test]
fn every_framing_reads_the_same_body_whatever_the_reads_are() {
    let length = b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\nhelloabcdefghijklmnopqrstuvwxyz";
    let close = b"HTTP/1.1 200 OK\r\n\r\nhelloabcdefghijklmnopqrstuvwxyz";
    let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
        HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\nhelloabcdefghijklmnopqrstuvwxyz";
    for step in [1, 2, 3, 7, 64, 4096] {
        for (wire, framing, reusable) in [
            (&length[..], Framing::Length(31), true),
            (CHUNKED, Framing::Chunked, true),
            (&close[..], Framing::Close, false),
            (&interim[..], Framing::Length(31), true),
        ] {
            let (head, body, reused, left) = read(wire, step).unwrap();
            assert_eq!(head.framing, framing, "step {step}");
            assert_eq!(head.response.status(), 200);
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(reused, reusable, "step {step}");
            assert!(left.is_empty());
        }
    }
}

#[test]
fn the_head_keeps_every_header() {
    let (head, ..) = read(CHUNKED, 5).unwrap();
    assert_eq!(head.response.headers()["x-a"], "b");
    assert_eq!(head.response.version(), Version::HTTP_11);
}

#[test]
fn bytes_after_a_body_stay_pending() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    let (_, body, reusable, left) = read(wire, 4096).unwrap();
    assert_eq!(
        (&body[..], reusable, &left[..]),
        (&b"ok"[..], true, &b"EXTRA"[..])
    );
}

#[test]
fn a_connection_is_kept_only_when_http_1_1_allows_it() {
    let cases: [(&[u8], bool); 6] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", true),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
            false,
        ),
    ];
    for (wire, kept) in cases {
        let (head, ..) = read(wire, 4096).unwrap();
        assert_eq!(head.keep_alive, kept, "{}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn a_body_cut_short_is_an_error_not_an_answer() {
    let cut: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-",
    ];
    for wire in cut {
        for step in [1, 4096] {
            let err = read(wire, step).unwrap_err();
            assert!(
                matches!(&err, ureq::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
                "{err} for {}",
                String::from_utf8_lossy(wire)
            );
        }
    }
    // ureq's leniency: a close right after the last chunk ends the body (not the connection)
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n";
    let (_, body, reusable, _) = read(wire, 3).unwrap();
    assert_eq!((&body[..], reusable), (&b"ok"[..], false));
}

#[test]
fn broken_framing_is_a_protocol_error() {
    let broken: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
    ];
    for wire in broken {
        let err = read(wire, 4096).unwrap_err();
        assert!(
            matches!(err, ureq::Error::Protocol(_)),
            "{err} for {}",
            String::from_utf8_lossy(wire)
        );
    }
    // the same length twice is one length
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(read(wire, 4096).unwrap().1, b"ok");
}

#[test]
fn a_head_past_the_limit_is_refused_naming_it() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..100 {
        wire.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(100)).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    let mut inbox = Inbox::new(64);
    let err = read_head(&mut inbox, &mut Pieces::new(&wire, 1000), 4096).unwrap_err();
    assert!(
        matches!(err, ureq::Error::LargeResponseHeader(_, 4096)),
        "{err}"
    );
    let head = read_head(
        &mut Inbox::new(64),
        &mut Pieces::new(&wire, 1000),
        16 * 1024,
    );
    assert_eq!(head.unwrap().response.headers().len(), 100);
}

#[test]
fn a_read_error_ends_the_read_as_an_io_error() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
    let mut r = Pieces::new(wire, 7);
    r.fail = Some(io::ErrorKind::TimedOut);
    let mut inbox = Inbox::new(64);
    let head = read_head(&mut inbox, &mut r, 16 * 1024).unwrap();
    let mut data = Vec::new();
    let err = read_body(head.framing, &mut inbox, &mut r, &mut data, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(err, ureq::Error::Io(e) if e.kind() == io::ErrorKind::TimedOut));
}

#[test]
fn the_bounds_are_asked_as_the_body_grows_and_stop_it() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\nhelloabcdefghijklmnopqrstuvwxyz"[..],
        CHUNKED,
    ] {
        let mut r = Pieces::new(wire, 10);
        let mut inbox = Inbox::new(64);
        let head = read_head(&mut inbox, &mut r, 16 * 1024).unwrap();
        let mut data = Vec::new();
        let mut seen = Vec::new();
        let err = read_body(head.framing, &mut inbox, &mut r, &mut data, &mut |n| {
            seen.push(n);
            if n > 20 {
                Err(ureq::Error::BodyExceedsLimit(20))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(err, ureq::Error::BodyExceedsLimit(20)));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(*seen.last().unwrap() > 20);
    }
}
