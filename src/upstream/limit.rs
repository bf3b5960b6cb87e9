//! Counters of in-flight upstream work: `max_concurrent_requests` (every upstream call) and the
//! share of `workers` that pass-through uploads may hold while a client streams a body. Beyond
//! a limit a request is refused at once (503 with `Retry-After`) instead of waiting in an
//! unbounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::ApiError;

/// Seconds a refused client is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Default)]
pub struct Limiter {
    max: Option<usize>,
    in_flight: Arc<AtomicUsize>,
    /// What is counted, for the refusal: "… already has {max} {what}; retry …".
    what: &'static str,
}

/// One admitted call; frees its place when dropped.
#[derive(Debug)]
pub struct Permit(Option<Arc<AtomicUsize>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Limiter {
    pub fn new(max: Option<usize>) -> Limiter {
        Limiter {
            max,
            in_flight: Arc::new(AtomicUsize::new(0)),
            what: "upstream requests in flight (max_concurrent_requests)",
        }
    }

    /// Pass-through uploads whose body streams from the client: each holds a worker for as
    /// long as the client takes to send it, so they may hold at most half of the `workers`
    /// (at least one), and a miss always finds a worker however many clients upload slowly.
    pub fn uploads(workers: usize) -> Limiter {
        Limiter {
            max: Some((workers / 2).max(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            what: "uploads streaming to an upstream (at most half of `workers`, so that \
                   other requests always find a worker)",
        }
    }

    /// A permit, or the 503 to answer when `max` calls are already in flight.
    pub fn try_acquire(&self) -> Result<Permit, ApiError> {
        let Some(max) = self.max else {
            return Ok(Permit(None));
        };
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Ok(Permit(Some(Arc::clone(&self.in_flight))))
        } else {
            Err(ApiError::busy(
                "relay_busy",
                format!(
                    "the relay already has {max} {}; retry after {RETRY_AFTER_SECS} s",
                    self.what
                ),
                RETRY_AFTER_SECS,
            ))
        }
    }

    /// Calls in flight now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_and_released() {
        let l = Limiter::new(Some(2));
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert_eq!(l.try_acquire().unwrap_err().status, 503);
        drop(a);
        assert!(l.try_acquire().is_ok());
        assert_eq!(l.in_flight(), 1);
        let unlimited = Limiter::new(None);
        assert!((0..100).all(|_| unlimited.try_acquire().is_ok()));
    }
}
