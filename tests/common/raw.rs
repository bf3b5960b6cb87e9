//! Raw-TCP requests for hostile-input tests: send exact bytes (optionally trickled), read
//! whatever comes back until the relay closes or a timeout passes; and the reading side of a
//! bare-socket upstream.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What came back on a raw connection.
#[derive(Debug)]
pub struct RawReply {
    /// Status of the first response line, if any arrived.
    pub status: Option<u16>,
    /// Everything received, lossily decoded.
    pub text: String,
    /// True if the relay closed the connection (rather than the read timing out).
    pub closed: bool,
    /// From sending the first byte to the end of reading.
    pub elapsed: Duration,
}

/// Sends `parts` in order, sleeping `gap` between them (write errors end the sending: the
/// relay may close early), then reads until close or `timeout`.
pub fn raw_exchange(addr: &str, parts: &[&[u8]], gap: Duration, timeout: Duration) -> RawReply {
    let mut s = TcpStream::connect(addr).expect("connect relay");
    s.set_nodelay(true).unwrap();
    let started = Instant::now();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            std::thread::sleep(gap);
        }
        if s.write_all(p).is_err() {
            break;
        }
    }
    read_reply(s, started, timeout)
}

fn read_reply(mut s: TcpStream, started: Instant, timeout: Duration) -> RawReply {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true, // reset by the relay
        }
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok());
    RawReply {
        status,
        text,
        closed,
        elapsed: started.elapsed(),
    }
}

/// Reads one request with a `Content-Length` body (or none) from a bare-socket upstream's
/// connection: its body, or `None` when the connection ends first.
pub fn read_raw_request(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}
