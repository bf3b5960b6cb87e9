//! Where log lines go: stderr, in order. A message is written at once, in one write (so lines
//! of concurrent threads never interleave). Access lines, one per request, wait up to
//! [`BATCH_WAIT`] for others to share their write ([`Sink::access`]): a relay serving tens of
//! thousands of requests a second makes about a thousand writes a second for them, not one
//! per request (a write to a file or a pipe costs several microseconds; a whole cache hit is a
//! few tens).
//!
//! Lines keep their order: a message first writes the access lines waiting before it, and the
//! process writes what waits before it exits ([`flush`]). A `kill -9` loses at most the access
//! lines of the last [`BATCH_WAIT`]. The writer thread sleeps until a line comes: no timer
//! wakes an idle relay.
//!
//! Lock order, everywhere: the output's lock, then the batch's.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// The longest an access line waits for others to share its write.
pub const BATCH_WAIT: Duration = Duration::from_millis(1);

/// A batch this long is written at once, by the thread whose line filled it.
const BATCH_MAX: usize = 64 * 1024;

/// Log lines on their way to `W` (stderr, or a test's buffer).
pub struct Sink<W> {
    out: Mutex<W>,
    batch: Mutex<Batch>,
    ready: Condvar,
    wait: Duration,
    /// Whether the writer thread runs (if it could not be started, access lines are written
    /// at once).
    writer: OnceLock<bool>,
}

/// The access lines waiting for their write.
struct Batch {
    bytes: Vec<u8>,
    /// The writer thread waits for a line (and must be woken for this one).
    writer_idle: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write + Send + 'static> Sink<W> {
    pub fn new(out: W, wait: Duration) -> Sink<W> {
        Sink {
            out: Mutex::new(out),
            batch: Mutex::new(Batch {
                bytes: Vec::new(),
                writer_idle: false,
            }),
            ready: Condvar::new(),
            wait,
            writer: OnceLock::new(),
        }
    }

    /// Writes `line` and a newline now, after the access lines waiting.
    pub fn line(&self, line: &str) {
        let mut out = locked(&self.out);
        let mut bytes = std::mem::take(&mut locked(&self.batch).bytes);
        bytes.reserve(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let _ = out.write_all(&bytes).and_then(|()| out.flush());
    }

    /// Writes the access line `line` (its newline included) within the sink's wait, with the
    /// others of that time.
    pub fn access(&'static self, line: &str) {
        if !*self.writer.get_or_init(|| self.start_writer()) {
            let mut out = locked(&self.out);
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
            return;
        }
        let full = {
            let mut b = locked(&self.batch);
            b.bytes.extend_from_slice(line.as_bytes());
            if b.writer_idle {
                b.writer_idle = false;
                self.ready.notify_one();
            }
            b.bytes.len() >= BATCH_MAX
        };
        if full {
            self.flush();
        }
    }

    /// Writes the access lines waiting now.
    pub fn flush(&self) {
        let mut out = locked(&self.out);
        let bytes = std::mem::take(&mut locked(&self.batch).bytes);
        if !bytes.is_empty() {
            let _ = out.write_all(&bytes).and_then(|()| out.flush());
        }
    }

    fn start_writer(&'static self) -> bool {
        std::thread::Builder::new()
            .name("log".to_string())
            .stack_size(64 * 1024)
            .spawn(move || self.write_batches())
            .is_ok()
    }

    /// The writer thread: waits for a line, lets the sink's wait pass, writes what came.
    fn write_batches(&self) {
        let mut spare: Vec<u8> = Vec::with_capacity(BATCH_MAX);
        loop {
            {
                let mut b = locked(&self.batch);
                while b.bytes.is_empty() {
                    b.writer_idle = true;
                    b = self.ready.wait(b).unwrap_or_else(PoisonError::into_inner);
                }
            }
            std::thread::sleep(self.wait);
            let mut out = locked(&self.out);
            std::mem::swap(&mut locked(&self.batch).bytes, &mut spare);
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            drop(out);
            spare.clear();
        }
    }
}

/// The process's sink: stderr.
pub fn stderr() -> &'static Sink<std::io::Stderr> {
    static STDERR: OnceLock<Sink<std::io::Stderr>> = OnceLock::new();
    STDERR.get_or_init(|| Sink::new(std::io::stderr(), BATCH_WAIT))
}

/// Writes the access lines waiting on stderr now (before the process exits).
pub fn flush() {
    stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// A test's output: each write kept apart.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<String>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.write_all(buf)?;
            Ok(buf.len())
        }
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            locked(&self.0).push(String::from_utf8_lossy(buf).into_owned());
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn sink(wait: Duration) -> (&'static Sink<Writes>, Writes) {
        let writes = Writes::default();
        (Box::leak(Box::new(Sink::new(writes.clone(), wait))), writes)
    }

    fn written(w: &Writes) -> Vec<String> {
        locked(&w.0).clone()
    }

    #[test]
    fn access_lines_share_a_write_and_a_message_follows_them() {
        // a wait longer than the test: only `line` and `flush` write
        let (sink, writes) = sink(Duration::from_secs(600));
        sink.access("a1\n");
        sink.access("a2\n");
        assert!(written(&writes).is_empty(), "access lines wait");
        sink.line("warn w");
        sink.access("a3\n");
        sink.access("a4\n");
        sink.flush();
        sink.flush();
        assert_eq!(written(&writes), ["a1\na2\nwarn w\n", "a3\na4\n"]);
    }

    #[test]
    fn a_lone_access_line_is_written_after_the_wait_without_a_message() {
        let (sink, writes) = sink(Duration::from_millis(1));
        for round in 1..=3 {
            sink.access(&format!("line {round}\n"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while written(&writes).len() < round && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(written(&writes).len(), round, "{:?}", written(&writes));
        }
        assert_eq!(written(&writes), ["line 1\n", "line 2\n", "line 3\n"]);
    }

    #[test]
    fn a_full_batch_is_written_by_the_line_that_filled_it() {
        let (sink, writes) = sink(Duration::from_secs(600));
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..BATCH_MAX / 1024 {
            sink.access(&line);
        }
        let out = written(&writes);
        assert_eq!(out.len(), 1);
        assert_eq!(out.first().map(String::len), Some(BATCH_MAX));
    }
}
