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
