//! `StreamBody` over a real socket: the other end writes an answer's body in pieces, as an
//! upstream's stream arrives.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{State, StreamBody};
use crate::upstream::direct::{Conn, Pool};

/// A connected pair: the body read from one end, the upstream's side the other.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    (ours, theirs)
}

fn body(stream: TcpStream, state: State, pool: &Arc<Pool>, idle_ms: u64) -> StreamBody {
    StreamBody {
        conn: Some(Conn::new(stream)),
        state,
        keep_alive: true,
        pool: Arc::clone(pool),
        idle: Duration::from_millis(idle_ms),
    }
}

/// Reads to the end, one `read` at a time with a buffer of `size`.
fn read_all(body: &mut StreamBody, size: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; size];
    loop {
        match body.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_chunked_body_split_anywhere_reads_whole_and_its_connection_is_kept() {
    let wire = b"6\r\ndata: \r\n17;ext=1\r\n{\"a\":1}\n\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    for cut in 1..wire.len() {
        let (ours, mut theirs) = pair();
        let pool = Arc::new(Pool::new(4));
        let mut b = body(ours, State::SizeLine, &pool, 5_000);
        let (first, second) = wire.split_at(cut);
        let writer = thread::spawn({
            let (first, second) = (first.to_vec(), second.to_vec());
            move || {
                theirs.write_all(&first).unwrap();
                thread::sleep(Duration::from_millis(2));
                theirs.write_all(&second).unwrap();
                theirs
            }
        });
        let got = read_all(&mut b, 7).unwrap();
        assert_eq!(got, b"data: {\"a\":1}\n\ndata: [DONE]\n\n", "cut at {cut}");
        assert_eq!(
            pool.len(),
            1,
            "the connection went back to the pool (cut at {cut})"
        );
        drop(writer.join());
    }
}

#[test]
fn each_chunk_is_handed_on_before_the_next_one_is_sent() {
    let (ours, mut theirs) = pair();
    let pool = Arc::new(Pool::new(4));
    let mut b = body(ours, State::SizeLine, &pool, 5_000);
    let (sent, next) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        for event in ["data: 1\n\n", "data: 2\n\n"] {
            write!(theirs, "{:x}\r\n{event}\r\n", event.len()).unwrap();
            // the next chunk only once the reader has this one
            next.recv().unwrap();
        }
        theirs.write_all(b"0\r\n\r\n").unwrap();
    });
    let mut buf = [0u8; 64];
    for event in ["data: 1\n\n", "data: 2\n\n"] {
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], event.as_bytes());
        sent.send(()).unwrap();
    }
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    writer.join().unwrap();
    assert_eq!(pool.len(), 1);
}

#[test]
fn a_length_body_ends_at_its_length_and_a_close_delimited_one_at_the_close() {
    let (ours, mut theirs) = pair();
    let pool = Arc::new(Pool::new(4));
    let mut b = body(ours, State::Length(11), &pool, 5_000);
    theirs.write_all(b"hello world").unwrap();
    assert_eq!(read_all(&mut b, 4).unwrap(), b"hello world");
    assert_eq!(pool.len(), 1, "kept: the message ended at its length");

    let (ours, mut theirs) = pair();
    let pool = Arc::new(Pool::new(4));
    let mut b = body(ours, State::Close, &pool, 5_000);
    theirs.write_all(b"until the close").unwrap();
    drop(theirs);
    assert_eq!(read_all(&mut b, 64).unwrap(), b"until the close");
    assert_eq!(pool.len(), 0, "a closed connection is not kept");
}

#[test]
fn a_body_cut_short_fails_and_nothing_is_kept() {
    for (state, wire) in [
        (State::Length(20), &b"only ten b"[..]),
        (State::SizeLine, &b"a\r\nfive "[..]),
        (State::SizeLine, &b"5\r\nhelloXX\r\n"[..]),
        (State::SizeLine, &b"zz\r\n"[..]),
    ] {
        let (ours, mut theirs) = pair();
        let pool = Arc::new(Pool::new(4));
        let mut b = body(ours, state, &pool, 5_000);
        theirs.write_all(wire).unwrap();
        drop(theirs);
        let read = read_all(&mut b, 64);
        assert!(read.is_err(), "{state:?} {wire:?}: {read:?}");
        assert_eq!(pool.len(), 0);
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 0, "nothing more after a failure");
    }
}

#[test]
fn a_silent_upstream_fails_the_read_after_the_idle_timeout_naming_it() {
    let (ours, mut theirs) = pair();
    let pool = Arc::new(Pool::new(4));
    let mut b = body(ours, State::SizeLine, &pool, 100);
    theirs.write_all(b"7\r\ndata: 1\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(b.read(&mut buf).unwrap(), 7);
    let e = b.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(
        e.to_string()
            .contains("no byte of the answer body for 100 ms (idle_timeout_ms)"),
        "{e}"
    );
    drop(theirs);
}

#[test]
fn a_body_dropped_before_its_end_closes_its_connection() {
    let (ours, mut theirs) = pair();
    let pool = Arc::new(Pool::new(4));
    let mut b = body(ours, State::SizeLine, &pool, 5_000);
    theirs.write_all(b"7\r\ndata: 1\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(b.read(&mut buf).unwrap(), 7);
    drop(b);
    assert_eq!(pool.len(), 0);
    let mut rest = Vec::new();
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        theirs.read_to_end(&mut rest).unwrap(),
        0,
        "the upstream sees the close"
    );
}
