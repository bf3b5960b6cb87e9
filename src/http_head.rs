//! The one writer of an HTTP/1.x response head for the answers the relay frames itself over the
//! raw connection (event streams, pass-through copies, the drain's 503): status line with the
//! request's minor version and the status's reason, the caller's headers (a line with CR or LF
//! dropped, so no header value can split the head), and the framing the body goes out with.
//! Imports nothing of the relay; tiny_http only for the reason phrases.

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body follows (HEAD, 204, 304); with the length of the body it would have had, which
    /// goes out as `Content-Length` (never on a 204).
    Bodiless(Option<u64>),
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// Ended by closing the connection (`Connection: close`).
    Close,
}

impl Framing {
    /// The framing of a body of unknown length: chunked over HTTP/1.1, else the close.
    pub fn open_ended(http11: bool) -> Framing {
        if http11 {
            Framing::Chunked
        } else {
            Framing::Close
        }
    }
}

/// Headers that say how a body is framed: the relay's own to write when it frames the body.
const FRAMING_HEADERS: &[&str] = &["transfer-encoding", "content-length", "connection"];

/// A response head to write.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// HTTP/1.1 (else 1.0), the request's version.
    pub http11: bool,
    pub status: u16,
    /// Headers (name, value) in the order they go out.
    pub headers: &'a [(String, String)],
    pub framing: Framing,
    /// Drop `Transfer-Encoding`, `Content-Length` and `Connection` from `headers`: only the
    /// framing's own go out (for headers that come from elsewhere, e.g. an upstream's).
    pub drop_framing: bool,
    /// The connection closes after this answer: `Connection: close` also when the framing does
    /// not say it.
    pub close: bool,
}

impl Head<'_> {
    /// The head as text, blank line included.
    pub fn render(&self) -> String {
        let status = self.status;
        let reason = tiny_http::StatusCode(status).default_reason_phrase();
        let minor = u8::from(self.http11);
        let mut head = format!("HTTP/1.{minor} {status} {reason}\r\n");
        for (name, value) in self.headers {
            let framing =
                self.drop_framing && FRAMING_HEADERS.iter().any(|f| name.eq_ignore_ascii_case(f));
            if framing || name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
                continue;
            }
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        match self.framing {
            Framing::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
            Framing::Bodiless(Some(n)) if status != 204 => {
                head.push_str(&format!("Content-Length: {n}\r\n"))
            }
            Framing::Bodiless(_) => {}
            Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::Close => head.push_str("Connection: close\r\n"),
        }
        if self.close && self.framing != Framing::Close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: Head, expected: &str) {
        assert_eq!(head.render(), expected, "{head:?}");
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_framing_and_version() {
        let headers = pairs(&[("Content-Type", "text/plain")]);
        let head = |http11, status, framing| Head {
            http11,
            status,
            headers: &headers,
            framing,
            drop_framing: false,
            close: false,
        };
        let ct = "Content-Type: text/plain\r\n";
        check(
            head(true, 200, Framing::Length(5)),
            &format!("HTTP/1.1 200 OK\r\n{ct}Content-Length: 5\r\n\r\n"),
        );
        check(
            head(true, 200, Framing::Chunked),
            &format!("HTTP/1.1 200 OK\r\n{ct}Transfer-Encoding: chunked\r\n\r\n"),
        );
        check(
            head(false, 200, Framing::Close),
            &format!("HTTP/1.0 200 OK\r\n{ct}Connection: close\r\n\r\n"),
        );
        check(
            head(true, 304, Framing::Bodiless(Some(7))),
            &format!("HTTP/1.1 304 Not Modified\r\n{ct}Content-Length: 7\r\n\r\n"),
        );
        check(
            head(true, 204, Framing::Bodiless(Some(7))),
            &format!("HTTP/1.1 204 No Content\r\n{ct}\r\n"),
        );
        check(
            head(false, 404, Framing::Bodiless(None)),
            &format!("HTTP/1.0 404 Not Found\r\n{ct}\r\n"),
        );
        assert_eq!(Framing::open_ended(true), Framing::Chunked);
        assert_eq!(Framing::open_ended(false), Framing::Close);
    }

    #[test]
    fn close_is_said_once() {
        let headers = pairs(&[("Retry-After", "1")]);
        let head = |framing| Head {
            http11: true,
            status: 503,
            headers: &headers,
            framing,
            drop_framing: false,
            close: true,
        };
        check(
            head(Framing::Length(2)),
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n",
        );
        check(
            head(Framing::Close),
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        );
    }

    #[test]
    fn lines_with_cr_or_lf_are_dropped() {
        let headers = pairs(&[
            ("X-A", "1"),
            ("X-B", "two\r\nSet-Cookie: x=1"),
            ("X-C\n", "3"),
            ("X-D", "four\r"),
            ("X-E", "5"),
        ]);
        let head = Head {
            http11: true,
            status: 200,
            headers: &headers,
            framing: Framing::Bodiless(None),
            drop_framing: false,
            close: false,
        };
        check(head, "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-E: 5\r\n\r\n");
    }

    #[test]
    fn framing_headers_are_dropped_when_the_caller_frames() {
        let headers = pairs(&[
            ("content-length", "99"),
            ("X-A", "1"),
            ("Transfer-Encoding", "gzip, chunked"),
            ("Connection", "keep-alive"),
        ]);
        let head = |drop_framing| Head {
            http11: true,
            status: 200,
            headers: &headers,
            framing: Framing::Chunked,
            drop_framing,
            close: false,
        };
        check(
            head(true),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        check(
            head(false),
            "HTTP/1.1 200 OK\r\ncontent-length: 99\r\nX-A: 1\r\nTransfer-Encoding: gzip, \
             chunked\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
    }
}
