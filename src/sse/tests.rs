//! The relay loop: recording, bounds, and how a stream ends.

use super::*;

#[test]
fn recording_past_its_cap_keeps_whole_lines_of_the_tail() {
    let mut r = Recording {
        bytes: Vec::new(),
        cap: 1000,
        truncated: false,
    };
    r.push(b"data: first\n");
    assert!(!r.truncated);
    for i in 0..100_000 {
        r.push(format!("data: {i}\n").as_bytes());
    }
    assert!(r.truncated);
    assert!(r.bytes.len() <= 2 * TAIL, "{}", r.bytes.len());
    assert!(r.bytes.starts_with(b"data: "), "starts at a line");
    assert!(r.bytes.ends_with(b"data: 99999\n"));
}

/// An upstream that sends `first`, then `x` without end, counting what was read of it.
struct Endless {
    first: &'static [u8],
    read: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let from = self.first.get(self.read..).unwrap_or_default();
        let n = if from.is_empty() {
            buf.fill(b'x');
            buf.len()
        } else {
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            n
        };
        self.read += n;
        Ok(n)
    }
}

/// Relays `stream` as `kind` into a sink; returns how it ended and the body written.
fn relay_all(kind: Kind, stream: &[u8]) -> (End, String) {
    let sink = Sink::default();
    let conn = crate::sse_out::Conn::raw(Box::new(sink.clone()), false);
    let mut out = SseOut::start(conn, &[]).unwrap();
    let bounds = Bounds {
        record: 0,
        event: 1024,
    };
    let mut upstream = stream;
    let relayed = relay(
        kind,
        &mut upstream,
        &mut out,
        &|e| format!("broke: {e}"),
        bounds,
        &mut NoTap,
        None,
    );
    let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let body = written.split_once("\r\n\r\n").unwrap().1.to_string();
    (relayed.end, body)
}

#[test]
fn a_passthrough_stream_is_complete_when_the_upstream_closes_it() {
    let stream = b"event: transcript.text.delta\ndata: {\"delta\":\"a\"}\n\n\
                   event: transcript.text.done\ndata: {\"text\":\"a\"}\n\n";
    let (end, body) = relay_all(Kind::Passthrough(Api::Chat), stream);
    assert_eq!((end, body.as_bytes()), (End::Complete, &stream[..]));
    // the same stream as a chat completion ended before its `[DONE]`
    let (end, body) = relay_all(Kind::Api(Api::Chat), stream);
    assert!(matches!(end, End::Interrupted(_)), "{end:?}");
    assert!(body.starts_with(std::str::from_utf8(stream).unwrap()));
    assert!(body.contains("upstream_stream_interrupted"), "{body}");
    // a pass-through event past its bound still cuts it, with the API's error event
    let long = format!("data: {}\n\n", "x".repeat(2000));
    let (end, body) = relay_all(Kind::Passthrough(Api::Chat), long.as_bytes());
    assert!(matches!(end, End::Interrupted(_)), "{end:?}");
    assert!(body.contains("max_event_bytes (1024 bytes)") && !body.contains("xxx"));
}

#[test]
fn an_event_past_its_bound_cuts_the_stream_and_is_not_read_further() {
    for first in [&b"data: {}\n\ndata: xx"[..], b"data: {}\n\n"] {
        let sink = Sink::default();
        let mut out = SseOut::start(
            crate::sse_out::Conn::raw(Box::new(sink.clone()), false),
            &[],
        )
        .unwrap();
        let mut upstream = io::BufReader::with_capacity(1024, Endless { first, read: 0 });
        let bounds = Bounds {
            record: usize::MAX,
            event: 8192,
        };
        let relayed = relay(
            Kind::Api(Api::Chat),
            &mut upstream,
            &mut out,
            &|e| format!("broke: {e}"),
            bounds,
            &mut NoTap,
            None,
        );
        let End::Interrupted(msg) = relayed.end else {
            panic!("{:?}", relayed.end);
        };
        assert!(msg.starts_with("broke: ") && msg.contains("max_event_bytes (8192 bytes)"));
        let read = upstream.get_ref().read;
        assert!(read <= 8192 + 2 * 1024, "read {read} bytes");
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let body = written.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.starts_with("data: {}\n\ndata: {\"error\""), "{body}");
        assert!(!body.contains("xx"), "the oversized event is not passed on");
        assert!(relayed.recorded.len() < 100, "nor recorded");
    }
}

/// A translator that echoes each line it is given between brackets.
struct Brackets;

impl crate::sse_frame::Translate for Brackets {
    fn line(&mut self, line: &[u8]) -> Vec<u8> {
        [b"[", line, b"]"].concat()
    }
    fn end(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn fail(&mut self, _: &str) -> Vec<u8> {
        Vec::new()
    }
    fn failed(&self) -> bool {
        false
    }
}

#[test]
fn a_translator_gets_the_lines_split_inclusive_gives() {
    for event in [
        &b""[..],
        b"\n",
        b"data: {}\n\n",
        b"event: x\ndata: {}\r\n\r\n",
        b"data: half-written",
        b"data: a\n\ndata: b",
        b"\n\n\n",
    ] {
        let expected: Vec<u8> = event
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|line| [b"[", line, b"]"].concat())
            .collect();
        assert_eq!(
            translated(&mut Brackets, event),
            expected,
            "{}",
            String::from_utf8_lossy(event)
        );
    }
}
