//! The two ways a pass-through answer goes back to the client: a streamed copy of its bytes
//! ([`answer_copy`], framed as the upstream framed it, its head written by `http_head`) or, for
//! `text/event-stream`, event by event through the relay loop `sse::relay` ([`answer_events`]).
//! Neither holds the body whole; an upstream that breaks or goes
//! silent counts a failure against its endpoint, and the client is never handed a cut body as
//! complete.

use std::io::{self, BufReader, Read, Write};

use super::billed::Bill;
use crate::api;
use crate::exchange::Exchange;
use crate::http_head::{Framing, Head};
use crate::sse::{self, End};
use crate::sse_frame::Tap;
use crate::sse_out::{Conn, SseOut};
use crate::state::State;
use crate::streaming::broken_stream;
use crate::upstream::{self, Sent};

/// An upstream answer taken apart for copying.
pub struct Answer {
    pub status: u16,
    pub length: Option<u64>,
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send>,
    pub base: std::sync::Arc<str>,
    pub endpoint: std::sync::Arc<str>,
}

impl Answer {
    pub fn of(sent: Sent) -> Answer {
        let response = sent.response;
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Answer {
            status: response.status().as_u16(),
            length,
            headers: upstream::response_headers(response.headers()),
            body: Box::new(response.into_body().into_reader()),
            base: sent.base,
            endpoint: sent.endpoint,
        }
    }
}

/// Answers with the upstream's answer as a streamed copy, its status and headers kept, framed
/// as the upstream framed it (its `Content-Length`, else chunked). An upstream that breaks or
/// goes silent mid-body (`idle_timeout_ms`) counts a failure against the endpoint, and the
/// client's connection is closed with the answer cut (fewer bytes than announced, or no
/// terminating chunk): the head is out, and a clean end would pass the cut body off as whole.
/// A billed call's `charge` reads the `usage` as the body passes and is made before its last
/// bytes.
pub fn answer_copy(state: &State, ex: &mut Exchange, answer: Answer, mut charge: Option<Bill>) {
    let Answer {
        status,
        length,
        headers,
        mut body,
        base,
        endpoint,
    } = answer;
    ex.answer_with(|req| {
        let http11 = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let bodiless = req.method() == &tiny_http::Method::Head || matches!(status, 204 | 304);
        let framing = match (bodiless, length) {
            (true, n) => Framing::Bodiless(n),
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::open_ended(http11),
        };
        let (mut out, completion) = req.into_writer_or_close();
        let head = Head {
            http11,
            status,
            headers: &headers,
            framing,
            drop_framing: true,
            close: false,
        }
        .render();
        if out.write_all(head.as_bytes()).is_err() {
            return (status, 0); // the client left
        }
        let (bytes, copied) = copy_body(&mut body, &mut out, framing, charge.as_mut());
        match copied {
            Copied::Whole => {
                if out.flush().is_ok() && framing != Framing::Close {
                    completion.complete();
                }
            }
            Copied::ClientGone => {}
            Copied::Broken(e) => {
                state.upstream.stream_failed(&endpoint);
                crate::log::warn(&format!(
                    "upstream {base} broke a pass-through answer after {bytes} bytes: {e}; the \
                     client's connection is closed with the answer cut"
                ));
                let _ = out.flush();
                // `completion` dropped: the connection closes
            }
        }
        (status, bytes)
    });
    if let Some(charge) = charge {
        ex.access.usage = charge.usage();
    }
}

/// How [`copy_body`] ended.
#[derive(Debug)]
enum Copied {
    /// The upstream's body ended where it should (and the framing's end went out).
    Whole,
    /// Reading the upstream failed (reset, cut short, silent past `idle_timeout_ms`).
    Broken(io::Error),
    /// Writing to the client failed.
    ClientGone,
}

/// Copies the upstream's body to the client as it arrives, flushing each read; returns the
/// payload bytes written and how it ended. `charge` sees every byte and is made before the
/// last ones go out (the piece that completes a `Content-Length`, else the end's framing).
fn copy_body(
    upstream: &mut dyn Read,
    out: &mut dyn Write,
    framing: Framing,
    mut charge: Option<&mut Bill>,
) -> (u64, Copied) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut bytes = 0u64;
    if matches!(framing, Framing::Bodiless(_)) {
        return (0, Copied::Whole);
    }
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (bytes, Copied::Broken(e)),
        };
        let data = buf.get(..n).unwrap_or_default();
        if let Some(charge) = charge.as_deref_mut() {
            charge.tokens.body(data);
            if matches!(framing, Framing::Length(len) if bytes + n as u64 >= len) {
                charge.now();
            }
        }
        let written = if framing == Framing::Chunked {
            write!(out, "{n:x}\r\n")
                .and_then(|()| out.write_all(data))
                .and_then(|()| out.write_all(b"\r\n"))
        } else {
            out.write_all(data)
        };
        if written.and_then(|()| out.flush()).is_err() {
            return (bytes, Copied::ClientGone);
        }
        bytes += n as u64;
    }
    if let Framing::Length(n) = framing {
        if bytes != n {
            let short = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the body ended after {bytes} of its {n} bytes"),
            );
            return (bytes, Copied::Broken(short));
        }
    }
    if let Some(charge) = charge {
        charge.now();
    }
    if framing == Framing::Chunked && out.write_all(b"0\r\n\r\n").is_err() {
        return (bytes, Copied::ClientGone);
    }
    (bytes, Copied::Whole)
}

/// Answers with the upstream's event stream, its status and headers kept, through the relay
/// loop (`sse::relay`, as a [`sse::Kind::Passthrough`] stream: nothing recorded, each event
/// flushed as its blank line arrives, at most `max_event_bytes` each). A stream the upstream
/// breaks, or an event over `max_event_bytes`, ends with the API's error event and a clean end
/// (as the relay's own streams do: the client is told rather than left waiting, and the
/// endpoint counts a failure). A billed call's `charge` reads the `usage` of each event (its
/// tap) and is made before the stream's end goes out.
pub fn answer_events(
    state: &State,
    ex: &mut Exchange,
    api: api::Api,
    sent: Sent,
    mut charge: Option<Bill>,
) {
    let status = sent.response.status().as_u16();
    let head = upstream::response_headers(sent.response.headers());
    let body = sent.response.into_body().into_reader();
    let (base, endpoint) = (sent.base, sent.endpoint);
    ex.answer_with(|req| {
        let Ok(mut out) = SseOut::start_as(Conn::of(req), status, &head) else {
            return (status, 0); // the client left before the head was written
        };
        let mut reader = BufReader::with_capacity(16 * 1024, body);
        let bounds = sse::Bounds {
            record: 0,
            event: state.config.max_event_bytes,
        };
        let tap: &mut dyn Tap = match &mut charge {
            Some(charge) => &mut charge.tokens,
            None => &mut sse::NoTap,
        };
        let relayed = sse::relay(
            sse::Kind::Passthrough(api),
            &mut reader,
            &mut out,
            &|e| broken_stream(&base, e),
            bounds,
            tap,
            None,
        );
        match relayed.end {
            End::ClientGone => return (status, out.bytes),
            End::Interrupted(message) => {
                state.upstream.stream_failed(&endpoint);
                crate::log::warn(&message);
            }
            End::Complete => {}
        }
        if let Some(charge) = &mut charge {
            charge.now();
        }
        let bytes = out.bytes;
        let _ = out.finish();
        (status, bytes)
    });
    if let Some(charge) = charge {
        ex.access.usage = charge.usage();
    }
}
