//! A streamed answer from an endpoint the direct client speaks to (plain HTTP, no proxy): the
//! request and response head go as a whole answer's do (`direct::send_direct`, each read of
//! the head within `idle_timeout_ms` as well), and the body is a reader that hands on each
//! piece of the answer as it arrives, one read of the socket at most per call.
//!
//! Through ureq each read of a stream went through its call machinery (its timings, body
//! handler, limit and charset readers, our idle and steady layers), and every checkout and
//! return of a connection purged its pool, comparing the keys of all idle connections under
//! one lock: at 500 open streams that was ~7 % of the relay's CPU (BENCHMARKS.md, "Ceilings
//! beside the targets that stay missed"). Here a read is the socket's read under the idle
//! bound, the framing followed in place, and a connection whose answer ended where HTTP/1.1
//! says goes back to the endpoint's pool (`direct::Pool`); one dropped before that is closed.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Response;
use ureq::Body;

use super::direct::{silent, Conn, Direct, Pool, Socket, Wait};
use super::framing::{self, Framing};
use super::ClientHeaders;
use super::{Endpoint, Upstream};

impl Upstream {
    /// POSTs `body` to `target` of `ep` through its direct client and returns the response
    /// with its body still to come (read through [`StreamBody`]).
    pub(super) fn post_direct_stream(
        &self,
        ep: &Endpoint,
        direct: &Direct,
        target: &str,
        outgoing: (ClientHeaders<'_>, Option<&str>),
        body: &[u8],
    ) -> Result<Response<Body>, ureq::Error> {
        let idle = self.timeouts.idle;
        let (conn, head) = self.send_direct(ep, direct, target, outgoing, body, Some(idle))?;
        let state = match head.framing {
            Framing::Empty | Framing::Length(0) => State::Ended,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::SizeLine,
            Framing::Close => State::Close,
        };
        let reader = StreamBody {
            conn: Some(conn),
            state,
            keep_alive: head.keep_alive,
            pool: direct.shared_pool(),
            idle,
        };
        let (parts, ()) = head.response.into_parts();
        Ok(Response::from_parts(parts, Body::builder().reader(reader)))
    }
}

/// Where a body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Content-Length` bytes left.
    Length(u64),
    /// A chunk's size line is next.
    SizeLine,
    /// Bytes of the current chunk left.
    Chunk(u64),
    /// The CRLF after a chunk's bytes is next.
    ChunkEnd,
    /// After the last chunk: trailer lines up to the empty one.
    Trailers,
    /// Everything until the upstream closes.
    Close,
    /// The message ended where HTTP/1.1 says (the connection may carry another).
    Ended,
    /// The upstream closed the connection at the end (a close-delimited body, or right after
    /// the last chunk), or a read failed: nothing more comes.
    Closed,
}

/// The body of a streamed answer, read from its connection as it arrives.
pub(super) struct StreamBody {
    /// `None` once it went back to the pool or was closed.
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    pool: Arc<Pool>,
    idle: Duration,
}

impl Read for StreamBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.step(buf) {
            Ok(n) => {
                if self.state == State::Ended {
                    self.finish();
                }
                Ok(n)
            }
            Err(e) => {
                self.state = State::Closed;
                self.conn = None;
                Err(silent(e, "no byte of the answer body", self.idle).into_io())
            }
        }
    }
}

impl StreamBody {
    /// Reads what comes next into `buf`: body bytes (at most one read of the socket for them),
    /// or `0` at the end, walking the framing between chunks.
    fn step(&mut self, buf: &mut [u8]) -> Result<usize, ureq::Error> {
        let Some(Conn {
            stream,
            read_timeout,
            inbox,
            ..
        }) = self.conn.as_mut()
        else {
            return Ok(0);
        };
        let mut socket = Socket::new(stream, read_timeout, Wait::Each(self.idle));
        loop {
            match self.state {
                State::Ended | State::Closed => return Ok(0),
                State::Length(left) | State::Chunk(left) => {
                    let n = framing::take_some(inbox, &mut socket, left, buf)?;
                    if n == 0 {
                        return Err(framing::disconnected());
                    }
                    self.state = match (self.state, left - n as u64) {
                        (State::Length(_), 0) => State::Ended,
                        (State::Length(_), rest) => State::Length(rest),
                        (_, 0) => State::ChunkEnd,
                        (_, rest) => State::Chunk(rest),
                    };
                    return Ok(n);
                }
                State::Close => {
                    let n = framing::take_some(inbox, &mut socket, u64::MAX, buf)?;
                    if n == 0 {
                        self.state = State::Closed;
                    }
                    return Ok(n);
                }
                State::SizeLine => {
                    let len =
                        framing::line(inbox, &mut socket)?.ok_or_else(framing::disconnected)?;
                    let size = framing::chunk_size(inbox.pending().get(..len).unwrap_or_default())?;
                    inbox.consume(len);
                    self.state = match size {
                        0 => State::Trailers,
                        n => State::Chunk(n),
                    };
                }
                State::ChunkEnd => {
                    let len =
                        framing::line(inbox, &mut socket)?.ok_or_else(framing::disconnected)?;
                    if !matches!(inbox.pending().get(..len), Some(b"\r\n" | b"\n")) {
                        return Err(ureq_proto::Error::ChunkExpectedCrLf.into());
                    }
                    inbox.consume(len);
                    self.state = State::SizeLine;
                }
                State::Trailers => match framing::line(inbox, &mut socket)? {
                    // a close right after the last chunk ends the body (as ureq accepts it)
                    None => self.state = State::Closed,
                    Some(len) => {
                        let empty = matches!(inbox.pending().get(..len), Some(b"\r\n" | b"\n"));
                        inbox.consume(len);
                        if empty {
                            self.state = State::Ended;
                        }
                    }
                },
            }
        }
    }

    /// The message ended: its connection goes back to the pool if it may carry another and
    /// nothing else came.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.inbox.pending().is_empty() {
                self.pool.keep(conn);
            }
        }
    }
}

#[cfg(test)]
#[path = "direct_stream_tests.rs"]
mod tests;
