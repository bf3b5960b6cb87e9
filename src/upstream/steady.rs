//! Waits for an upstream's bytes with a socket read timeout that stays the same from one wait to
//! the next ([`await_input`]), so a pooled connection's reads do not each cost a `setsockopt`.
//!
//! ureq hands its transport the time left until the call's deadline, which is a new value on
//! every wait (299.999 s, then 299.998 s on the next request), and its TCP transport sets the
//! socket's read timeout whenever the value changed: one system call a miss, ~11 % of them. Here
//! the transport below is given the time left rounded down to whole seconds, the same value
//! request after request; a wait it ends early because of the rounding is resumed with what is
//! left, so no wait ends before the deadline and none runs past it.

use std::time::{Duration, Instant};

use ureq::unversioned::transport::{NextTimeout, Transport};

/// Waits below for input until `timeout` (the earlier of its deadline and its per-read cap),
/// giving the transport below steady timeouts (see the module's comment). Returns what the
/// transport below returns.
pub fn await_input<T: Transport>(below: &mut T, timeout: NextTimeout) -> Result<bool, ureq::Error> {
    let whole = timeout.for_read();
    if whole.after.is_zero() || whole.after.is_not_happening() {
        return below.await_input(timeout);
    }
    let limit: Duration = *whole.after;
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        let step = steady(left);
        let next = NextTimeout {
            after: step.into(),
            reason: whole.reason,
            per_read: None,
            per_write: timeout.per_write,
        };
        match below.await_input(next) {
            Err(ureq::Error::Timeout(_)) if step < left => continue,
            other => return other,
        }
    }
}

/// `left` rounded down to whole seconds; under a second, `left` itself.
pub(super) fn steady(left: Duration) -> Duration {
    if left < Duration::from_secs(1) {
        left
    } else {
        Duration::from_secs(left.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use ureq::unversioned::transport::time::Duration as UreqDuration;
    use ureq::unversioned::transport::{Buffers, LazyBuffers};
    use ureq::Timeout;

    use super::*;

    /// A socket that never answers: each wait sleeps its whole timeout (or returns at once with
    /// `instant`), then times out; it records the timeouts it was given.
    #[derive(Debug)]
    struct Silent {
        buffers: LazyBuffers,
        given: Vec<Option<Duration>>,
        instant: bool,
    }

    impl Transport for Silent {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, _: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            Ok(())
        }
        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            let timeout = timeout.for_read();
            if timeout.after.is_zero() {
                return Err(ureq::Error::Timeout(timeout.reason));
            }
            let after = timeout.not_zero().map(|d| *d);
            self.given.push(after);
            match after {
                Some(d) if !self.instant => std::thread::sleep(d),
                _ => {}
            }
            Err(ureq::Error::Timeout(timeout.reason))
        }
        fn is_open(&mut self) -> bool {
            true
        }
        fn is_tls(&self) -> bool {
            false
        }
    }

    fn silent(instant: bool) -> Silent {
        Silent {
            buffers: LazyBuffers::new(64, 64),
            given: Vec::new(),
            instant,
        }
    }

    fn timeout(after: Duration, per_read: Option<Duration>) -> NextTimeout {
        NextTimeout {
            after: after.into(),
            reason: Timeout::RecvResponse,
            per_read: per_read.map(UreqDuration::from),
            per_write: None,
        }
    }

    #[test]
    fn waits_of_nearly_the_same_length_give_the_socket_the_same_timeout() {
        // a wait that ends (here: the answer came) in its first round gives one timeout
        #[derive(Debug)]
        struct Answers(LazyBuffers, Vec<Option<Duration>>);
        impl Transport for Answers {
            fn buffers(&mut self) -> &mut dyn Buffers {
                &mut self.0
            }
            fn transmit_output(&mut self, _: usize, _: NextTimeout) -> Result<(), ureq::Error> {
                Ok(())
            }
            fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
                self.1.push(timeout.for_read().not_zero().map(|d| *d));
                Ok(true)
            }
            fn is_open(&mut self) -> bool {
                true
            }
            fn is_tls(&self) -> bool {
                false
            }
        }
        let mut below = Answers(LazyBuffers::new(64, 64), Vec::new());
        for left_us in [299_999_990, 299_999_400, 299_000_001, 299_999_999] {
            let t = timeout(Duration::from_micros(left_us), None);
            assert!(await_input(&mut below, t).unwrap());
        }
        let expected = Some(Duration::from_secs(299));
        assert_eq!(below.1, vec![expected; 4]);
        // the per-read cap counts when it is the shorter
        let t = timeout(Duration::from_secs(300), Some(Duration::from_millis(7_500)));
        assert!(await_input(&mut below, t).unwrap());
        assert_eq!(below.1.last(), Some(&Some(Duration::from_secs(7))));
    }

    #[test]
    fn a_wait_cut_short_by_the_rounding_resumes_until_the_deadline_and_not_past_it() {
        let mut below = silent(false);
        let started = Instant::now();
        let t = timeout(Duration::from_millis(1_250), None);
        let e = await_input(&mut below, t).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(e, ureq::Error::Timeout(Timeout::RecvResponse)),
            "{e:?}"
        );
        assert!(took >= Duration::from_millis(1_250), "{took:?}");
        assert_eq!(below.given.first(), Some(&Some(Duration::from_secs(1))));
        assert!(below.given.len() >= 2, "{:?}", below.given);
        // the rest, under a second, is given as it is
        let rest = below.given.get(1).copied().flatten().unwrap_or_default();
        assert!(rest <= Duration::from_millis(250), "{rest:?}");
    }

    #[test]
    fn no_timeout_and_an_expired_one_go_below_as_they_are() {
        let mut below = silent(true);
        let e = await_input(&mut below, NextTimeout::default()).unwrap_err();
        assert!(matches!(e, ureq::Error::Timeout(_)), "{e:?}");
        assert_eq!(below.given, vec![None], "no timeout: none set");
        let mut below = silent(true);
        let e = await_input(&mut below, timeout(Duration::ZERO, None)).unwrap_err();
        assert!(
            matches!(e, ureq::Error::Timeout(Timeout::RecvResponse)),
            "{e:?}"
        );
        assert!(below.given.is_empty(), "an expired wait reaches no socket");
    }
}
