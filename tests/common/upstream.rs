//! Upstream fixture on raw `std::net::TcpListener` (exact control over
//! timing and connection teardown). The default OpenAI-like handler is in
//! `openai.rs`.
//!
//! Every connection gets one response with `Connection: close` and is then
//! closed. A request whose body ends before its framing says (no terminating
//! chunk, fewer bytes than its `Content-Length`) is an aborted request: it is
//! recorded apart ([`Upstream::aborted`]), never among the requests, and gets
//! no answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::openai::openai_reply;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    /// Body parsed as JSON (panics with the raw body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "upstream body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What the fixture does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Full response with `Content-Length`.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `text/event-stream` with chunked encoding; each event is one chunk,
    /// written after its delay. `die` closes the socket without the final
    /// zero-length chunk.
    Sse {
        events: Vec<(Duration, String)>,
        die: bool,
    },
    /// Sleep, then send the inner reply.
    Delay(Duration, Box<Reply>),
    /// Hold the request until `gate` is set (at most 60 s), then send the inner reply: an
    /// upstream that is busy for exactly as long as the test needs it to be.
    Hold(Arc<AtomicBool>, Box<Reply>),
    /// `text/event-stream`: the `first` events, then once `gate` is set the `rest` and a clean
    /// end; if the gate stays unset for 15 s, the connection is cut instead (so a test that
    /// waits for the client to see an event cannot pass when it arrived late).
    SseGated {
        first: Vec<String>,
        gate: Arc<AtomicBool>,
        rest: Vec<String>,
    },
    /// `text/event-stream` in lock step with the client: event `i` (from the second on) is
    /// written only once `seen` (the client's count of events received) reaches `i`; if it does
    /// not within 15 s, the connection is cut. A relay that held an event back would so never
    /// get the next one: forwarding event by event is shown by order, not by timing.
    SseLockstep {
        events: Vec<String>,
        seen: Arc<AtomicUsize>,
    },
    /// `text/event-stream`: the `first` events, then a `data:` line that never ends, in 64 KiB
    /// chunks until a write fails (the relay closed the connection) or [`ENDLESS_LIMIT`] bytes
    /// went out (then the connection is held open until the relay closes it, at most 60 s).
    /// Sends `(bytes of the endless line written, whether a write failed)` on `report`.
    SseEndless {
        first: Vec<String>,
        report: mpsc::Sender<(u64, bool)>,
    },
    /// The head of `reply` (a [`Reply::Raw`]; `chunked` frames its body in one chunk instead of
    /// `Content-Length`) and the first `sent` bytes of its body, then silence with the
    /// connection open until `gate` is set (then the rest and a clean end), the relay closes
    /// the connection, or 60 s pass: an upstream that stalls after its response head.
    Stall {
        reply: Box<Reply>,
        sent: usize,
        chunked: bool,
        gate: Arc<AtomicBool>,
    },
    /// Close the connection without answering.
    Close,
}

/// The most a [`Reply::SseEndless`] fixture sends of its endless line.
pub const ENDLESS_LIMIT: u64 = 128 * 1024 * 1024;

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Raw {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    pub fn raw(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply::Raw {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    pub fn sse(events: Vec<(Duration, String)>) -> Reply {
        Reply::Sse { events, die: false }
    }

    pub fn sse_then_die(events: Vec<(Duration, String)>) -> Reply {
        Reply::Sse { events, die: true }
    }

    pub fn delay(d: Duration, reply: Reply) -> Reply {
        Reply::Delay(d, Box::new(reply))
    }

    pub fn hold(gate: &Arc<AtomicBool>, reply: Reply) -> Reply {
        Reply::Hold(Arc::clone(gate), Box::new(reply))
    }

    pub fn stall(reply: Reply, sent: usize, chunked: bool, gate: &Arc<AtomicBool>) -> Reply {
        Reply::Stall {
            reply: Box::new(reply),
            sent,
            chunked,
            gate: Arc::clone(gate),
        }
    }

    pub fn sse_endless(first: Vec<String>, report: &mpsc::Sender<(u64, bool)>) -> Reply {
        Reply::SseEndless {
            first,
            report: report.clone(),
        }
    }

    pub fn close() -> Reply {
        Reply::Close
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A running upstream fixture. Stops accepting on drop.
pub struct Upstream {
    port: u16,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    aborted: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let aborted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let (reqs, stop2) = (Arc::clone(&requests), Arc::clone(&stop));
        let cut = Arc::clone(&aborted);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, handler) = (Arc::clone(&reqs), Arc::clone(&handler));
                let cut = Arc::clone(&cut);
                thread::spawn(move || serve_connection(conn, &reqs, &cut, &*handler));
            }
        });
        Upstream {
            port,
            requests,
            aborted,
            stop,
        }
    }

    /// A fixture answering like the OpenAI API (see [`openai_reply`]).
    pub fn openai() -> Upstream {
        Upstream::start(openai_reply)
    }

    /// A fixture that speaks every API the relay does: the OpenAI routes, the Responses API
    /// ([`super::responses_reply`]) and Anthropic Messages ([`super::anthropic_reply`]).
    pub fn apis() -> Upstream {
        Upstream::start(|req| {
            super::responses_reply(req)
                .or_else(|| super::anthropic_reply(req))
                .unwrap_or_else(|| openai_reply(req))
        })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Snapshot of the requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Snapshot of the aborted requests so far: head received, body cut before the end its
    /// framing announced (`body` holds what arrived).
    pub fn aborted(&self) -> Vec<RecordedRequest> {
        self.aborted.lock().unwrap().clone()
    }

    /// The single request received; panics if there were zero or several.
    pub fn only_request(&self) -> RecordedRequest {
        let reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "expected exactly one upstream request, got {reqs:#?}"
        );
        reqs.into_iter().next().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A `http://127.0.0.1:1/v1` URL where nothing listens. Port 1 lies outside the kernel's
/// ephemeral range, where every fixture binds: a port bound and dropped here could be taken by
/// another test's fixture while a relay still pointed at it, which then answered that relay
/// (the likely cause of two `upstreams_failover` tests failing together once in a full run).
pub fn closed_port_url() -> String {
    "http://127.0.0.1:1/v1".to_string()
}

fn serve_connection(
    stream: TcpStream,
    reqs: &Mutex<Vec<RecordedRequest>>,
    aborted: &Mutex<Vec<RecordedRequest>>,
    handler: &(dyn Fn(&RecordedRequest) -> Reply + Send + Sync),
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some((req, complete)) = read_request(&mut reader, &mut writer) else {
        return;
    };
    if !complete {
        aborted.lock().unwrap().push(req);
        return;
    }
    reqs.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let _ = write_reply(&mut writer, reply);
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Both);
}

/// The request whose head arrived, and whether its body arrived whole (`None`: no head).
fn read_request(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
) -> Option<(RecordedRequest, bool)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let mut body = Vec::new();
    let complete =
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            read_chunked(r, &mut body).is_some()
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().ok()?;
            let got = r.by_ref().take(len as u64).read_to_end(&mut body);
            got.is_ok() && body.len() == len
        } else {
            true
        };
    let req = RecordedRequest {
        method,
        path,
        headers,
        body,
    };
    Some((req, complete))
}

/// Reads a chunked body into `body`, up to and including its terminating chunk and trailers;
/// `None` if the connection ended (or broke) before.
fn read_chunked(r: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Option<()> {
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let size = size.trim().split(';').next()?;
        let n = usize::from_str_radix(size, 16).ok()?;
        if n == 0 {
            // Trailers until the blank line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).ok()? == 0 {
                    return None;
                }
                if t.trim().is_empty() {
                    return Some(());
                }
            }
        }
        let mut chunk = Vec::with_capacity(n + 2);
        r.by_ref().take(n as u64 + 2).read_to_end(&mut chunk).ok()?;
        body.extend_from_slice(chunk.get(..n).unwrap_or(&chunk));
        if chunk.len() < n + 2 {
            return None;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Waits until `gate` is set; false if `within` passed first.
fn gate_opens(gate: &AtomicBool, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while !gate.load(Ordering::SeqCst) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The head of a plain 200 event stream (chunked, closed after it).
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/// The status line and `headers`, each line ended; the caller adds framing and the blank line.
fn status_and_headers(status: u16, headers: &[(String, String)]) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

fn write_reply(w: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Close => Ok(()),
        Reply::Delay(d, inner) => {
            thread::sleep(d);
            write_reply(w, *inner)
        }
        Reply::Hold(gate, inner) => {
            gate_opens(&gate, Duration::from_secs(60));
            write_reply(w, *inner)
        }
        Reply::Raw {
            status,
            headers,
            body,
        } => {
            let mut head = status_and_headers(status, &headers);
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            w.write_all(head.as_bytes())?;
            w.write_all(&body)?;
            w.flush()
        }
        Reply::SseLockstep { events, seen } => {
            w.write_all(SSE_HEAD)?;
            for (i, event) in events.iter().enumerate() {
                let deadline = std::time::Instant::now() + Duration::from_secs(15);
                while seen.load(Ordering::SeqCst) < i {
                    if std::time::Instant::now() > deadline {
                        return Ok(()); // cut: no further events, no end chunk
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                w.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
                w.flush()?;
            }
            w.write_all(b"0\r\n\r\n")?;
            w.flush()
        }
        Reply::SseGated { first, gate, rest } => {
            // the first events go out before the wait: write them, then wait, then the rest
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                  Cache-Control: no-cache\r\nX-Request-Id: req_gated_stream\r\n\
                  Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            )?;
            for event in first {
                w.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
            }
            w.flush()?;
            if !gate_opens(&gate, Duration::from_secs(15)) {
                return Ok(()); // cut: no further events, no end chunk
            }
            for event in rest {
                w.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
                w.flush()?;
            }
            w.write_all(b"0\r\n\r\n")?;
            w.flush()
        }
        Reply::Stall {
            reply,
            sent,
            chunked,
            gate,
        } => {
            let Reply::Raw {
                status,
                headers,
                body,
            } = *reply
            else {
                panic!("Reply::Stall takes a Reply::Raw");
            };
            let mut head = status_and_headers(status, &headers);
            let (first, rest) = body.split_at(sent.min(body.len()));
            if chunked {
                head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                head.push_str(&format!("{:x}\r\n", body.len()));
            } else {
                head.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ));
            }
            w.write_all(head.as_bytes())?;
            w.write_all(first)?;
            w.flush()?;
            w.set_read_timeout(Some(Duration::from_millis(20)))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut buf = [0u8; 256];
            while !gate.load(Ordering::SeqCst) {
                if std::time::Instant::now() > deadline {
                    return Ok(()); // held for 60 s: cut without the rest
                }
                match w.read(&mut buf) {
                    Ok(0) => return Ok(()), // the relay gave up and closed the connection
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Ok(()),
                }
            }
            w.write_all(rest)?;
            if chunked {
                w.write_all(b"\r\n0\r\n\r\n")?;
            }
            w.flush()
        }
        Reply::SseEndless { first, report } => {
            let (sent, cut) = write_endless(w, &first);
            let _ = report.send((sent, cut));
            if !cut {
                // hold the connection: a relay still reading must not see it end
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let mut buf = [0u8; 256];
                while std::time::Instant::now() < deadline {
                    match w.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            }
            Ok(())
        }
        Reply::Sse { events, die } => {
            w.write_all(SSE_HEAD)?;
            w.flush()?;
            for (delay, event) in events {
                thread::sleep(delay);
                w.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
                w.flush()?;
            }
            if !die {
                w.write_all(b"0\r\n\r\n")?;
                w.flush()?;
            }
            Ok(())
        }
    }
}

/// Writes an event stream's head, the `first` events and then a line without end (see
/// [`Reply::SseEndless`]); returns the bytes of that line written and whether a write failed.
fn write_endless(w: &mut TcpStream, first: &[String]) -> (u64, bool) {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                 Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n";
    let mut start = String::new();
    for event in first {
        start.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
    }
    let line = "data: {\"choices\":[{\"delta\":{\"content\":\"";
    start.push_str(&format!("{:x}\r\n{line}\r\n", line.len()));
    if w.write_all(head)
        .and_then(|()| w.write_all(start.as_bytes()))
        .is_err()
    {
        return (0, true);
    }
    let piece = [b'x'; 64 * 1024];
    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
    chunk.extend_from_slice(&piece);
    chunk.extend_from_slice(b"\r\n");
    let mut sent = line.len() as u64;
    while sent < ENDLESS_LIMIT {
        if w.write_all(&chunk).is_err() {
            return (sent, true);
        }
        sent += piece.len() as u64;
    }
    (sent, false)
}
