//! Raw-TCP requests for hostile-input tests: send exact bytes (optionally trickled), read
//! whatever comes back until the relay closes or a timeout passes; the reading side of a
//! bare-socket upstream, and one that keeps its connections; and a keep-alive client's chat
//! request and its answer, as bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ask;

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

/// The bytes of a chat request asking `content` ([`ask`]; `Content-Length` framed, keep-alive).
pub fn chat_request_bytes(content: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ask(content)).unwrap();
    let mut out = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Reads one `Content-Length` framed answer: its status and JSON body.
pub fn read_json_answer(reader: &mut BufReader<TcpStream>) -> (u16, Value) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// How [`raw_upstream`] ends each answer.
#[derive(Clone, Copy, PartialEq)]
pub enum AfterAnswer {
    /// Serves the next request on the same connection (HTTP/1.1 keep-alive).
    Keep,
    /// Closes the connection without having said so (no `Connection: close`).
    Close,
    /// Writes bytes after the body (in the same write) and keeps the connection open.
    Garbage,
}

/// An upstream on a bare socket whose answers say keep-alive (HTTP/1.1, no `Connection:
/// close`), echoing the first message: its URL, and a count of the connections it accepted.
/// Reports each close it makes on `closed`.
pub fn raw_upstream(
    after: AfterAnswer,
    closed: std::sync::mpsc::Sender<()>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let closed = closed.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                while let Some(body) = read_raw_request(&mut reader) {
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let answer = json!({
                        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1_700_000_000,
                        "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant",
                            "content": format!("echo {}", request["messages"][0]["content"].as_str().unwrap()),
                        }}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
                    })
                    .to_string();
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if after == AfterAnswer::Garbage {
                        out.push_str("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nold");
                    }
                    conn.write_all(out.as_bytes()).unwrap();
                    match after {
                        AfterAnswer::Keep => {}
                        AfterAnswer::Close => {
                            drop(reader);
                            drop(conn);
                            let _ = closed.send(());
                            return;
                        }
                        AfterAnswer::Garbage => {
                            // holds the connection until the relay closes it
                            let _ = reader.read(&mut [0; 64]);
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, accepted)
}
