//! The idle bound on an upstream connection once its response head is in: a transport layer
//! over ureq's own that caps every read of a response body, and every write of a request, at
//! `idle_timeout_ms`, whatever the call's mode.
//!
//! ureq's `timeout_per_read` would also cap the wait for the response head, which a non-streamed
//! answer may legitimately spend minutes on (`first_byte_timeout_ms`); this layer caps only the
//! reads of the body phase. A read or write that times out here fails with an I/O `TimedOut`
//! error whose message names the phase and the limit, so every caller (whole answers, streams,
//! pass-through) reports it the same way.

use std::fmt;
use std::io;

use ureq::unversioned::transport::time::Duration as UreqDuration;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Timeout;

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
        }))
    }
}

/// One upstream connection whose body reads and whose writes wait at most `idle`.
pub struct IdleTransport<T> {
    inner: T,
    idle: std::time::Duration,
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

impl<T: Transport> Transport for IdleTransport<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let mut timeout = timeout;
        timeout.per_write = capped(timeout.per_write, self.idle);
        match self.inner.transmit_output(amount, timeout) {
            Err(ureq::Error::Timeout(Timeout::PerWrite)) => {
                Err(self.silent("the upstream accepted no byte of the request"))
            }
            other => other,
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        // `RecvBody` is the phase after the response head (the agent sets that budget, so it
        // is the one a body read reports); the head itself keeps its own limits.
        if timeout.reason != Timeout::RecvBody {
            return self.inner.await_input(timeout);
        }
        let mut timeout = timeout;
        timeout.per_read = capped(timeout.per_read, self.idle);
        match self.inner.await_input(timeout) {
            Err(ureq::Error::Timeout(Timeout::PerRead)) => {
                Err(self.silent("no byte of the answer body"))
            }
            other => other,
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
