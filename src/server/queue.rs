//! The bounded queue of requests to the `workers` pool, and whether a queued one lacks a worker.
//!
//! A bounded channel whose receiver the idle workers take turns at (one waits in `recv`, the
//! others on the mutex), with counts of the jobs in it and of the workers waiting for one: a
//! worker serving a connection it kept yields it when a job waits that no idle worker will
//! take ([`Queue::lacks_a_worker`]). Jobs are boxed by the server: the channel allocates its
//! [`QUEUE`] slots up front, and a job is most of a kilobyte.
//!
//! A queue of one mutex and one condition variable that every idle worker waited on (9ea9e9f
//! to 812fcac) woke one thread per job instead of two, but with 500 streams open the translated
//! ones' events came later: `bench/run.sh --only 6`, p99 added per event, nine runs of such
//! builds against seven of channel builds (d94fbd6 and the one after 812fcac): Messages
//! 3.6–28.5 ms against 0.75–2.2 ms, Responses 12.1–35.4 ms against 0.9–5.5 ms, plain 0.67–4.4 ms
//! against 0.9–2.6 ms, at the same CPU time per stream. Misses gained nothing from it
//! (`bench/switches.sh`: the same context switches per miss either way, the kept connections
//! having removed that hand-off). Why a condition variable's wake-ups delayed events that busy
//! workers write was not found.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

/// Requests waiting for a worker; beyond it the relay answers 503 at once.
pub const QUEUE: usize = 1024;

pub struct Queue<T> {
    sender: SyncSender<T>,
    receiver: Mutex<Receiver<T>>,
    /// Jobs sent and not yet received.
    len: AtomicUsize,
    /// Workers in [`Queue::pop`]: waiting for a job, or woken with one and not yet back.
    idle: AtomicUsize,
}

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        let (sender, receiver) = sync_channel(QUEUE);
        Queue {
            sender,
            receiver: Mutex::new(receiver),
            len: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }
    }
}

impl<T> Queue<T> {
    /// Queues `job`, or gives it back when [`QUEUE`] jobs are waiting already.
    pub fn push(&self, job: T) -> Result<(), T> {
        self.len.fetch_add(1, Ordering::SeqCst);
        self.sender.try_send(job).map_err(|e| {
            self.len.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }
        })
    }

    /// True when a job waits that no idle worker will take. A job just queued while a worker
    /// waits does not count, though that worker has not run yet: with any job in the queue
    /// counted, a worker keeping a connection saw one at most checks once 50 connections were
    /// busy, even with idle workers to spare, and yielded its connection to the pool, to be
    /// handed back on the next request (BENCHMARKS.md, "Kept connections that stay kept").
    pub fn lacks_a_worker(&self) -> bool {
        self.len.load(Ordering::SeqCst) > self.idle.load(Ordering::SeqCst)
    }

    /// The next job, waiting for one; `None` only if the sender is gone, which the queue
    /// holds for as long as it lives.
    pub fn pop(&self) -> Option<T> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let next = self
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv();
        // the job leaves the count before its worker does: no check sees it unserved
        if next.is_ok() {
            self.len.fetch_sub(1, Ordering::SeqCst);
        }
        self.idle.fetch_sub(1, Ordering::SeqCst);
        next.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_job_lacks_a_worker_only_while_no_idle_one_will_take_it() {
        let q = Arc::new(Queue::<u32>::default());
        assert!(!q.lacks_a_worker());
        // no worker waits: a queued job lacks one
        q.push(1).unwrap();
        assert!(q.lacks_a_worker());
        assert_eq!(q.pop(), Some(1));
        assert!(!q.lacks_a_worker());

        // a worker waits: a job queued for it never lacks one, before, while or after it is
        // taken (the check a keeping worker makes at any of those moments)
        let (taken, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(())));
        let hold = gate.lock().unwrap();
        let worker = {
            let (q, taken, gate) = (Arc::clone(&q), Arc::clone(&taken), Arc::clone(&gate));
            std::thread::spawn(move || {
                let job = q.pop();
                taken.store(1, Ordering::SeqCst);
                drop(gate.lock().unwrap()); // holds still until the test has looked
                job
            })
        };
        until("the worker waiting", || q.idle.load(Ordering::SeqCst) == 1);
        q.push(2).unwrap();
        assert!(!q.lacks_a_worker());
        until("the job taken", || taken.load(Ordering::SeqCst) == 1);
        assert!(!q.lacks_a_worker());
        // a second job while that worker is busy with the first: nobody will take it
        q.push(3).unwrap();
        assert!(q.lacks_a_worker());
        drop(hold);
        assert_eq!(worker.join().unwrap(), Some(2));
        assert_eq!(q.pop(), Some(3));
        assert!(!q.lacks_a_worker());
    }

    #[test]
    fn a_full_queue_gives_the_job_back_and_does_not_count_it() {
        let q = Queue::<usize>::default();
        for i in 0..QUEUE {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(QUEUE), Err(QUEUE));
        assert_eq!(q.len.load(Ordering::SeqCst), QUEUE);
    }
}
