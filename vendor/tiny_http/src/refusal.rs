//! llm-relay patch: requests the HTTP layer refuses itself — the framing checks of RFC 9112
//! section 6 and the OpenAI-shaped JSON answer (`{"error":{"message","type","code"}}`) every
//! such refusal carries, so a client sees what was wrong instead of an empty body.

use std::io::Cursor;

use crate::{HTTPVersion, Header, Response, StatusCode};

/// A request the HTTP layer answers itself and then closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// OpenAI `error.code`, e.g. `invalid_content_length`.
    pub code: &'static str,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// `{"error":{"message","type","code"}}`; `type` is `server_error` for a 5xx the server
    /// could not handle (503), else `invalid_request_error`.
    pub fn body(&self) -> String {
        let kind = match self.status {
            501 | 505 => "invalid_request_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        };
        format!(
            r#"{{"error":{{"message":"{}","type":"{}","code":"{}"}}}}"#,
            json_escape(&self.message),
            kind,
            self.code
        )
    }

    /// The answer: the JSON body, `Content-Type: application/json` and `Connection: close`.
    pub fn response(&self) -> Response<Cursor<Vec<u8>>> {
        let mut response =
            Response::from_data(self.body().into_bytes()).with_status_code(StatusCode(self.status));
        if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
            response.add_header(h);
        }
        if self.status == 503 {
            if let Ok(h) = Header::from_bytes(&b"Retry-After"[..], &b"1"[..]) {
                response.add_header(h);
            }
        }
        response.with_connection_close()
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// At most this many characters of a client's value are quoted back in a message.
const QUOTE: usize = 40;

fn quote(s: &str) -> String {
    s.chars().take(QUOTE).collect()
}

/// How the body of a request is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither header: no body.
    Empty,
    /// `Content-Length: N`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Transfer codings registered with IANA that this server does not decode (answered 400, as
/// the brief of the relay asks: only `chunked` is accepted); any other name is unknown (501).
const KNOWN_CODINGS: [&str; 7] = [
    "compress",
    "deflate",
    "gzip",
    "identity",
    "trailers",
    "x-compress",
    "x-gzip",
];

/// The body framing of a request, or why it cannot be trusted: more than one or an invalid
/// `Content-Length`, `Content-Length` with `Transfer-Encoding`, `Transfer-Encoding` in
/// HTTP/1.0, or a transfer coding other than one final `chunked`. Each is a request whose end a
/// front proxy may see elsewhere (request smuggling), so it is refused and the connection closed.
pub fn body_framing(headers: &[Header], version: &HTTPVersion) -> Result<BodyFraming, Refusal> {
    // One pass without allocating: the common request has at most one Content-Length.
    let mut length: Option<&str> = None;
    let mut lengths = 0;
    let mut has_te = false;
    for h in headers {
        if h.field.equiv("Content-Length") {
            lengths += 1;
            length = Some(h.value.as_str());
        } else if h.field.equiv("Transfer-Encoding") {
            has_te = true;
        }
    }

    if has_te {
        let codings: Vec<String> = headers
            .iter()
            .filter(|h| h.field.equiv("Transfer-Encoding"))
            .flat_map(|h| h.value.as_str().split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if lengths > 0 {
            return Err(Refusal::new(
                400,
                "conflicting_framing",
                "the request has both Content-Length and Transfer-Encoding; send only one of them",
            ));
        }
        if *version == HTTPVersion(1, 0) {
            return Err(Refusal::new(
                400,
                "invalid_transfer_encoding",
                "Transfer-Encoding is not allowed in an HTTP/1.0 request; send Content-Length",
            ));
        }
        if let Some(unknown) = codings
            .iter()
            .find(|c| *c != "chunked" && !KNOWN_CODINGS.contains(&c.as_str()))
        {
            return Err(Refusal::new(
                501,
                "unsupported_transfer_encoding",
                format!(
                    "unknown transfer coding `{}`; send the body with Transfer-Encoding: chunked \
                     or Content-Length",
                    quote(unknown)
                ),
            ));
        }
        if codings.len() != 1 || codings.first().map(String::as_str) != Some("chunked") {
            return Err(Refusal::new(
                400,
                "invalid_transfer_encoding",
                format!(
                    "Transfer-Encoding `{}` is not accepted; the only transfer coding this \
                     server takes is a single `chunked`",
                    quote(&codings.join(", "))
                ),
            ));
        }
        return Ok(BodyFraming::Chunked);
    }

    match (lengths, length) {
        (0, _) | (_, None) => Ok(BodyFraming::Empty),
        (1, Some(value)) => {
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            match value.parse::<usize>() {
                Ok(n) if digits => Ok(BodyFraming::Length(n)),
                _ => Err(Refusal::new(
                    400,
                    "invalid_content_length",
                    format!(
                        "Content-Length `{}` is not a number of bytes; send digits only, e.g. \
                         `Content-Length: 42`",
                        quote(value)
                    ),
                )),
            }
        }
        _ => Err(Refusal::new(
            400,
            "invalid_content_length",
            "the request has more than one Content-Length header; send exactly one",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &[(&str, &str)], version: HTTPVersion, expected: Result<BodyFraming, u16>) {
        let headers: Vec<Header> = headers
            .iter()
            .map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).unwrap())
            .collect();
        let got = body_framing(&headers, &version).map_err(|r| r.status);
        assert_eq!(got, expected, "{headers:?}");
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        let v11 = || HTTPVersion(1, 1);
        use BodyFraming::*;
        check(&[], v11(), Ok(Empty));
        check(&[("Content-Length", "0")], v11(), Ok(Length(0)));
        check(&[("content-length", "42")], v11(), Ok(Length(42)));
        check(&[("Transfer-Encoding", "chunked")], v11(), Ok(Chunked));
        check(&[("Transfer-Encoding", "Chunked")], v11(), Ok(Chunked));
        for bad in [
            "abc",
            "5, 5",
            "+66",
            "-1",
            "",
            " 5x",
            "99999999999999999999999",
        ] {
            check(&[("Content-Length", bad)], v11(), Err(400));
        }
        check(
            &[("Content-Length", "5"), ("Content-Length", "5")],
            v11(),
            Err(400),
        );
        check(
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            v11(),
            Err(400),
        );
        check(
            &[("Transfer-Encoding", "chunked")],
            HTTPVersion(1, 0),
            Err(400),
        );
        check(&[("Transfer-Encoding", "gzip, chunked")], v11(), Err(400));
        check(&[("Transfer-Encoding", "chunked, gzip")], v11(), Err(400));
        check(
            &[("Transfer-Encoding", "chunked, chunked")],
            v11(),
            Err(400),
        );
        check(
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            v11(),
            Err(400),
        );
        check(&[("Transfer-Encoding", "")], v11(), Err(400));
        check(&[("Transfer-Encoding", "gzip")], v11(), Err(400));
        check(&[("Transfer-Encoding", "foo")], v11(), Err(501));
        check(&[("Transfer-Encoding", "xchunked")], v11(), Err(501));
        check(&[("Transfer-Encoding", "chunked;q=1")], v11(), Err(501));
    }

    #[test]
    fn refusal_bodies_are_openai_shaped_json() {
        let r = Refusal::new(400, "bad", "a \"quoted\" \\ value\r\n");
        assert_eq!(
            r.body(),
            r#"{"error":{"message":"a \"quoted\" \\ value\u000d\u000a","type":"invalid_request_error","code":"bad"}}"#
        );
        assert!(Refusal::new(503, "x", "y")
            .body()
            .contains(r#""type":"server_error""#));
    }
}
