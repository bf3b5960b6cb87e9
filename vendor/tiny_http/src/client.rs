use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Header, Method};
use crate::head_scan::{line_chunk, request_len, LineError};
use crate::refusal::Refusal;
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // llm-relay patch: the most time one request head may take, from the start of waiting for
    // it to its blank line (None: unbounded, as upstream).
    head_timeout: Option<std::time::Duration>,
    /// In `util::clock` milliseconds (llm-relay patch).
    head_deadline: Option<u64>,
    // llm-relay patch: bytes of the current request head received so far.
    head_bytes: usize,

    // llm-relay patch: true while the socket's read timeout is a `whole_request_within` window
    // (kept between requests found whole: the reads of those cannot wait); see
    // `restore_read_timeout`.
    window_set: bool,

    // llm-relay patch: set once the previous request's body was read (or drained) to its end;
    // until then the bytes that follow are not known to be a request head.
    body_end: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Error that can happen when reading a request.
/// llm-relay patch: the longest request line or header line accepted (answered 431 beyond).
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// llm-relay patch: the most header lines accepted in one request (answered 431 beyond).
const MAX_HEADERS: usize = 128;

/// llm-relay patch: how long a refused connection's unread input is drained after the answer
/// (closing with unread input sends a reset, which can destroy the answer in flight), and how
/// much of it at most.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;
/// llm-relay patch: the same for a connection whose request body was left unread (answered
/// before it was read): a client sending a large body must get to its end to read the answer.
const BODY_LINGER: std::time::Duration = std::time::Duration::from_secs(5);
const BODY_LINGER_BYTES: usize = 256 * 1024 * 1024;

/// llm-relay patch: what [`ClientConnection::whole_request_within`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// A whole request (head and `Content-Length` body) has arrived: reading it will not wait.
    Whole,
    /// Not (yet): no bytes, part of a request, a chunked or too large one, or a connection
    /// this cannot tell for (TLS, Unix socket, a body still being read).
    NotYet,
    /// The client closed the connection, or it failed.
    Closed,
}

/// llm-relay patch: the largest request [`ClientConnection::whole_request_within`] looks for.
const MAX_KEPT_REQUEST: usize = 1024 * 1024;

#[derive(Debug)]
enum ReadError {
    /// llm-relay patch: the head is refused (431, 400, 417, 501, 505) with this answer, and the
    /// connection closed.
    Refused(Refusal),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            head_timeout: None,
            head_deadline: None,
            head_bytes: 0,
            window_set: false,
            body_end: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// llm-relay patch: bounds the total time of reading each request head.
    pub fn with_head_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// llm-relay patch: answers a refused request with its JSON error, ends the output (FIN)
    /// and drains what the client still sends for a moment, so that the close that follows
    /// does not reset the connection before the client has read the answer.
    fn refuse(&mut self, refusal: &Refusal) {
        log::debug!(
            "refused a request from {:?}: {} {}",
            self.remote_addr.as_ref().ok().copied().flatten(),
            refusal.status,
            refusal.message
        );
        if let Some(mut writer) = self.sink.next() {
            let _ = refusal
                .response()
                .raw_print(&mut writer, HTTPVersion(1, 1), &[], false, None);
            let _ = writer.flush();
        }
        self.linger(LINGER, LINGER_BYTES);
    }

    /// llm-relay patch: a lingering close (as nginx's): ends the output (FIN) after what was
    /// written, then reads and discards what the client still sends, for at most `time` and
    /// `bytes`, each read waiting at most a fifth of `time`; the close that follows then does
    /// not reset the connection before the client has read the answer.
    fn linger(&mut self, time: std::time::Duration, bytes: usize) {
        self.sink.with_inner(|w| {
            let _ = w.flush();
            w.get_mut().shutdown_write();
        });
        let Some(input) = self.next_header_source.inner_mut() else {
            return;
        };
        input.get_mut().set_read_timeout(Some(time / 5));
        let deadline = std::time::Instant::now() + time;
        let mut drained = 0;
        let mut chunk = [0u8; 16 * 1024];
        while drained < bytes && std::time::Instant::now() < deadline {
            match input.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }

    /// llm-relay patch: waits at most `window` for the first bytes of the next request, then
    /// tells whether all of it is there: what the read buffer holds (filled by one read if it
    /// was empty) and what the socket has beyond it, looked at without being taken. Nothing is
    /// consumed: the request's own reading finds every byte.
    pub(crate) fn whole_request_within(&mut self, window: std::time::Duration) -> Waited {
        if self.no_more_requests || self.secure {
            return Waited::NotYet;
        }
        if !self.body_end.load(std::sync::atomic::Ordering::SeqCst) {
            return Waited::NotYet;
        }
        self.next_header_source.try_turn();
        let Some(source) = self.next_header_source.inner_mut() else {
            return Waited::NotYet; // the previous request's body reader is still out
        };
        if !self.window_set {
            source.get_mut().set_read_timeout(Some(window));
            self.window_set = true;
        }
        // an empty read buffer is filled first (a read, not a look: what it takes stays in the
        // buffer for the request's reader, and a request that fits needs no other call)
        if source.buffer().is_empty() {
            match source.fill_buf() {
                Ok([]) => return self.unwait(Waited::Closed),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return self.unwait(Waited::NotYet)
                }
                Err(_) => return self.unwait(Waited::Closed),
            }
        }
        let Some(source) = self.next_header_source.inner_mut() else {
            return Waited::NotYet;
        };
        let buffer = source.buffer();
        if request_len(buffer).is_some_and(|len| buffer.len() >= len) {
            return Waited::Whole;
        }
        let mut bytes = Vec::with_capacity(buffer.len() + 2048);
        bytes.extend_from_slice(buffer);
        let socket = source.get_mut();
        let buffered = bytes.len();
        // a first look (waiting up to `window`) for the head, a second one for all of a
        // larger request; the socket's bytes follow the buffer's
        let mut want = 2048;
        let mut waited = Waited::NotYet;
        for _ in 0..2 {
            bytes.resize(buffered + want, 0);
            let peeked = bytes.get_mut(buffered..).map(|rest| socket.peek(rest));
            match peeked {
                Some(Ok(0)) if buffered == 0 => {
                    waited = Waited::Closed;
                    break;
                }
                Some(Ok(n)) => bytes.truncate(buffered + n),
                Some(Err(e))
                    if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    waited = Waited::Closed;
                    break;
                }
                _ => break,
            }
            match request_len(&bytes) {
                Some(len) if bytes.len() >= len => {
                    waited = Waited::Whole;
                    break;
                }
                Some(len) if len <= MAX_KEPT_REQUEST => want = len - buffered,
                _ => break,
            }
        }
        self.unwait(waited)
    }

    /// `waited`, after putting the socket's own read timeout back unless the request is whole.
    fn unwait(&mut self, waited: Waited) -> Waited {
        if waited != Waited::Whole {
            if let Some(source) = self.next_header_source.inner_mut() {
                source.get_mut().set_read_timeout(self.head_timeout);
                self.window_set = false;
            }
        }
        waited
    }

    /// llm-relay patch: puts the socket's own read timeout back after `whole_request_within`
    /// left a window set (a connection served by a pool thread waits for its next request
    /// with the server's timeout).
    pub(crate) fn restore_read_timeout(&mut self) {
        if !self.window_set {
            return;
        }
        // through the writing handle: the same socket, and never held by a reader
        let timeout = self.head_timeout;
        self.sink
            .with_inner(|w| w.get_mut().set_read_timeout(timeout));
        self.window_set = false;
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self) -> IoResult<AsciiString> {
        // llm-relay patch: scans the connection's read buffer (`fill_buf`/`consume`) instead of
        // pulling one byte at a time through `Read::bytes` (a `read` call per byte, ~15 % of a
        // cache hit's instructions); the checks per byte are the same.
        self.next_header_source.wait_turn();
        let deadline = self.head_deadline;
        let Some(source) = self.next_header_source.inner_mut() else {
            return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF"));
        };
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            // only a chunk that had to be read can be late: one the buffer held already cost no
            // wait (a head that arrived whole reads the clock once, not once a line)
            let waited = source.buffer().is_empty();
            let available = match source.fill_buf() {
                Ok([]) => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
                Ok(available) => available,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let late = || waited && deadline.is_some_and(|d| crate::util::clock::now_ms() > d);
            let (used, taken, end) = line_chunk(available, &mut buf, &mut prev_byte_was_cr, late);
            self.head_bytes += taken;
            let end = end.map(|end| {
                end.map_err(|e| match e {
                    LineError::Bare => {
                        IoError::new(ErrorKind::InvalidInput, "bare CR or LF, or NUL")
                    }
                    LineError::Late => IoError::new(ErrorKind::TimedOut, "request head too slow"),
                    LineError::Long => IoError::new(ErrorKind::OutOfMemory, "header line too long"),
                })
            });
            source.consume(used);
            match end {
                None => {}
                Some(Ok(())) => {
                    return AsciiString::from_ascii(buf).map_err(|_| {
                        IoError::new(ErrorKind::InvalidData, "Header is not in ASCII")
                    })
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.head_deadline = self
            .head_timeout
            .map(|t| crate::util::clock::now_ms() + t.as_millis() as u64);
        self.head_bytes = 0;
        // llm-relay patch: wait until the previous request is done with its body; if it left
        // part of it unread (a refusal before reading, a drain cut short, a cut chunked body),
        // what follows is body, not a head: close rather than parse it as a request.
        self.next_header_source.wait_turn();
        if !self.body_end.load(std::sync::atomic::Ordering::SeqCst) {
            // the answer (a refusal before the body was read: 413, 503) is out; a client still
            // sending its body reads it only once it has sent it all
            self.linger(BODY_LINGER, BODY_LINGER_BYTES);
            return Err(ReadError::ReadIoError(IoError::new(
                ErrorKind::InvalidData,
                "the previous request's body was not read to its end",
            )));
        }
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let mut line = self.read_next_line().map_err(line_error)?;
                // llm-relay patch: empty lines before a request line are ignored (RFC 9112
                // section 2.2; some clients send a CRLF after a body), a few at most.
                for _ in 0..4 {
                    if !line.is_empty() {
                        break;
                    }
                    self.head_bytes = 0; // still idle: a timeout now closes silently
                    line = self.read_next_line().map_err(line_error)?;
                }

                parse_request_line(line.as_str())?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line().map_err(line_error)?;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= MAX_HEADERS {
                        return Err(too_large());
                    }
                    // llm-relay patch: obsolete line folding (RFC 9112 section 5.2), and
                    // whitespace before the first header, are refused, not glued or trimmed.
                    if line.as_str().starts_with([' ', '\t']) {
                        return Err(ReadError::Refused(Refusal::new(
                            400,
                            "invalid_header",
                            "a header line starts with whitespace (obsolete line folding); \
                             send each header on one line",
                        )));
                    }
                    headers.push(match Header::from_line(line) {
                        Ok(h) => h,
                        _ => {
                            return Err(ReadError::Refused(Refusal::new(
                                400,
                                "invalid_header",
                                "a header line is not `Name: value` (no colon, or whitespace \
                                 in the name)",
                            )))
                        }
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        self.body_end = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let request = crate::request::new_request_with_body_end(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            std::sync::Arc::clone(&self.body_end),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::Refused(r) => ReadError::Refused(r),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::Refused(Refusal::new(
                        417,
                        "expectation_failed",
                        "the only Expect value this server accepts is `100-continue`",
                    ))
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        {
            let rq = match self.read() {
                Ok(rq) => rq,
                Err(ReadError::Refused(refusal)) => {
                    self.refuse(&refusal);
                    return None; // we don't know where the next request would start
                }
                // llm-relay patch: an idle keep-alive connection that times out before a
                // new request began is closed silently; a 408 there could be read by the
                // client as the answer to the request it sends next.
                Err(ReadError::ReadIoError(ref err))
                    if matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
                        && self.head_bytes == 0 =>
                {
                    return None;
                }
                Err(ReadError::ReadIoError(ref err))
                    if matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) =>
                {
                    self.refuse(&Refusal::new(
                        408,
                        "request_timeout",
                        "the request head did not arrive in time; send the whole head at once",
                    ));
                    return None;
                }
                Err(ReadError::ReadIoError(_)) => return None,
            };

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses the request line of the request, eg. `GET / HTTP/1.1` (llm-relay patch: exactly
/// three parts separated by single spaces; a version other than 1.0 or 1.1 is a 505, since the
/// rest of what such a client sends is not HTTP/1 and cannot be read as requests).
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let malformed = || {
        ReadError::Refused(Refusal::new(
            400,
            "invalid_request_line",
            "the request line is not `METHOD /path HTTP/1.1`",
        ))
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let version = match version {
        "HTTP/1.0" => HTTPVersion(1, 0),
        "HTTP/1.1" => HTTPVersion(1, 1),
        v if is_http_version(v) => {
            return Err(ReadError::Refused(Refusal::new(
                505,
                "http_version_not_supported",
                format!(
                    "{} is not supported; this server speaks HTTP/1.1 and HTTP/1.0 (curl: drop \
                     --http2-prior-knowledge)",
                    v
                ),
            )))
        }
        _ => return Err(malformed()),
    };
    let method = method.parse().map_err(|_| malformed())?;
    if path.is_empty() {
        return Err(malformed());
    }
    Ok((method, path.to_owned(), version))
}

/// `HTTP/` followed by a digit, or by digit `.` digit (RFC 9112 section 2.3).
fn is_http_version(v: &str) -> bool {
    match v.strip_prefix("HTTP/").map(str::as_bytes) {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        // llm-relay patch: versions other than 1.0/1.1 are 505, malformed lines 400.
        let status = |line| match super::parse_request_line(line) {
            Err(super::ReadError::Refused(r)) => r.status,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(status("GET /health HTTP/2.0"), 505);
        assert_eq!(status("PRI * HTTP/2.0"), 505);
        assert_eq!(status("GET / HTTP/0.9"), 505);
        assert_eq!(status("GET / HTTP/3"), 505);
        assert_eq!(status("GET / HTTP/1.1 x"), 400);
        assert_eq!(status("GET  / HTTP/1.1"), 400);
        assert_eq!(status("GET / http/1.1"), 400);
    }
}

/// llm-relay patch: sorts a failed line read into a refusal (431, 400) or an I/O error.
fn line_error(e: IoError) -> ReadError {
    match e.kind() {
        ErrorKind::OutOfMemory => too_large(),
        ErrorKind::InvalidData => ReadError::Refused(Refusal::new(
            400,
            "invalid_header",
            "the request head has bytes outside ASCII; percent-encode the path and send header \
             values in ASCII",
        )),
        ErrorKind::InvalidInput => ReadError::Refused(Refusal::new(
            400,
            "invalid_header",
            "the request head has a bare CR or LF, or a NUL byte; end each line with CRLF",
        )),
        _ => ReadError::ReadIoError(e),
    }
}

fn too_large() -> ReadError {
    ReadError::Refused(Refusal::new(
        431,
        "request_header_fields_too_large",
        format!(
            "the request head has a line over {} KiB or more than {} headers",
            MAX_LINE / 1024,
            MAX_HEADERS
        ),
    ))
}
