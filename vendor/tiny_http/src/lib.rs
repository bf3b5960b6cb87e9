// llm-relay patch: vendored third-party code, not held to this project's lints.
#![allow(warnings, clippy::all)]
//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use keep::{keep_connections_here, take_kept_connection, KeptConnection};
pub use refusal::Refusal;
pub use request::{Completion, ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod accept;
mod client;
mod common;
mod connection;
mod head_scan;
mod keep;
mod refusal;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // llm-relay patch: the close flags and connection count shared with the accept thread
    shared: Arc<accept::Shared>,

    // llm-relay patch: disconnects once the accept thread has closed the listener
    listener_closed: std::sync::Mutex<Option<mpsc::Receiver<()>>>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

// building the SSL capabilities
#[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
compile_error!("Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time");
#[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
type SslContext = ();
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
type SslContext = crate::ssl::SslContextImpl;

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// llm-relay patch: an HTTP server whose accepted sockets time out reads and writes after
    /// `timeout` (a stalled client then gets a 408 or a closed connection).
    pub fn http_with_timeout<A>(
        addr: A,
        timeout: Duration,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        let listener = ConfigListenAddr::from_socket_addrs(addr)?.bind()?;
        Self::from_listener_with_timeout(listener, None, Some(timeout))
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_timeout(listener, ssl_config, None)
    }

    /// llm-relay patch: an HTTP server set up by `options` (socket timeouts, handler mode).
    pub fn http_with_options<A>(
        addr: A,
        options: HttpOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        let listener = ConfigListenAddr::from_socket_addrs(addr)?.bind()?;
        Self::from_listener_with_options(listener, None, options)
    }

    fn from_listener_with_timeout<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        socket_timeout: Option<Duration>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let options = match socket_timeout {
            Some(t) => HttpOptions::new().timeout(t),
            None => HttpOptions::new(),
        };
        Self::from_listener_with_options(listener, ssl_config, options)
    }

    fn from_listener_with_options<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        options: HttpOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let HttpOptions {
            timeout: socket_timeout,
            handler,
            max_connections,
            per_ip,
        } = options;
        let listener = listener.into();
        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        let messages = MessagesQueue::with_capacity(8);
        let shared = Arc::new(accept::Shared {
            close: AtomicBool::new(false),
            close_listener: AtomicBool::new(false),
            live: std::sync::atomic::AtomicUsize::new(0),
            per_ip: Default::default(),
        });
        let (closed, listener_closed) = mpsc::channel();
        let acceptor = accept::Acceptor {
            listener: server,
            ssl,
            timeout: socket_timeout,
            max_connections,
            per_ip,
            handler,
            messages: messages.clone(),
            shared: shared.clone(),
            closed,
            errors_log: Default::default(),
            refusals_log: Default::default(),
        };
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || acceptor.run())?;

        // result
        Ok(Server {
            messages,
            shared,
            listener_closed: std::sync::Mutex::new(Some(listener_closed)),
            listening_addr: local_addr,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server (llm-relay patch:
    /// upstream left this unimplemented).
    pub fn num_connections(&self) -> usize {
        self.shared.live.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// llm-relay patch: stops accepting and closes the listening socket, so new connections
    /// are refused by the kernel (a load balancer moves on at once). Connections already
    /// queued on the socket are accepted first, and every accepted connection is served as
    /// usual. Returns once the socket is closed (or after 2 s). Idempotent.
    pub fn close_listener(&self) {
        if self
            .shared
            .close_listener
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        self.wake_accept_thread();
        let waiter = self.listener_closed.lock().ok().and_then(|mut w| w.take());
        if let Some(waiter) = waiter {
            let _ = waiter.recv_timeout(Duration::from_secs(2));
        }
    }

    /// Connects briefly to ourselves so a blocked `accept()` returns and sees the close flags.
    fn wake_accept_thread(&self) {
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_secs(1)).map(Connection::from)
            }
            #[cfg(unix)]
            ListenAddr::Unix(addr) => match addr.as_pathname() {
                Some(path) => std::os::unix::net::UnixStream::connect(path).map(Connection::from),
                None => return,
            },
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

/// llm-relay patch: a request handler run on the connection's own thread (see
/// `HttpOptions::handler`).
pub type Handler = Arc<dyn Fn(Request) + Send + Sync + 'static>;

/// llm-relay patch: how `Server::http_with_options` sets up the server. Build it with
/// `HttpOptions::new()` and the methods below; fields are added as the fork grows.
#[derive(Clone, Default)]
pub struct HttpOptions {
    timeout: Option<Duration>,
    handler: Option<Handler>,
    max_connections: Option<usize>,
    per_ip: Option<accept::PerIp>,
}

impl HttpOptions {
    /// No socket timeouts, requests queued for `recv()` (upstream's behaviour).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every accepted socket times out reads and writes after `timeout`, and one request head
    /// may take at most `timeout` (408 beyond; see `Server::http_with_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Handler mode: each request is passed to `handler` on the thread that read it from its
    /// connection instead of being queued for `recv()` (which then sees no requests). The
    /// connection reads its next request only once this one is answered: `respond` returned,
    /// the writer of `into_writer` or `upgrade` was dropped, or the request was dropped
    /// (an unanswered request gets upstream's automatic 500). The handler may pass the
    /// request to another thread; the connection waits for the answer either way. A panic in
    /// the handler closes only that connection.
    pub fn handler(mut self, handler: Handler) -> Self {
        self.handler = Some(handler);
        self
    }

    /// At most `max` connections are served at once; one beyond is answered 503 (JSON body,
    /// `Retry-After: 1`) and closed by the accept thread at once, so descriptors and threads
    /// stay bounded. Unlimited by default.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// At most `max` connections from one client address are served at once (IPv4-mapped IPv6
    /// addresses count as their IPv4 address); one beyond is answered 503 and closed like one
    /// beyond `max_connections`. Addresses `exempt` says yes to (trusted proxies that carry
    /// many clients' connections) have no such limit. Unlimited by default; Unix sockets have
    /// no address and no limit.
    pub fn max_connections_per_ip(
        mut self,
        max: usize,
        exempt: impl Fn(std::net::IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.per_ip = Some(accept::PerIp {
            max,
            exempt: Arc::new(exempt),
        });
        self
    }
}

/// Reads the requests of one connection in turn and queues each for `recv()`.
fn serve_connection(client: ClientConnection, messages: &MessagesQueue<Message>) {
    if client.secure() {
        // Synchronization is needed for HTTPS requests to avoid a deadlock
        let (sender, receiver) = mpsc::channel();
        for rq in client {
            messages.push(
                rq.with_notify(util::notify::Notify::channel(sender.clone()))
                    .into(),
            );
            receiver.recv().unwrap();
        }
    } else {
        for rq in client {
            messages.push(rq.into());
        }
    }
}

/// llm-relay patch: a connection in handler mode, with what it needs to be served on after it
/// was parked (see `util::notify`).
pub(crate) struct Handled {
    client: ClientConnection,
    handler: Handler,
    pool: Arc<util::TaskPool>,
    /// Held while the connection is open (the server's count of open connections).
    _open: Box<dyn Send>,
    /// How many more times the connection goes back to the pool instead of being kept (see
    /// `keep`): set when its client was slow to send a next request.
    skip_keeping: u8,
}

/// llm-relay patch: answers the requests of one connection in turn through its handler, on
/// this thread. A request still unanswered when the handler returns (it was passed to another
/// thread) parks the connection and frees this thread; the answer's end serves the connection
/// on from a pool thread, or closes it if the answer was cut short.
pub(crate) fn serve_handled(mut conn: Handled) {
    use util::notify::{Notify, Resume};
    conn.client.restore_read_timeout();
    while let Some(rq) = conn.client.next() {
        let resume = Resume::new(Arc::clone(&conn.pool), serve_handled, keep::keep_here);
        let rq = rq.with_notify(Notify::resume(resume.clone()));
        let handler = Arc::clone(&conn.handler);
        let call = std::panic::AssertUnwindSafe(|| handler(rq));
        if std::panic::catch_unwind(call).is_err() {
            log::error!("request handler panicked; closing its connection");
            return;
        }
        match resume.park(conn) {
            Some(next) => conn = next,
            None => return,
        }
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread (unless it is gone)
        if !self.shared.close_listener.load(Relaxed) {
            self.wake_accept_thread();
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod llm_relay_tests;
