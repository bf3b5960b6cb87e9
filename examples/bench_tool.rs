//! Load generators and fixtures for `bench/run.sh`: what wrk cannot do.
//!
//! - `sse-upstream`: an SSE upstream that sends N `chat.completion.chunk` events M ms apart, each
//!   carrying its send time (`"sent_ns"`, nanoseconds since the Unix epoch) in its payload, and
//!   again in its text (`sent_ns=…`), which survives translation into another API's events;
//!   `--api anthropic` sends the same text as Anthropic Messages events instead (`message_start`,
//!   `content_block_start`, N `text_delta`s, then `content_block_stop`, `message_delta`,
//!   `message_stop`), an upstream for the reverse direction (chat / Responses clients).
//! - `json-upstream`: an upstream that answers every request with one fixed JSON body (a file),
//!   on keep-alive connections (`bench/profile.sh`'s upstream: no nginx needed).
//! - `blocking-proxy`: the least a blocking relay must do per request, as a ceiling for the
//!   relay's miss path: one thread per client connection, each with its own kept connection to
//!   `--upstream`, reading a request head and its `Content-Length` body, writing them upstream
//!   in one write, reading the answer's head and body and writing them back in one write; a
//!   `Transfer-Encoding: chunked` answer (a stream) is written back as its bytes arrive, one
//!   write a read, as nginx does with `proxy_buffering off` (the ceiling for scenario 6). No
//!   parsing beyond that framing, no pool, no limits.
//! - `streams`: N concurrent streamed requests; per event it takes receive time − send time (same
//!   machine, same clock), and the time from sending the request to the first event. A stream
//!   ends at `data: [DONE]`, or at `message_stop` / `response.completed` (translated streams).
//!   `--spread-ms S` starts them spread over S ms instead of all at once.
//! - `load`: HTTP/1.1 keep-alive POSTs, either paced at a fixed rate (latency counted from each
//!   request's scheduled time, so a stall is not hidden) or closed-loop, by duration or count;
//!   `{n}` in the body becomes the request number plus `--offset` (`--unique`), so every request
//!   is a cache miss.
//! - `trickle`: the slow-client attack: N connections that send a request head (`--mode head`)
//!   or a POST body (`--mode body`) one byte a second for `--seconds`; prints `ready open=N` once
//!   all are connected and sending, and `done still_open=N` at the end.
//! - `start-to-health`: runs a command and times until `GET /health` on a port answers 200.
//! - `free-port`: prints a port that was free a moment ago.
//!
//! Only std: hundreds of OS threads measure the relay, not an async runtime. Results print as
//! one line of `key=value` pairs for the script to pick apart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sse-upstream") => sse_upstream(&Flags::parse(&args[1..])),
        Some("json-upstream") => json_upstream(&Flags::parse(&args[1..])),
        Some("blocking-proxy") => blocking_proxy(&Flags::parse(&args[1..])),
        Some("streams") => streams(&Flags::parse(&args[1..])),
        Some("load") => load(&Flags::parse(&args[1..])),
        Some("trickle") => trickle(&Flags::parse(&args[1..])),
        Some("start-to-health") => start_to_health(&args[1..]),
        Some("free-port") => free_port().map(|p| println!("{p}")),
        _ => Err("usage: bench_tool sse-upstream|json-upstream|blocking-proxy|streams|load|trickle|start-to-health|free-port [--flag value]...; see bench/run.sh".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_tool: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--name value` pairs; `--header` may repeat.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a.trim_start_matches("--").to_string();
            let value = match name.as_str() {
                "unique" => "1".to_string(),
                _ => it.next().cloned().unwrap_or_default(),
            };
            out.push((name, value));
        }
        Flags(out)
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn str(&self, name: &str) -> Res<&str> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }
    fn num(&self, name: &str, default: f64) -> Res<f64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} needs a number, got {v:?}")),
        }
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn free_port() -> Res<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// `host:port` and path of an `http://` URL.
fn split_url(url: &str) -> Res<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Ok((host.to_string(), path.to_string()))
}

/// Milliseconds at quantile `q` (0..=1) of `v` (sorted in place), nearest rank.
fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// sse-upstream

fn sse_upstream(f: &Flags) -> Res<()> {
    let events = f.num("events", 50.0)? as usize;
    let interval = Duration::from_millis(f.num("interval-ms", 20.0)? as u64);
    let anthropic = match f.get("api").unwrap_or("chat") {
        "chat" => false,
        "anthropic" => true,
        other => return Err(format!("--api must be chat or anthropic, got {other}")),
    };
    serve_each(f, move |conn| serve_sse(conn, events, interval, anthropic))
}

/// Listens on `--listen` (default a free port on 127.0.0.1), prints `listening on
/// http://ADDR` and serves each connection on a thread of its own.
fn serve_each(f: &Flags, serve: impl Fn(TcpStream) + Clone + Send + 'static) -> Res<()> {
    let listener =
        TcpListener::bind(f.get("listen").unwrap_or("127.0.0.1:0")).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming().flatten() {
        let serve = serve.clone();
        let _ = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(conn));
    }
    Ok(())
}

/// Event `i` of `events` as a chat chunk (the last with `finish_reason` and `[DONE]`), sent now.
fn chat_event(i: usize, events: usize) -> String {
    let finish = if i + 1 == events { "\"stop\"" } else { "null" };
    let mut event = format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} sent_ns={sent} \"}},\"finish_reason\":{finish}}}],\"sent_ns\":{sent}}}\n\n",
        sent = now_ns()
    );
    if i + 1 == events {
        event.push_str("data: [DONE]\n\n");
    }
    event
}

/// Event `i` of `events` as Anthropic sends a text answer: the first opens the message and its
/// text block, every one carries a `text_delta`, the last closes the block and the message.
fn anthropic_event(i: usize, events: usize) -> String {
    let mut event = String::new();
    if i == 0 {
        event.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"bench\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n");
        event.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    }
    event.push_str(&format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{i} sent_ns={sent} \"}}}}\n\n",
        sent = now_ns()
    ));
    if i + 1 == events {
        event.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        );
        event.push_str(&format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{events}}}}}\n\n"));
        event.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
    event
}

/// Answers every request on a keep-alive connection with one event stream.
fn serve_sse(conn: TcpStream, events: usize, interval: Duration, anthropic: bool) {
    let _ = conn.set_nodelay(true);
    let Ok(out) = conn.try_clone() else { return };
    let mut out = out;
    let mut reader = BufReader::new(conn);
    while read_request(&mut reader).is_ok() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        for i in 0..events {
            if i > 0 {
                thread::sleep(interval);
            }
            let event = if anthropic {
                anthropic_event(i, events)
            } else {
                chat_event(i, events)
            };
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            if out.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
        if out.write_all(b"0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn json_upstream(f: &Flags) -> Res<()> {
    let path = f.str("body-file")?;
    let body = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let answer = Arc::new(answer);
    serve_each(f, move |conn| serve_json(conn, &answer))
}

/// Answers every request on a keep-alive connection with the same bytes.
fn serve_json(conn: TcpStream, answer: &[u8]) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while read_request(&mut reader).is_ok() {
        if out.write_all(answer).is_err() {
            return;
        }
    }
}

fn blocking_proxy(f: &Flags) -> Res<()> {
    let upstream: Arc<str> = f.str("upstream")?.into();
    serve_each(f, move |conn| proxy_connection(conn, &upstream))
}

/// Relays each request of one client connection over one kept upstream connection.
fn proxy_connection(client: TcpStream, upstream: &str) {
    let Ok(up) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (Ok(mut client_out), Ok(mut up_out)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let mut from_client = BufReader::new(client);
    let mut from_up = BufReader::new(up);
    let mut message = Vec::with_capacity(4096);
    loop {
        message.clear();
        if read_message(&mut from_client, &mut message).is_err()
            || up_out.write_all(&message).is_err()
        {
            return;
        }
        message.clear();
        let framing = match read_head(&mut from_up, &mut message) {
            Ok(framing) => framing,
            Err(_) => return,
        };
        let relayed = match framing {
            Framing::Length(len) => read_body(&mut from_up, &mut message, len)
                .and_then(|()| client_out.write_all(&message).map_err(|e| e.to_string())),
            Framing::Chunked => client_out
                .write_all(&message)
                .map_err(|e| e.to_string())
                .and_then(|()| copy_chunked(&mut from_up, &mut client_out)),
        };
        if relayed.is_err() {
            return;
        }
    }
}

/// How an answer's body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

/// Appends one HTTP/1.1 message (head and `Content-Length` body) to `out`, as it was sent.
fn read_message(r: &mut impl BufRead, out: &mut Vec<u8>) -> Res<()> {
    match read_head(r, out)? {
        Framing::Length(len) => read_body(r, out, len),
        Framing::Chunked => Err("a chunked request body".into()),
    }
}

/// Copies a chunked body from `from` to `to` as it arrives, one write for what each read
/// brought, until the last chunk and the empty trailer.
fn copy_chunked(from: &mut BufReader<TcpStream>, to: &mut TcpStream) -> Res<()> {
    let mut chunks = ChunkedEnd::default();
    while !chunks.done() {
        let got = from.fill_buf().map_err(|e| e.to_string())?;
        if got.is_empty() {
            return Err("closed".into());
        }
        let n = got.len();
        chunks.scan(got);
        to.write_all(got).map_err(|e| e.to_string())?;
        from.consume(n);
    }
    Ok(())
}

/// Follows chunked framing byte by byte to see where the body ends (after `0\r\n\r\n`); no
/// trailer fields, which no upstream here sends.
#[derive(Default)]
struct ChunkedEnd {
    /// bytes of chunk data (and its CRLF) still to skip
    skip: usize,
    /// the size line read so far
    size: usize,
    in_size: bool,
    /// the zero-size chunk was seen: what is left is its CRLF and the trailer's
    last: bool,
    /// consecutive bytes of the final `\r\n\r\n` seen
    tail: u8,
    ended: bool,
}

impl ChunkedEnd {
    fn done(&self) -> bool {
        self.ended
    }

    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.ended {
                return;
            }
            if self.last {
                self.tail = if b == b"\r\n\r\n"[usize::from(self.tail)] {
                    self.tail + 1
                } else {
                    0
                };
                self.ended = self.tail == 4;
                continue;
            }
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            match b {
                b'\n' => {
                    if self.size == 0 {
                        // `0\r\n` seen: the trailer's empty line follows
                        self.last = true;
                        self.tail = 2;
                    } else {
                        self.skip = self.size + 2;
                    }
                    self.size = 0;
                    self.in_size = false;
                }
                b'\r' | b';' => self.in_size = false,
                _ if self.in_size || self.size == 0 => {
                    if let Some(d) = (b as char).to_digit(16) {
                        self.size = self.size * 16 + d as usize;
                        self.in_size = true;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Appends a message's head to `out`, as it was sent, and says how its body is framed.
fn read_head(r: &mut impl BufRead, out: &mut Vec<u8>) -> Res<Framing> {
    let mut framing = Framing::Length(0);
    loop {
        let start = out.len();
        if r.read_until(b'\n', out).map_err(|e| e.to_string())? == 0 {
            return Err("closed".into());
        }
        let line = &out[start..];
        if line == b"\r\n" {
            return Ok(framing);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-length") {
                let len = String::from_utf8_lossy(value).trim().parse().unwrap_or(0);
                framing = Framing::Length(len);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                && String::from_utf8_lossy(value)
                    .trim()
                    .eq_ignore_ascii_case("chunked")
            {
                framing = Framing::Chunked;
            }
        }
    }
}

/// Appends a `Content-Length` body of `len` bytes to `out`.
fn read_body(r: &mut impl BufRead, out: &mut Vec<u8>, len: usize) -> Res<()> {
    let start = out.len();
    out.resize(start + len, 0);
    r.read_exact(&mut out[start..]).map_err(|e| e.to_string())
}

/// Reads one request head and its `Content-Length` body.
fn read_request(r: &mut impl BufRead) -> Res<()> {
    let mut len = 0usize;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("closed".into());
        }
        if line == "\r\n" && !first {
            break;
        }
        first = false;
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// streams

#[derive(Default)]
struct StreamStats {
    ttfb_ms: Vec<f64>,
    delay_ms: Vec<f64>,
    ok: usize,
    errors: usize,
    first_error: Option<String>,
}

fn streams(f: &Flags) -> Res<()> {
    let n = f.num("streams", 1.0)? as usize;
    let (host, path) = split_url(f.str("url")?)?;
    let body = f.str("body")?.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
        extra_headers(f),
        body.len()
    );
    let stats = Arc::new(Mutex::new(StreamStats::default()));
    // `--spread-ms S`: the i-th stream starts i × S / n ms after the first (default 0: all at
    // once, so an upstream that paces every stream alike sends their events in bursts)
    let spread = Duration::from_secs_f64(f.num("spread-ms", 0.0)? / 1000.0);
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .filter_map(|i| {
            let (host, request, stats) = (host.clone(), request.clone(), Arc::clone(&stats));
            let start_at = started + spread.mul_f64(i as f64 / n.max(1) as f64);
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    thread::sleep(start_at.saturating_duration_since(Instant::now()));
                    let result = one_stream(&host, &request);
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok((ttfb, delays)) => {
                            s.ok += 1;
                            s.ttfb_ms.push(ttfb);
                            s.delay_ms.extend(delays);
                        }
                        Err(e) => {
                            s.errors += 1;
                            s.first_error.get_or_insert(e);
                        }
                    }
                })
                .ok()
        })
        .collect();
    let spawn_failures = n - handles.len();
    for h in handles {
        let _ = h.join();
    }
    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
    let events = s.delay_ms.len();
    let (t50, t99) = (pct(&mut s.ttfb_ms, 0.5), pct(&mut s.ttfb_ms, 0.99));
    let (d50, d99) = (pct(&mut s.delay_ms, 0.5), pct(&mut s.delay_ms, 0.99));
    println!(
        "streams={n} ok={} errors={} events={events} ttfb_p50_ms={t50:.3} ttfb_p99_ms={t99:.3} delay_p50_ms={d50:.3} delay_p99_ms={d99:.3} wall_s={:.2}",
        s.ok,
        s.errors + spawn_failures,
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = &s.first_error {
        eprintln!("bench_tool: first stream error: {e}");
    }
    Ok(())
}

fn extra_headers(f: &Flags) -> String {
    f.all("header").iter().map(|h| format!("{h}\r\n")).collect()
}

/// One stream: (ms from request to first event, per-event delay in ms).
fn one_stream(host: &str, request: &str) -> Res<(f64, Vec<f64>)> {
    let mut conn = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    let _ = conn.set_nodelay(true);
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut ttfb = None;
    let mut delays = Vec::new();
    let mut status_checked = false;
    loop {
        let n = conn.read(&mut chunk).map_err(|e| e.to_string())?;
        let received = now_ns();
        if n == 0 {
            return Err(format!(
                "closed before [DONE] after {} events",
                delays.len()
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if !status_checked && buf.len() >= 12 {
            if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
                let head = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
                return Err(format!("not a 200: {head}"));
            }
            status_checked = true;
        }
        // Only whole lines: a read may end inside an event.
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let mut done = false;
        for line in buf[..=last_nl].split(|&b| b == b'\n') {
            // a translated stream's closing events repeat the whole text: not a delivery
            let summary = [&b".done\""[..], b"\"response.completed\""]
                .iter()
                .any(|k| line.windows(k.len()).any(|w| w == *k));
            if let Some(sent_ns) = sent_ns(line).filter(|_| !summary) {
                ttfb.get_or_insert_with(|| sent.elapsed().as_secs_f64() * 1e3);
                delays.push(received.saturating_sub(sent_ns) as f64 / 1e6);
            }
            done |= line.starts_with(b"data: [DONE]")
                || (line.starts_with(b"data: ")
                    && [&b"\"message_stop\""[..], b"\"response.completed\""]
                        .iter()
                        .any(|end| line.windows(end.len()).any(|w| w == *end)));
        }
        buf.drain(..=last_nl);
        if done {
            return Ok((ttfb.unwrap_or(f64::NAN), delays));
        }
    }
}

/// The send time in an event line: `"sent_ns":N` (chat chunks) or `sent_ns=N` in the text (which
/// a translated event keeps).
fn sent_ns(line: &[u8]) -> Option<u128> {
    let at = [&b"\"sent_ns\":"[..], b"sent_ns="].iter().find_map(|key| {
        let at = line.windows(key.len()).position(|w| w == *key)?;
        Some(at + key.len())
    })?;
    let digits: Vec<u8> = line[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// load

#[derive(Default)]
struct LoadStats {
    latency_ms: Vec<f64>,
    ok: usize,
    errors: usize,
    hits: usize,
    first_error: Option<String>,
}

fn load(f: &Flags) -> Res<()> {
    let (host, path) = split_url(f.str("url")?)?;
    let body = match f.get("body-file") {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))?,
        None => f.str("body")?.to_string(),
    };
    let rate = f.num("rate", 0.0)?;
    let conns = (f.num("connections", 4.0)? as usize).max(1);
    let duration = Duration::from_secs_f64(f.num("duration", 5.0)?);
    let count = f.num("count", 0.0)? as u64;
    let unique = f.get("unique").is_some();
    let offset = f.num("offset", 0.0)? as u64;
    let headers = extra_headers(f);
    let stats = Arc::new(Mutex::new(LoadStats::default()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path, body, headers) =
                (host.clone(), path.clone(), body.clone(), headers.clone());
            let (stats, next) = (Arc::clone(&stats), Arc::clone(&next));
            thread::spawn(move || {
                let mut local = LoadStats::default();
                let mut conn: Option<BufReader<TcpStream>> = None;
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if count > 0 && k >= count {
                        break;
                    }
                    // Paced: request k is due at start + k / rate, whichever thread sends it.
                    let due = if rate > 0.0 {
                        start + Duration::from_secs_f64(k as f64 / rate)
                    } else {
                        Instant::now().max(start)
                    };
                    if count == 0 && due >= start + duration {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let b = if unique {
                        body.replace("{n}", &(k + offset).to_string())
                    } else {
                        body.clone()
                    };
                    let req = format!(
                        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{b}",
                        b.len()
                    );
                    match exchange(&mut conn, &host, &req) {
                        Ok((200, hit)) => {
                            local.ok += 1;
                            local.hits += usize::from(hit);
                            local.latency_ms.push(due.elapsed().as_secs_f64() * 1e3);
                        }
                        Ok((status, _)) => {
                            local.errors += 1;
                            local.first_error.get_or_insert(format!("status {status}"));
                        }
                        Err(e) => {
                            conn = None;
                            local.errors += 1;
                            local.first_error.get_or_insert(e);
                        }
                    }
                }
                let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                s.ok += local.ok;
                s.errors += local.errors;
                s.hits += local.hits;
                s.latency_ms.extend(local.latency_ms);
                if s.first_error.is_none() {
                    s.first_error = local.first_error;
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
    let (p50, p99) = (pct(&mut s.latency_ms, 0.5), pct(&mut s.latency_ms, 0.99));
    println!(
        "ok={} errors={} hits={} rps={:.1} p50_ms={p50:.3} p99_ms={p99:.3} wall_s={elapsed:.2}",
        s.ok,
        s.errors,
        s.hits,
        s.ok as f64 / elapsed.max(1e-9)
    );
    if let Some(e) = &s.first_error {
        eprintln!("bench_tool: first load error: {e}");
    }
    Ok(())
}

/// Sends one request on the kept-alive connection (opening one if needed) and reads the whole
/// response. Returns the status and whether it carried `X-Cache: HIT`.
fn exchange(conn: &mut Option<BufReader<TcpStream>>, host: &str, req: &str) -> Res<(u16, bool)> {
    if conn.is_none() {
        let c = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
        let _ = c.set_nodelay(true);
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        *conn = Some(BufReader::new(c));
    }
    let Some(r) = conn.as_mut() else {
        return Err("no connection".into());
    };
    r.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut len, mut chunked, mut hit, mut close) = (0usize, false, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("closed inside the response head".into());
        }
        if line == "\r\n" {
            break;
        }
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
        match n.as_str() {
            "content-length" => len = v.parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "x-cache" => hit = v.eq_ignore_ascii_case("hit"),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            let mut data = vec![0; size + 2];
            r.read_exact(&mut data).map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut data = vec![0; len];
        r.read_exact(&mut data).map_err(|e| e.to_string())?;
    }
    if close {
        *conn = None;
    }
    Ok((status, hit))
}

// ---------------------------------------------------------------------------------------------
// start-to-health

/// `start-to-health PORT CMD ARGS...`: starts CMD, polls `GET /health` on 127.0.0.1:PORT every
/// millisecond, prints `health_ms=...` at the first 200, then stops CMD.
fn start_to_health(args: &[String]) -> Res<()> {
    let (port, cmd) = match args {
        [port, cmd @ ..] if !cmd.is_empty() => (port, cmd),
        _ => return Err("usage: start-to-health PORT CMD [ARGS...]".into()),
    };
    let host = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd[0]))?;
    let req = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let result = loop {
        if started.elapsed() > Duration::from_secs(60) {
            break Err("no 200 on /health within 60 s".to_string());
        }
        if let Ok(Some(st)) = child.try_wait() {
            break Err(format!("the command exited ({st}) before /health answered"));
        }
        let mut conn = None;
        if let Ok((200, _)) = exchange(&mut conn, &host, &req) {
            break Ok(started.elapsed());
        }
        thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("health_ms={:.1}", result?.as_secs_f64() * 1e3);
    Ok(())
}

/// The slow-client attack (see the module doc).
fn trickle(f: &Flags) -> Res<()> {
    let addr = f.str("addr")?.to_string();
    let conns = f.num("conns", 200.0)? as usize;
    let body_mode = match f.str("mode")? {
        "body" => true,
        "head" => false,
        other => return Err(format!("--mode must be body or head, got {other}")),
    };
    let seconds = f.num("seconds", 10.0)?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        // A head (or a head and the start of a body) the relay must wait for.
        let start: &[u8] = if body_mode {
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n\
              Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        } else {
            b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Slow: "
        };
        s.write_all(start).map_err(|e| e.to_string())?;
        streams.push(Some(s));
    }
    println!("ready open={conns}");
    let _ = std::io::stdout().flush();
    while Instant::now() < end {
        thread::sleep(Duration::from_secs(1));
        for slot in &mut streams {
            let byte: &[u8] = if body_mode { b" " } else { b"x" };
            if slot.as_mut().is_some_and(|s| s.write_all(byte).is_err()) {
                *slot = None;
            }
        }
    }
    let open = streams.iter().filter(|s| s.is_some()).count();
    println!("done still_open={open}");
    Ok(())
}
