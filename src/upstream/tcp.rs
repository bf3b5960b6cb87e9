//! The TCP connections to upstreams ([`TcpConnector`], [`Tcp`]): ureq's own TCP transport with
//! one change, the liveness probe of a pooled connection.
//!
//! ureq's pool asks a connection it hands out whether it is still open; its TCP transport
//! answers by switching the socket to non-blocking, reading a byte and switching back: three
//! system calls on every miss (a third of them). Here it is one `recv` with `MSG_PEEK |
//! MSG_DONTWAIT` (Linux; elsewhere the three calls as before). Connecting (each resolved
//! address in turn, the connect budget shared between them as ureq does), `TCP_NODELAY`, the
//! agent's shutdown handle and the socket timeouts (set only when they change) are ureq's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::ResolvedSocketAddrs;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::Timeout;

/// Opens a [`Tcp`] connection unless a connector before it (a SOCKS or `CONNECT` proxy) made
/// one already, which it passes on.
#[derive(Debug, Default)]
pub struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, Tcp>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(chained) = chained {
            return Ok(Some(Either::A(chained)));
        }
        let stream = connect(&details.addrs, details.timeout)?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        let transport = Tcp {
            stream: Arc::new(stream),
            buffers,
            read_timeout: None,
            write_timeout: None,
        };
        let handle = Arc::downgrade(&transport.stream) as Weak<dyn ShutdownHandle>;
        (details.register_shutdown)(handle)?;
        Ok(Some(Either::B(transport)))
    }
}

/// The shortest connect attempt an address gets.
const MIN_PER_ADDRESS: Duration = Duration::from_millis(10);

/// Connects to the first of `addrs` that answers. With a budget, each address gets a share of
/// it (halving from the first, as ureq and curl do: 8/15, 4/15, ... of it for four addresses).
pub(super) fn connect(
    addrs: &ResolvedSocketAddrs,
    timeout: NextTimeout,
) -> Result<TcpStream, ureq::Error> {
    let budget = timeout.not_zero().map(|d| *d);
    let started = Instant::now();
    let count = i32::try_from(addrs.len()).unwrap_or(i32::MAX);
    let total_weight = 2.0 * (1.0 - 0.5_f64.powi(count));
    let mut weight = 1.0_f64;
    let mut last: Option<ureq::Error> = None;
    for addr in addrs.iter() {
        // (`try_`: a budget near `Duration::MAX` must not panic on its way through f64)
        let share = |b: Duration| {
            Duration::try_from_secs_f64(b.as_secs_f64() * weight / total_weight).unwrap_or(b)
        };
        let per_address = budget.map(|b| share(b).max(MIN_PER_ADDRESS));
        match connect_one(addr, per_address) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if budget.is_some_and(|b| started.elapsed() > b) {
                    return Err(ureq::Error::Timeout(timeout.reason));
                }
                last = Some(ureq::Error::Timeout(Timeout::Connect));
            }
            Err(e) if address_specific(&e) => last = Some(ureq::Error::Io(e)),
            Err(e) => return Err(ureq::Error::Io(e)),
        }
        weight /= 2.0;
    }
    Err(last.unwrap_or_else(|| {
        ureq::Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "no address to connect to",
        ))
    }))
}

fn connect_one(addr: &SocketAddr, within: Option<Duration>) -> io::Result<TcpStream> {
    let stream = match within {
        Some(d) => TcpStream::connect_timeout(addr, d),
        None => TcpStream::connect(addr),
    };
    stream.map_err(would_block_is_timeout)
}

/// A failed connect that says nothing of the host's other addresses (ureq's list).
fn address_specific(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

/// Socket timeouts surface as `WouldBlock` on Linux.
fn would_block_is_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, e)
    } else {
        e
    }
}

/// One upstream TCP connection.
pub struct Tcp {
    /// Shared (weakly) with the agent's shutdown handle.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// The timeouts the socket has now, to set them only when they change.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl std::fmt::Debug for Tcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcp")
            .field("peer", &self.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// `Some(timeout)` for a wait that has one (ureq gives an expired one a second, never zero).
fn wait_of(timeout: &NextTimeout) -> Option<Duration> {
    timeout.not_zero().map(|d| *d)
}

impl Tcp {
    fn set_read_timeout(&mut self, wanted: Option<Duration>) -> io::Result<()> {
        if self.read_timeout != wanted {
            self.stream.set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }

    fn set_write_timeout(&mut self, wanted: Option<Duration>) -> io::Result<()> {
        if self.write_timeout != wanted {
            self.stream.set_write_timeout(wanted)?;
            self.write_timeout = wanted;
        }
        Ok(())
    }
}

/// An I/O error as ureq reports it: a timed-out wait is `Timeout(reason)`.
fn reported(e: io::Error, reason: Timeout) -> ureq::Error {
    let e = would_block_is_timeout(e);
    if e.kind() == io::ErrorKind::TimedOut {
        ureq::Error::Timeout(reason)
    } else {
        ureq::Error::Io(e)
    }
}

impl Transport for Tcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.set_write_timeout(wait_of(&timeout))?;
        let output = self.buffers.output().get(..amount).unwrap_or_default();
        (&*self.stream)
            .write_all(output)
            .map_err(|e| reported(e, timeout.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let wait = wait_of(&timeout);
        self.set_read_timeout(wait)?;
        let started = Instant::now();
        let amount = loop {
            let input = self.buffers.input_append_buf();
            match (&*self.stream).read(input) {
                // Linux does not restart a socket read with a timeout after a signal: go on
                // with what is left of it (ureq's `read_retrying_interrupts`)
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let Some(wait) = wait else {
                        return Err(ureq::Error::Io(e));
                    };
                    let left = wait.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(ureq::Error::Timeout(timeout.reason));
                    }
                    self.set_read_timeout(Some(left))?;
                }
                Err(e) => return Err(reported(e, timeout.reason)),
                Ok(n) => break n,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        probe(&self.stream)
    }
}

/// Whether a connection with nothing to read is still open: no byte waiting (bytes nobody
/// asked for make it unusable) and no close from the other end.
#[cfg(target_os = "linux")]
pub(super) fn probe(stream: &TcpStream) -> bool {
    // linux/socket.h; socket2 takes the flags as a number
    const MSG_PEEK: i32 = 0x2;
    const MSG_DONTWAIT: i32 = 0x40;
    use std::mem::MaybeUninit;
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    let socket = socket2::SockRef::from(stream);
    match socket.recv_with_flags(&mut byte, MSG_PEEK | MSG_DONTWAIT) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        // a close (0) or bytes nobody asked for
        Ok(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn probe(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut reader = stream;
    let open = matches!(reader.read(&mut [0]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;
    use std::net::TcpListener;

    use super::*;

    /// A connected pair: our end (the relay's) and the peer (the upstream's).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (ours, peer)
    }

    #[test]
    fn the_probe_tells_an_open_quiet_connection_from_a_closed_or_chatty_one() {
        let (ours, peer) = pair();
        assert!(probe(&ours), "open, nothing sent");
        assert!(probe(&ours), "asking does not change it");
        // the probe took no byte: a peeked byte is still there to read
        let (ours2, mut peer2) = pair();
        peer2.write_all(b"x").unwrap();
        wait_readable(&ours2);
        assert!(!probe(&ours2), "a byte nobody asked for");
        let mut got = [0u8; 1];
        (&ours2).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        drop(peer);
        wait_readable(&ours);
        assert!(!probe(&ours), "closed by the peer");
        // the socket is still blocking (the fallback switches it back; this one never changes it)
        ours2
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = (&ours2).read(&mut got).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
    }

    /// Waits until `s` has something to read (a byte or the close).
    fn wait_readable(s: &TcpStream) {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let socket = socket2::SockRef::from(s);
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        let _ = socket.peek(&mut byte);
        s.set_read_timeout(None).unwrap();
    }

    #[test]
    fn an_address_that_refuses_is_passed_over_for_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // a port nothing listens on any more
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut addrs = ResolvedSocketAddrs::from_fn(|_| closed);
        addrs.truncate(0);
        addrs.push(closed);
        addrs.push(open);
        let budget = NextTimeout {
            after: Duration::from_secs(5).into(),
            reason: Timeout::Connect,
            per_read: None,
            per_write: None,
        };
        let stream = connect(&addrs, budget).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
        // only refusals: the last one is the error
        addrs.truncate(1);
        let e = connect(&addrs, budget).unwrap_err();
        assert!(
            matches!(&e, ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused),
            "{e:?}"
        );
        // no budget at all, and one near `Duration::MAX`: no panic on the way
        let forever = NextTimeout {
            after: Duration::MAX.into(),
            ..budget
        };
        addrs.truncate(0);
        addrs.push(open); // one address: all of the budget is its share
        assert!(connect(&addrs, forever).is_ok());
        assert!(connect(&addrs, NextTimeout::default()).is_ok());
    }

    #[test]
    fn timeouts_reach_the_socket_only_when_they_change() {
        let (ours, mut peer) = pair();
        let mut t = Tcp {
            stream: Arc::new(ours),
            buffers: LazyBuffers::new(1024, 1024),
            read_timeout: None,
            write_timeout: None,
        };
        let wait = |secs| NextTimeout {
            after: Duration::from_secs(secs).into(),
            reason: Timeout::RecvResponse,
            per_read: None,
            per_write: None,
        };
        peer.write_all(b"abc").unwrap();
        assert!(t.await_input(wait(7)).unwrap());
        assert_eq!(t.read_timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            t.stream.read_timeout().unwrap(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(t.buffers.input(), b"abc");
        // a wait that times out reports ureq's timeout with the wait's reason
        let e = t
            .await_input(NextTimeout {
                after: Duration::from_millis(30).into(),
                ..wait(0)
            })
            .unwrap_err();
        assert!(
            matches!(e, ureq::Error::Timeout(Timeout::RecvResponse)),
            "{e:?}"
        );
        // an expired wait reaches no socket
        let e = t.await_input(wait(0)).unwrap_err();
        assert!(matches!(e, ureq::Error::Timeout(_)), "{e:?}");
        // the other end's close: no input, not an error
        t.buffers.input_consume(3);
        drop(peer);
        assert!(!t.await_input(wait(7)).unwrap());
    }
}
