//! The idle bound on an upstream connection once its response head is in: a transport layer
//! over ureq's own that caps every read of a response body, and every write of a request, at
//! `idle_timeout_ms`, whatever the call's mode.
//!
//! ureq's `timeout_per_read` would also cap the wait for the response head, which a non-streamed
//! answer may legitimately spend minutes on (`first_byte_timeout_ms`); this layer caps only the
//! reads of the body phase. A read or write that times out here fails with an I/O `TimedOut`
//! error whose message names the phase and the limit, so every caller (whole answers, streams,
//! pass-through) reports it the same way.
//!
//! The layer also owns the buffers ureq works in (`slim::SlimBuffers`, small while a stream is
//! open) and copies bytes between them and the transport below, whose buffers are small.

use std::fmt;
use std::io;

use ureq::unversioned::transport::time::Duration as UreqDuration;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Timeout;

use super::slim::{copy_prefix, SlimBuffers};
use super::steady;

/// Chained after ureq's default connector: wraps each connection in an [`IdleTransport`].
#[derive(Debug, Clone, Copy)]
pub struct IdleConnector {
    pub idle: std::time::Duration,
}

impl<In: Transport> Connector<In> for IdleConnector {
    type Out = IdleTransport<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| IdleTransport {
            inner,
            idle: self.idle,
            buffers: SlimBuffers::default(),
            held: None,
            sending: false,
            used: false,
        }))
    }
}

/// One upstream connection whose body reads and whose writes wait at most `idle`.
pub struct IdleTransport<T> {
    inner: T,
    idle: std::time::Duration,
    buffers: SlimBuffers,
    /// A request's head, held at the start of the output buffer of the transport below until
    /// the next write joins it (its body: one write and one TCP segment for both, where ureq
    /// made two) or the response is awaited; with the timeout to send it with.
    held: Option<(usize, NextTimeout)>,
    /// True from a request's first write until its response is awaited.
    sending: bool,
    /// True from any read or write until the next [`Transport::is_open`].
    used: bool,
}

impl<T> fmt::Debug for IdleTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleTransport")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// `limit`, or `idle` if that is shorter (or there is no limit).
fn capped(limit: Option<UreqDuration>, idle: std::time::Duration) -> Option<UreqDuration> {
    let idle = UreqDuration::from(idle);
    Some(match limit {
        Some(l) if l < idle => l,
        _ => idle,
    })
}

impl<T: Transport> IdleTransport<T> {
    /// The error of an I/O wait that hit the idle cap, naming the phase.
    fn silent(&self, what: &str) -> ureq::Error {
        ureq::Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} for {} ms (idle_timeout_ms)", self.idle.as_millis()),
        ))
    }
}

impl<T: Transport> IdleTransport<T> {
    /// Writes `amount` bytes of our output through the transport below, a buffer of it at a time.
    fn transmit(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let first = !self.sending;
        self.sending = true;
        let below = self.inner.buffers().output();
        let at = self.held.map_or(0, |(held, _)| held);
        match below.get_mut(at..at + amount) {
            // the head is held; what follows it is sent with it, if it fits behind it
            Some(room) => {
                let ours = self.buffers.output().get(..amount).unwrap_or_default();
                room.copy_from_slice(ours);
                if first {
                    self.held = Some((amount, timeout));
                    return Ok(());
                }
                self.held = None;
                return self.inner.transmit_output(at + amount, timeout);
            }
            None => self.flush()?,
        }
        let mut sent = 0;
        while sent < amount {
            let below = self.inner.buffers().output();
            let ours = self.buffers.output().get(sent..amount).unwrap_or_default();
            let n = copy_prefix(below, ours);
            if n == 0 {
                break;
            }
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        Ok(())
    }

    /// Sends the held request head, if any.
    fn flush(&mut self) -> Result<(), ureq::Error> {
        match self.held.take() {
            Some((held, timeout)) => self.inner.transmit_output(held, timeout),
            None => Ok(()),
        }
    }

    /// Moves input the transport below holds into our buffer, first waiting for some if it holds
    /// none. False when the connection gave nothing (closed, or our buffer is full).
    fn receive(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        if self.inner.buffers().input().is_empty()
            && !steady::await_input(&mut self.inner, timeout)?
        {
            return Ok(false);
        }
        let below = self.inner.buffers().input();
        let room = self.buffers.input_append_buf();
        let n = copy_prefix(room, below);
        self.inner.buffers().input_consume(n);
        self.buffers.input_appended(n);
        Ok(n > 0)
    }
}

impl<T: Transport> Transport for IdleTransport<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.used = true;
        let mut timeout = timeout;
        timeout.per_write = capped(timeout.per_write, self.idle);
        match self.transmit(amount, timeout) {
            Err(ureq::Error::Timeout(Timeout::PerWrite)) => {
                Err(self.silent("the upstream accepted no byte of the request"))
            }
            other => other,
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.used = true;
        self.sending = false;
        if let Err(e) = self.flush() {
            return Err(match e {
                ureq::Error::Timeout(Timeout::PerWrite) => {
                    self.silent("the upstream accepted no byte of the request")
                }
                e => e,
            });
        }
        match timeout.reason {
            Timeout::RecvResponse => self.buffers.request_sent(),
            Timeout::RecvBody => self.buffers.reading_body(),
            _ => {}
        }
        // `RecvBody` is the phase after the response head (the agent sets that budget, so it
        // is the one a body read reports); the head itself keeps its own limits.
        if timeout.reason != Timeout::RecvBody {
            return self.receive(timeout);
        }
        let mut timeout = timeout;
        timeout.per_read = capped(timeout.per_read, self.idle);
        match self.receive(timeout) {
            Err(ureq::Error::Timeout(Timeout::PerRead)) => {
                Err(self.silent("no byte of the answer body"))
            }
            other => other,
        }
    }

    /// ureq's pool asks twice per exchange: when the connection comes back after a response
    /// (right after our last read) and when a request takes it out. The second probe sees all
    /// the first would (bytes nobody asked for, a close) and what came since, so only it reaches
    /// the socket: a probe there is three system calls (non-blocking on, a read, off).
    fn is_open(&mut self) -> bool {
        // bytes below that no response took: the next response would start with them
        if !self.inner.buffers().input().is_empty() {
            return false;
        }
        if std::mem::take(&mut self.used) {
            return true;
        }
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use ureq::unversioned::transport::LazyBuffers;

    use super::*;

    /// The transport below: a socket that records each write it is asked to make.
    #[derive(Debug)]
    struct Wire {
        buffers: LazyBuffers,
        writes: Vec<Vec<u8>>,
        /// How many times the pool's liveness probe reached the socket.
        probes: usize,
    }

    impl Transport for Wire {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            let bytes = self.buffers.output().get(..amount).unwrap_or_default();
            self.writes.push(bytes.to_vec());
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            self.probes += 1;
            true
        }
        fn is_tls(&self) -> bool {
            false
        }
    }

    /// A connection whose transport below has `below` bytes of output buffer.
    fn connection(below: usize) -> IdleTransport<Wire> {
        IdleTransport {
            inner: Wire {
                buffers: LazyBuffers::new(below, below),
                writes: Vec::new(),
                probes: 0,
            },
            idle: std::time::Duration::from_secs(5),
            buffers: SlimBuffers::default(),
            held: None,
            sending: false,
            used: false,
        }
    }

    /// Writes `bytes` the way ureq does: into our output buffer, then one `transmit_output`.
    fn write(t: &mut IdleTransport<Wire>, bytes: &[u8]) {
        let n = copy_prefix(t.buffers().output(), bytes);
        assert_eq!(n, bytes.len(), "a test write fits the output buffer");
        t.transmit_output(n, NextTimeout::default()).unwrap();
    }

    fn await_response(t: &mut IdleTransport<Wire>) {
        let timeout = NextTimeout {
            reason: Timeout::RecvResponse,
            ..NextTimeout::default()
        };
        assert!(!t.await_input(timeout).unwrap(), "the wire has no answer");
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn a_head_waits_for_its_body_and_both_go_in_one_write() {
        let mut t = connection(4096);
        let (head, body) = (bytes(300, 1), bytes(900, 7));
        write(&mut t, &head);
        assert!(t.inner.writes.is_empty(), "the head alone was sent");
        write(&mut t, &body);
        assert_eq!(t.inner.writes, vec![[head, body].concat()]);
        await_response(&mut t);
        assert_eq!(t.inner.writes.len(), 1, "nothing more to send");
    }

    #[test]
    fn a_head_without_a_body_goes_when_the_answer_is_awaited() {
        let mut t = connection(4096);
        let head = bytes(200, 3);
        write(&mut t, &head);
        assert!(t.inner.writes.is_empty());
        await_response(&mut t);
        assert_eq!(t.inner.writes, vec![head]);
    }

    #[test]
    fn a_body_too_big_to_join_the_head_follows_it_whole_and_in_order() {
        let mut t = connection(1024);
        let (head, body) = (bytes(300, 1), bytes(5000, 9));
        write(&mut t, &head);
        write(&mut t, &body);
        let writes = &t.inner.writes;
        assert_eq!(writes.first(), Some(&head), "the head went first, alone");
        assert!(writes.iter().all(|w| w.len() <= 1024), "{:?}", writes.len());
        assert_eq!(writes.concat(), [head, body].concat());
    }

    #[test]
    fn later_writes_of_a_body_follow_the_joined_first_in_order() {
        let mut t = connection(4096);
        let parts = [bytes(250, 1), bytes(100, 2), bytes(3000, 3), bytes(40, 4)];
        for part in &parts {
            write(&mut t, part);
        }
        await_response(&mut t);
        let writes = &t.inner.writes;
        let first = [parts[0].clone(), parts[1].clone()].concat();
        assert_eq!(writes.first(), Some(&first));
        assert_eq!(writes.concat(), parts.concat());
    }

    #[test]
    fn a_head_bigger_than_the_buffer_below_is_sent_in_pieces_and_its_body_after_it() {
        let mut t = connection(1024);
        let (head, body) = (bytes(2500, 5), bytes(600, 6));
        write(&mut t, &head);
        write(&mut t, &body);
        await_response(&mut t);
        assert_eq!(t.inner.writes.concat(), [head, body].concat());
    }

    #[test]
    fn each_request_on_a_kept_connection_holds_its_own_head() {
        let mut t = connection(4096);
        for seed in [1, 2] {
            let (head, body) = (bytes(120, seed), bytes(80, seed + 10));
            write(&mut t, &head);
            write(&mut t, &body);
            await_response(&mut t);
            assert_eq!(t.inner.writes.pop(), Some([head, body].concat()));
            assert!(t.inner.writes.is_empty());
        }
    }

    #[test]
    fn only_the_probe_of_a_connection_taken_from_the_pool_reaches_the_socket() {
        let mut t = connection(4096);
        write(&mut t, &bytes(100, 1));
        await_response(&mut t);
        assert!(
            t.is_open(),
            "coming back to the pool right after its exchange"
        );
        assert_eq!(t.inner.probes, 0);
        assert!(t.is_open(), "taken out of the pool for the next request");
        assert_eq!(t.inner.probes, 1);
        // bytes no response took: the next response would start with them
        let room = t.inner.buffers.input_append_buf();
        let n = copy_prefix(room, b"HTTP/1.1 200 OK\r\n");
        t.inner.buffers.input_appended(n);
        assert!(!t.is_open());
    }
}
