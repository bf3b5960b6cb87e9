//! llm-relay patch: tests of the fork's own features, run with `cargo test -p tiny_http`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::{Handler, HttpOptions, Request, Response, Server};

fn start(handler: Handler) -> (Server, String) {
    let options = HttpOptions::new()
        .timeout(Duration::from_secs(10))
        .handler(handler);
    let server = Server::http_with_options("127.0.0.1:0", options).unwrap();
    let addr = server.server_addr().to_ip().unwrap().to_string();
    (server, addr)
}

/// Reads one response with a Content-Length body; returns (status line, body).
fn read_response(r: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        String::from_utf8(body).unwrap(),
    )
}

fn connect(addr: &str) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Answers with the request's path and the name of the thread that ran the handler.
fn echo_thread() -> Handler {
    Arc::new(|rq: Request| {
        let body = format!("{} {:?}", rq.url(), thread::current().id());
        rq.respond(Response::from_string(body)).unwrap();
    })
}

#[test]
fn handler_mode_answers_on_the_connection_thread_and_keeps_the_connection() {
    let (_server, addr) = start(echo_thread());
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, first) = read_response(&mut r);
    assert_eq!(status, "HTTP/1.1 200 OK");
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, second) = read_response(&mut r);
    let (path_a, thread_a) = first.split_once(' ').unwrap();
    let (path_b, thread_b) = second.split_once(' ').unwrap();
    assert_eq!((path_a, path_b), ("/a", "/b"));
    assert_eq!(thread_a, thread_b, "one connection, one thread");
    assert_ne!(thread_a, format!("{:?}", thread::current().id()));

    // A second connection is served on its own thread while the first stays open.
    let (mut s2, mut r2) = connect(&addr);
    s2.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, third) = read_response(&mut r2);
    assert_ne!(third.split_once(' ').unwrap().1, thread_a);
}

#[test]
fn an_empty_line_before_a_request_is_ignored() {
    let (_server, addr) = start(echo_thread());
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"\r\nGET /after-crlf HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut r).1.starts_with("/after-crlf "));
}

#[test]
fn handler_mode_answers_pipelined_requests_in_order() {
    let (_server, addr) = start(echo_thread());
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut r).1.starts_with("/1 "));
    assert!(read_response(&mut r).1.starts_with("/2 "));
}

#[test]
fn handler_mode_waits_for_an_answer_given_on_another_thread() {
    // The handler hands each request to a worker thread and returns at once; the connection
    // must not read the next request until the worker has answered.
    let (to_worker, jobs) = mpsc::channel::<Request>();
    let (started_tx, started) = mpsc::channel::<String>();
    let (release_tx, release) = mpsc::channel::<()>();
    thread::spawn(move || {
        for rq in jobs {
            started_tx.send(rq.url().to_owned()).unwrap();
            release.recv().unwrap();
            let body = rq.url().to_owned();
            rq.respond(Response::from_string(body)).unwrap();
        }
    });
    let to_worker = Mutex::new(to_worker);
    let (_server, addr) = start(Arc::new(move |rq: Request| {
        to_worker.lock().unwrap().send(rq).unwrap();
    }));
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(started.recv().unwrap(), "/1");
    // /2 is already on the wire, yet not handed over while /1 is unanswered.
    assert!(started.recv_timeout(Duration::from_millis(300)).is_err());
    release_tx.send(()).unwrap();
    assert_eq!(read_response(&mut r).1, "/1");
    assert_eq!(started.recv().unwrap(), "/2");
    release_tx.send(()).unwrap();
    assert_eq!(read_response(&mut r).1, "/2");
}

#[test]
fn handler_mode_streams_through_into_writer_then_serves_the_next_request() {
    let (_server, addr) = start(Arc::new(|rq: Request| {
        let path = rq.url().to_owned();
        let mut w = rq.into_writer();
        let body = format!("streamed {path}");
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        w.flush().unwrap();
    }));
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).1, "streamed /x");
    s.write_all(b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).1, "streamed /y");
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let (_server, addr) = start(Arc::new(|rq: Request| {
        if rq.url() == "/panic" {
            panic!("handler panicked on purpose");
        }
        rq.respond(Response::from_string("ok")).unwrap();
    }));
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The dropped request is answered 500 (upstream's automatic answer), then closed.
    let (status, _) = read_response(&mut r);
    assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let (mut s2, mut r2) = connect(&addr);
    s2.write_all(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r2).1, "ok");
}

#[test]
fn recv_mode_still_queues_requests() {
    let server = Server::http_with_options("127.0.0.1:0", HttpOptions::new()).unwrap();
    let addr = server.server_addr().to_ip().unwrap().to_string();
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let rq = server.recv().unwrap();
    assert_eq!(rq.url(), "/q");
    rq.respond(Response::from_string("queued")).unwrap();
    assert_eq!(read_response(&mut r).1, "queued");
}

/// Sends `bytes` on a new connection and reads until the server closes it (10 s at most).
/// Returns everything received and whether the server closed the connection.
fn exchange(addr: &str, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            Err(_) => break true,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

fn ok_handler() -> Handler {
    Arc::new(|rq: Request| {
        rq.respond(Response::from_string("ok")).unwrap();
    })
}

#[test]
fn refused_heads_get_one_json_answer_and_a_closed_connection() {
    let (_server, addr) = start(ok_handler());
    let cases: &[(&[u8], &str)] = &[
        (b"GET /health HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            "HTTP/1.1 505 ",
        ),
        (b"GET / HTTP/0.9\r\n\r\n", "HTTP/1.1 505 "),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: foo\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 501 ",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (b"GET / HTTP/1.1\r\nExpect: teapot\r\n\r\n", "HTTP/1.1 417 "),
    ];
    for (bytes, status) in cases {
        let (got, closed) = exchange(&addr, bytes);
        let shown = String::from_utf8_lossy(bytes);
        assert!(got.starts_with(status), "{shown:?} -> {got:?}");
        assert!(closed, "{shown:?}: connection left open");
        assert!(
            !got.contains("\nHTTP/1."),
            "{shown:?}: two answers: {got:?}"
        );
        assert!(got.contains("Content-Type: application/json"), "{got:?}");
        assert!(got.contains("Connection: close"), "{got:?}");
        let body = got.split("\r\n\r\n").nth(1).unwrap();
        assert!(
            body.starts_with(r#"{"error":{"message":""#) && body.contains(r#","code":""#),
            "{shown:?} -> {body}"
        );
    }
}

#[test]
fn connections_beyond_max_connections_get_a_fast_503() {
    let options = HttpOptions::new()
        .timeout(Duration::from_secs(10))
        .max_connections(2)
        .handler(ok_handler());
    let server = Server::http_with_options("127.0.0.1:0", options).unwrap();
    let addr = server.server_addr().to_ip().unwrap().to_string();
    // Two idle connections fill the limit (each served once, so both are surely accepted).
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (mut s, mut r) = connect(&addr);
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut r).1, "ok");
            (s, r)
        })
        .collect();
    assert_eq!(server.num_connections(), 2);
    let (got, closed) = exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 503 "), "{got:?}");
    assert!(got.contains(r#""code":"too_many_connections""#), "{got:?}");
    assert!(got.contains("Retry-After: 1"), "{got:?}");
    assert!(closed);
    drop(held);
    // Once they are gone the server takes connections again.
    let mut served = false;
    for _ in 0..200 {
        if exchange(
            &addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .0
        .starts_with("HTTP/1.1 200 ")
        {
            served = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(served);
}

#[test]
fn close_listener_refuses_new_connections_and_serves_accepted_ones() {
    let (release_tx, release) = mpsc::channel::<()>();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let release = Mutex::new(release);
    let (server, addr) = start(Arc::new(move |rq: Request| {
        if rq.url() == "/slow" {
            entered_tx.send(()).unwrap();
            release.lock().unwrap().recv().unwrap();
        }
        rq.respond(Response::from_string("done")).unwrap();
    }));
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    entered.recv().unwrap();
    server.close_listener();
    let refused = TcpStream::connect(&addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    release_tx.send(()).unwrap();
    assert_eq!(read_response(&mut r).1, "done");
    // The accepted connection keeps being served.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).1, "done");
    server.close_listener(); // idempotent
}

#[test]
fn into_writer_or_close_keeps_the_connection_only_when_completed() {
    let (_server, addr) = start(Arc::new(|rq: Request| {
        let cut = rq.url() == "/cut";
        let (mut w, completion) = rq.into_writer_or_close();
        // announces 10 bytes; a cut answer sends 3
        let body = if cut { "abc" } else { "abcdefghij" };
        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{body}").unwrap();
        w.flush().unwrap();
        drop(w);
        if !cut {
            completion.complete();
        }
    }));
    let (mut s, mut r) = connect(&addr);
    s.write_all(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).1, "abcdefghij");
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap(); // ends: the connection was closed, not kept
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.ends_with("\r\n\r\nabc"), "{rest}");
}

/// A handler that records each request's path and reads the body only of `/read`.
fn recording_handler(seen: Arc<Mutex<Vec<String>>>) -> Handler {
    Arc::new(move |mut rq: Request| {
        seen.lock().unwrap().push(rq.url().to_owned());
        if rq.url() == "/read" {
            let mut body = Vec::new();
            rq.as_reader().read_to_end(&mut body).unwrap();
        }
        rq.respond(Response::from_string("ok")).unwrap();
    })
}

#[test]
fn a_body_left_unread_is_never_parsed_as_the_next_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_server, addr) = start(recording_handler(Arc::clone(&seen)));
    // The handler answers /first without reading its chunked body, which holds a request:
    // before the patch it was read as the next request on the connection (smuggling).
    let (text, closed) = exchange(
        &addr,
        b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          DELETE /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        closed,
        "the connection is closed after the answer: {}",
        text
    );
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{}", text);
    // The same with a Content-Length body past the 1 MiB drain limit whose unread tail is a
    // request head at whatever offset the drain stopped (one every 64 bytes).
    let unit = b"GET /smuggled-too HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(unit.len(), 64);
    let body: Vec<u8> = unit.iter().copied().cycle().take(3 << 20).collect();
    let mut bytes = format!(
        "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    let (text, closed) = exchange(&addr, &bytes);
    assert!(closed, "{}", text.len());
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1);
    assert_eq!(*seen.lock().unwrap(), ["/first", "/first"]);
}

#[test]
fn a_body_read_or_drained_to_its_end_keeps_the_connection() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_server, addr) = start(recording_handler(Arc::clone(&seen)));
    let (mut s, mut r) = connect(&addr);
    // read to its end by the handler (chunked), then drained by tiny_http (Content-Length)
    s.write_all(
        b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
    let body = vec![b'x'; 4096];
    s.write_all(
        format!(
            "POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
    s.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
    assert_eq!(*seen.lock().unwrap(), ["/read", "/unread", "/last"]);
}

#[test]
fn the_cached_date_header_is_the_current_second() {
    use std::time::SystemTime;
    let seconds = |h: &crate::Header| {
        let d: httpdate::HttpDate = h.value.as_str().parse().unwrap();
        SystemTime::from(d)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = now();
    let first = crate::response::build_date_header();
    let after = now();
    assert!(
        (before..=after).contains(&seconds(&first)),
        "{}",
        first.value
    );
    assert!(first.field.equiv("Date"));
    // In the next second the header follows the clock.
    while now() == after {
        thread::sleep(Duration::from_millis(20));
    }
    let later = crate::response::build_date_header();
    assert!(
        seconds(&later) > seconds(&first),
        "{} then {}",
        first.value,
        later.value
    );
}

/// A handler that passes each request to a thread of its own, which answers it a moment after
/// the handler returned (the connection is parked meanwhile): `/respond` with `respond`,
/// `/writer` through `into_writer`, `/cut` through `into_writer_or_close` cut short.
fn answer_later_handler() -> Handler {
    Arc::new(|rq: Request| {
        thread::spawn(move || {
            // the verdicts below hold in either order; the pause makes the parked one likely
            thread::sleep(Duration::from_millis(50));
            match rq.url() {
                "/respond" => rq.respond(Response::from_string("responded")).unwrap(),
                "/writer" => {
                    let mut w = rq.into_writer();
                    write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nwriter").unwrap();
                    w.flush().unwrap();
                }
                _ => {
                    let (mut w, _completion) = rq.into_writer_or_close();
                    write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap();
                    w.flush().unwrap();
                }
            }
        });
    })
}

#[test]
fn a_request_answered_after_its_handler_returned_keeps_its_connection_until_cut() {
    let (_server, addr) = start(answer_later_handler());
    let (mut s, mut r) = connect(&addr);
    for _ in 0..3 {
        s.write_all(b"GET /respond HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut r).1, "responded");
        s.write_all(b"GET /writer HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut r).1, "writer");
    }
    // pipelined: the second is read only once the first was answered
    let two = b"GET /respond HTTP/1.1\r\nHost: x\r\n\r\nGET /writer HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(two).unwrap();
    assert_eq!(read_response(&mut r).1, "responded");
    assert_eq!(read_response(&mut r).1, "writer");
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap(); // ends: the connection was closed, not kept
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.ends_with("\r\n\r\nabc"), "{rest}");
}

/// The head the server writes: the status line, `Server` and `Date` unless the answer has its
/// own, the answer's headers in order, then the framing header.
#[test]
fn a_head_carries_the_added_lines_in_their_order() {
    let handler: Handler = Arc::new(|rq: Request| {
        let header = |f: &str, v: &str| crate::Header::from_bytes(f, v).unwrap();
        let response = match rq.url() {
            "/known" => Response::from_string("hello").with_header(header("X-A", "b")),
            "/own" => Response::from_string("hi")
                .with_header(header("Server", "relay"))
                .with_header(header("Date", "Thu, 01 Jan 1970 00:00:00 GMT")),
            _ => {
                let body = std::io::Cursor::new(b"streamed".to_vec());
                rq.respond(Response::new(200.into(), vec![], body, None, None))
                    .unwrap();
                return;
            }
        };
        rq.respond(response).unwrap();
    });
    let (_server, addr) = start(handler);
    let get = |path: &str| {
        let (got, closed) = exchange(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(closed, "{got}");
        // the date is this second's: replace its 29 characters
        match got.find("\r\nDate: ") {
            Some(at) if !got.contains("1970") => {
                let start = at + "\r\nDate: ".len();
                let date = got.get(start..start + 29).unwrap();
                assert!(date.ends_with(" GMT"), "{got}");
                format!(
                    "{}DATE{}",
                    got.get(..start).unwrap(),
                    got.get(start + 29..).unwrap()
                )
            }
            _ => got,
        }
    };
    assert_eq!(
        get("/known"),
        "HTTP/1.1 200 OK\r\nServer: tiny-http (Rust)\r\nDate: DATE\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nX-A: b\r\nContent-Length: 5\r\n\r\nhello"
    );
    assert_eq!(
        get("/own"),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nServer: relay\r\n\
         Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nhi"
    );
    assert_eq!(
        get("/chunked"),
        "HTTP/1.1 200 OK\r\nServer: tiny-http (Rust)\r\nDate: DATE\r\n\
         Transfer-Encoding: chunked\r\n\r\n8\r\nstreamed\r\n0\r\n\r\n"
    );
}

/// The answers `respond_bytes` is asked for in `respond_bytes_writes_what_respond_writes`.
fn byte_answer_cases() -> Vec<(u16, Vec<(&'static str, &'static str)>, usize)> {
    let header_sets: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("Content-Type", "application/json")],
        vec![
            ("X-Cache", "HIT"),
            ("X-Cache-Key", "ab12"),
            ("Content-Type", "application/json"),
        ],
        vec![("Content-Type", "a/b"), ("content-type", "c/d")],
        vec![("Connection", "keep-alive"), ("X-A", "1")],
        vec![("Content-Length", "3")],
        vec![("Date", "Thu, 01 Jan 1970 00:00:00 GMT")],
        vec![
            ("server", "relay"),
            ("Trailer", "x"),
            ("Upgrade", "y"),
            ("Transfer-Encoding", "z"),
        ],
        vec![("X-Caf\u{e9}", "1"), ("X-B", "\u{e9}t\u{e9}")],
        vec![("X-A", "1\r\nX-Injected: 2"), ("X-B\n", "3"), ("X-C", "4")],
    ];
    let mut cases = Vec::new();
    for status in [200, 201, 204, 304, 404, 503] {
        for headers in &header_sets {
            // a short answer after a longer one: the thread's kept answer buffer is reused
            for len in [3_000, 5, 0, 40_000] {
                cases.push((status, headers.clone(), len));
            }
        }
    }
    cases
}

#[test]
fn respond_bytes_writes_what_respond_writes() {
    let cases = Arc::new(byte_answer_cases());
    let answers = Arc::clone(&cases);
    let handler: Handler = Arc::new(move |rq: Request| {
        let mut parts = rq.url().trim_start_matches('/').split('/');
        let (Some(way), Some(Ok(i))) = (parts.next(), parts.next().map(str::parse::<usize>)) else {
            rq.respond(Response::empty(400)).unwrap();
            return;
        };
        let (status, headers, len) = answers[i].clone();
        let body = vec![b'x'; len];
        if way == "bytes" {
            rq.respond_bytes(status, &headers, body).unwrap();
        } else {
            let mut response = Response::from_data(body).with_status_code(status);
            // a header with a CR or LF is left out by `respond_bytes`
            let whole = |t: &str| !t.contains(['\r', '\n']);
            for (name, value) in headers.iter().filter(|(n, v)| whole(n) && whole(v)) {
                if let Ok(h) = crate::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                    response.add_header(h);
                }
            }
            rq.respond(response).unwrap();
        }
    });
    let (_server, addr) = start(handler);
    // the date is this second's: both answers' dates are masked
    let masked = |got: String| match got.find("\r\nDate: ") {
        Some(at) if !got.contains("1970") => {
            let start = at + "\r\nDate: ".len();
            format!("{}DATE{}", &got[..start], &got[start + 29..])
        }
        _ => got,
    };
    let mut compared = 0;
    for i in 0..cases.len() {
        for (method, version, te) in [
            ("GET", "1.1", ""),
            ("POST", "1.1", ""),
            ("HEAD", "1.1", ""),
            ("GET", "1.0", ""),
            ("GET", "1.1", "TE: chunked\r\n"),
        ] {
            let ask = |way: &str| {
                let head = format!(
                    "{method} /{way}/{i} HTTP/{version}\r\nHost: x\r\n{te}Connection: close\r\n\r\n"
                );
                let (got, closed) = exchange(&addr, head.as_bytes());
                assert!(closed, "{got}");
                masked(got)
            };
            let fast = ask("bytes");
            assert!(!fast.contains("\nX-Injected"), "{fast}");
            assert_eq!(
                fast,
                ask("respond"),
                "{method} HTTP/{version} {te:?} case {:?}",
                cases[i]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, cases.len() * 5);
}
