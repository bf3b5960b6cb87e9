//! Client helpers: a ureq agent that never turns statuses into errors, and a
//! raw-TCP SSE reader that timestamps each event as it arrives.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A response read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    /// Body as JSON; panics showing the status and body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status, self.body
            )
        })
    }

    /// Asserts the relay's error shape
    /// `{"error":{"message":..,"type":..,"code":..}}` with `status` and
    /// `code`, and returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        let v = self.json();
        let err = &v["error"];
        assert_eq!(err["code"], code, "error.code in {v}");
        let ty = err["type"].as_str().unwrap_or("");
        assert!(!ty.is_empty(), "error.type must be a non-empty string: {v}");
        let msg = err["message"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "error.message must be non-empty: {v}");
        msg.to_string()
    }
}

/// ureq agent: statuses are not errors, no proxy, 30 s global timeout.
pub fn agent() -> ureq::Agent {
    agent_waiting(Duration::from_secs(30))
}

/// [`agent`] whose requests may take up to `limit` (a test that holds answers back longer).
pub fn agent_waiting(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(limit))
        .build()
        .into()
}

fn into_resp(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Resp {
    let mut r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = r
        .body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{what}: reading body: {e}"));
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Any method, extra headers, optional raw body.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(body.unwrap_or_default().to_vec())
        .expect("build request");
    into_resp(agent().run(req), &format!("{method} {url}"))
}

/// `method url` with `Authorization: Bearer key` and an optional JSON body.
pub fn keyed_call(method: &str, url: &str, key: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {key}");
    let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON body"));
    let mut headers = vec![("Authorization", auth.as_str())];
    if bytes.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(method, url, &headers, bytes.as_deref())
}

/// POST a JSON value with `Content-Type: application/json`.
pub fn post_json(url: &str, body: &Value) -> Resp {
    post_json_with(url, body, &[])
}

/// POST a JSON value with extra headers.
pub fn post_json_with(url: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    post_raw(url, &bytes, headers)
}

/// POST raw bytes labelled as JSON, plus extra headers.
pub fn post_raw(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", url, &all, Some(body))
}

pub fn get(url: &str) -> Resp {
    request("GET", url, &[], None)
}

/// A response read over raw TCP with SSE events timestamped on arrival.
#[derive(Debug)]
pub struct StreamResp {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// Complete SSE events (text before the blank line, `\r\n` normalised
    /// to `\n`) with the instant each one was fully received.
    pub events: Vec<(Instant, String)>,
    /// The whole decoded body.
    pub body: String,
    /// True if the body ended properly (zero chunk or full Content-Length);
    /// false if the connection closed early.
    pub clean_end: bool,
    /// When the request was sent.
    pub started: Instant,
}

impl StreamResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    pub fn event_texts(&self) -> Vec<&str> {
        self.events.iter().map(|(_, e)| e.as_str()).collect()
    }
}

struct EventSplitter {
    pending: String,
    events: Vec<(Instant, String)>,
    body: Vec<u8>,
}

impl EventSplitter {
    fn push(&mut self, data: &[u8]) {
        let now = Instant::now();
        self.body.extend_from_slice(data);
        self.pending
            .push_str(&String::from_utf8_lossy(data).replace("\r\n", "\n"));
        while let Some(pos) = self.pending.find("\n\n") {
            let ev: String = self.pending[..pos].to_string();
            self.pending.drain(..pos + 2);
            self.events.push((now, ev));
        }
    }
}

fn timeout_panic(e: &std::io::Error, sp: &EventSplitter, what: &str) -> ! {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        panic!(
            "{what}: response did not finish within the read timeout (stream hangs?); \
             events so far: {:#?}",
            sp.events.iter().map(|(_, e)| e).collect::<Vec<_>>()
        );
    }
    panic!("{what}: {e}");
}

/// POSTs `body` to `path` over a raw TCP connection and reads the response,
/// decoding chunked encoding incrementally and timestamping each SSE event.
/// Panics if any single read waits longer than `read_timeout`.
pub fn stream_events_timeout(
    addr: &str,
    path: &str,
    body: &Value,
    read_timeout: Duration,
) -> StreamResp {
    let what = format!("POST {path} (raw)");
    let payload = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(addr).expect("connect relay");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&payload).unwrap();
    s.flush().unwrap();

    let mut r = BufReader::new(s);
    let mut sp = EventSplitter {
        pending: String::new(),
        events: Vec::new(),
        body: Vec::new(),
    };
    let mut line = String::new();
    if let Err(e) = r.read_line(&mut line) {
        timeout_panic(&e, &sp, &what);
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) => panic!("{what}: connection closed inside the response head"),
            Ok(_) => {}
            Err(e) => timeout_panic(&e, &sp, &what),
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let hv = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let chunked = hv("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let content_length = hv("content-length").and_then(|v| v.parse::<usize>().ok());
    let mut clean_end = false;
    if chunked {
        loop {
            let mut size = String::new();
            match r.read_line(&mut size) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => timeout_panic(&e, &sp, &what),
            }
            let size = size.trim().split(';').next().unwrap_or("").to_string();
            let n = usize::from_str_radix(&size, 16)
                .unwrap_or_else(|_| panic!("{what}: bad chunk size line {size:?}"));
            if n == 0 {
                clean_end = true;
                break;
            }
            let mut chunk = vec![0; n + 2];
            match r.read_exact(&mut chunk) {
                Ok(()) => sp.push(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => timeout_panic(&e, &sp, &what),
            }
        }
    } else {
        let mut buf = [0u8; 8192];
        loop {
            if content_length.is_some_and(|n| sp.body.len() >= n) {
                clean_end = true;
                break;
            }
            match r.read(&mut buf) {
                Ok(0) => {
                    clean_end = content_length.is_none();
                    break;
                }
                Ok(k) => sp.push(&buf[..k]),
                Err(e) => timeout_panic(&e, &sp, &what),
            }
        }
    }
    StreamResp {
        status,
        headers,
        events: sp.events,
        body: String::from_utf8_lossy(&sp.body).into_owned(),
        clean_end,
        started,
    }
}

/// [`stream_events_timeout`] with a 10 s read timeout.
pub fn stream_events(addr: &str, path: &str, body: &Value) -> StreamResp {
    stream_events_timeout(addr, path, body, Duration::from_secs(10))
}

/// Connects to `addr` and sends `POST path` with the JSON `body` (`Connection: close`); reads
/// on the returned stream time out after `read_timeout`.
fn post_tcp(addr: &str, path: &str, body: &Value, read_timeout: Duration) -> TcpStream {
    let payload = body.to_string();
    let mut s = TcpStream::connect(addr).expect("connect relay");
    s.set_read_timeout(Some(read_timeout)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    s
}

/// POSTs `body` to `path` over raw TCP and reads the answer to its end, keeping `seen` at the
/// number of `data:` lines received so far (the client side of a
/// [`super::Reply::SseLockstep`] fixture). Returns the whole raw answer.
pub fn read_counting_events(
    addr: &str,
    path: &str,
    body: &Value,
    seen: &std::sync::atomic::AtomicUsize,
) -> String {
    let mut s = post_tcp(addr, path, body, Duration::from_secs(30));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let events = String::from_utf8_lossy(&got).matches("data: ").count();
        seen.store(events, std::sync::atomic::Ordering::SeqCst);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// POSTs `body` to `path` over raw TCP and reads until `marker` has arrived; then sets `go`
/// (e.g. the gate of a [`super::Reply::SseGated`] fixture) and reads to the end. Returns the
/// whole raw answer. Orders by events, not time: `go` is set only once the client has `marker`.
pub fn read_until_then(
    addr: &str,
    path: &str,
    body: &Value,
    marker: &str,
    go: &std::sync::atomic::AtomicBool,
) -> String {
    let mut s = post_tcp(addr, path, body, Duration::from_secs(20));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(marker) {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {marker:?}: {e}"));
        assert!(
            n > 0,
            "closed before {marker:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    go.store(true, std::sync::atomic::Ordering::SeqCst);
    s.read_to_end(&mut got).unwrap();
    String::from_utf8_lossy(&got).to_string()
}
