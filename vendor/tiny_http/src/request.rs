use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::notify::Notify;
use crate::util::{CutIsError, EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};
use chunked_transfer::Decoder;

thread_local! {
    /// llm-relay patch: the buffer [`Request::respond_bytes`] writes a whole answer from, kept
    /// by each thread for its next answer.
    static ANSWER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// llm-relay patch: a thread keeps its answer buffer while it holds at most this many bytes
/// (most JSON answers fit; a thousand threads that answered keep at most 8 MiB).
const KEPT_ANSWER_BYTES: usize = 8 * 1024;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Notify>,
}

struct NotifyOnDrop<R> {
    sender: Option<Notify>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.send(); // llm-relay patch: the connection may be gone
        }
    }
}

/// llm-relay patch: see [`Request::into_writer_or_close`].
pub struct Completion {
    sender: Option<Notify>,
}

impl Completion {
    /// The response was written whole: the connection may serve a next request.
    pub fn complete(mut self) {
        if let Some(sender) = self.sender.take() {
            sender.send();
        }
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// llm-relay patch: the request's framing cannot be trusted (see `refusal::body_framing`).
    Refused(crate::refusal::Refusal),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    source_data: R,
    writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    new_request_with_body_end(
        secure,
        method,
        path,
        version,
        headers,
        remote_addr,
        source_data,
        writer,
        Arc::new(AtomicBool::new(false)),
    )
}

/// llm-relay patch: [`new_request`] that sets `body_end` once the request's body has been read
/// (or drained) to the end its framing gives. Until it is set, what follows on the connection
/// is not known to be the next request's head: `ClientConnection` closes the connection
/// instead of reading it (an unread body that holds a request would otherwise be served as
/// one, request smuggling behind a proxy that shares connections).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_request_with_body_end<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    writer: W,
    body_end: Arc<AtomicBool>,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // llm-relay patch: framing per RFC 9112 section 6; a request whose body length is in
    // doubt is refused (upstream took the first Content-Length, ignored an unparsable one and
    // decoded any Transfer-Encoding as chunked).
    let framing =
        crate::refusal::body_framing(&headers, &version).map_err(RequestCreationError::Refused)?;
    let content_length = match framing {
        crate::refusal::BodyFraming::Length(n) => Some(n),
        _ => None,
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    // llm-relay patch: `Connection: upgrade` no longer makes the rest of the stream the body.
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            body_end.store(true, Ordering::SeqCst);
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= 1024 && !expects_continue {
            // if the content-length is small enough, we just read everything into a buffer

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            body_end.store(true, Ordering::SeqCst);
            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let source = CutIsError::new(source_data);
            let (data_reader, _) = EqualReader::new(source, content_length); // TODO:
            let data_reader = data_reader.with_done(body_end);
            Box::new(FusedReader::new(data_reader)) as Box<dyn Read + Send + 'static>
        }
    } else if framing == crate::refusal::BodyFraming::Chunked {
        let source = CutIsError::new(source_data);
        let decoder = EndMark {
            inner: Decoder::new(source),
            end: body_end,
        };
        Box::new(FusedReader::new(decoder)) as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        body_end.store(true, Ordering::SeqCst);
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        notify_when_responded: None,
    })
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender: Some(sender),
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    /// }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender: Some(sender),
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// llm-relay patch: like [`into_writer`](Request::into_writer), but in handler mode the
    /// connection serves a next request only once [`Completion::complete`] is called; dropping
    /// the `Completion` without calling it closes the connection. A response cut short (fewer
    /// bytes than its `Content-Length`, no terminating chunk) must not be followed by another on
    /// the same connection: the client would read that one as the rest of the first.
    pub fn into_writer_or_close(mut self) -> (Box<dyn Write + Send + 'static>, Completion) {
        let writer = self.extract_writer_impl();
        let completion = Completion {
            sender: self.notify_when_responded.take(),
        };
        (writer, completion)
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(); // llm-relay patch: the connection may be gone
        }
        res
    }

    /// llm-relay patch: answers with `status`, the (name, value) `headers` and a whole `body`:
    /// what `respond` writes for `Response::from_data(body)` with that status and each header
    /// that `Header::from_bytes` takes added, the same bytes. A header that is not ASCII, or
    /// has a CR or LF (it would split the head), is left out. The common answer (HTTP/1.1 or
    /// later, not `HEAD`, no `TE` asked, a status with a body, a body under the chunked
    /// threshold, plain headers none of which the server writes or treats apart) is written
    /// without building a `Response` (two allocations a header, a boxed reader, scans of both
    /// header lists): ~1,300 instructions less a cache hit. Any other answer takes the generic
    /// path.
    pub fn respond_bytes<N: AsRef<str>, V: AsRef<str>, B: AsRef<[u8]> + Into<Vec<u8>>>(
        mut self,
        status: u16,
        headers: &[(N, V)],
        body: B,
    ) -> Result<(), IoError> {
        if !self.plain_answer(status, headers, body.as_ref().len()) {
            let mut response = Response::from_data(body).with_status_code(status);
            for (name, value) in headers {
                let (name, value) = (name.as_ref(), value.as_ref());
                if splits_head(name) || splits_head(value) {
                    continue;
                }
                if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                    response.add_header(h);
                }
            }
            return self.respond(response);
        }
        let body = body.as_ref();
        // head and body in one buffer, one write; the buffer is the thread's own, kept for its
        // next answer (an answer's buffer is above the allocator's per-thread cache of small
        // chunks: a fresh one a request took its slow path twice)
        let mut out = ANSWER.take();
        out.clear();
        crate::response::plain_head(
            &mut out,
            &self.http_version,
            StatusCode(status),
            headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())),
            body.len(),
        );
        out.extend_from_slice(body);
        let mut writer = self.extract_writer_impl();
        let res = Self::ignore_client_closing_errors(writer.write_all(&out))
            .and_then(|()| Self::ignore_client_closing_errors(writer.flush()));
        if out.capacity() <= KEPT_ANSWER_BYTES {
            ANSWER.set(out);
        }
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(); // the connection may be gone
        }
        res
    }

    /// Whether [`Request::respond_bytes`] may write its answer without a `Response`.
    fn plain_answer<N: AsRef<str>, V: AsRef<str>>(
        &self,
        status: u16,
        headers: &[(N, V)],
        len: usize,
    ) -> bool {
        const APART: [&str; 7] = [
            "Connection",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Content-Length",
            "Date",
            "Server",
        ];
        let mut content_types = 0;
        self.method != Method::Head
            && self.http_version >= HTTPVersion(1, 1)
            && (200..=999).contains(&status)
            && status != 204
            && status != 304
            && len < crate::response::DEFAULT_CHUNKED_THRESHOLD
            && !self.headers.iter().any(|h| h.field.equiv("TE"))
            && headers.iter().all(|(n, v)| {
                let (n, v) = (n.as_ref(), v.as_ref());
                if n.eq_ignore_ascii_case("Content-Type") {
                    content_types += 1;
                }
                n.is_ascii()
                    && v.is_ascii()
                    && !splits_head(n)
                    && !splits_head(v)
                    && !APART.iter().any(|a| a.eq_ignore_ascii_case(n))
                    && content_types <= 1
            })
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify(mut self, sender: Notify) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                sender.send(); // llm-relay patch: the connection may be gone
            }
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}

/// llm-relay patch: sets `end` when the chunked body has been decoded to its last chunk (a
/// chunked body the server drops unread is not drained: the connection is closed instead).
struct EndMark<R> {
    inner: R,
    end: Arc<AtomicBool>,
}

impl<R: Read> Read for EndMark<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.end.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

/// llm-relay patch: whether a header name or value has a CR or LF, which would end its line
/// early and let the rest be read as another header or the body.
fn splits_head(text: &str) -> bool {
    memchr::memchr2(b'\r', b'\n', text.as_bytes()).is_some()
}
