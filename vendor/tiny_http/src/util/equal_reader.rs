use std::io::Read;
use std::io::Result as IoResult;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
    // llm-relay patch: set once the body has been read or drained to its end.
    done: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
            done: None,
        };

        (r, rx)
    }

    /// llm-relay patch: `done` is set when the body has been read, or drained on drop, to its
    /// end; left unset, the connection is out of step (see `ClientConnection::read`).
    pub fn with_done(mut self, done: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.done = Some(done);
        self
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    // llm-relay patch: upstream allocated `vec![0; remaining]` here (a forged
    // Content-Length of terabytes aborted the process) and drained bodies of any
    // size. Drain at most DRAIN_LIMIT bytes through a fixed buffer; past that the
    // connection is out of step, and the next read fails and closes it.
    // A second llm-relay patch: draining also stops after DRAIN_TIME, so a client trickling
    // its body cannot hold the thread that dropped the request (a relay worker).
    fn drop(&mut self) {
        const DRAIN_LIMIT: usize = 1 << 20;
        const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);
        let started = std::time::Instant::now();
        let mut buf = [0u8; 8192];
        let mut budget = DRAIN_LIMIT;

        while self.size > 0 && budget > 0 && started.elapsed() < DRAIN_TIME {
            let want = self.size.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Err(e) => {
                    self.last_read_signal.send(Err(e)).ok();
                    return;
                }
                Ok(0) => break,
                Ok(n) => {
                    self.size -= n;
                    budget = budget.saturating_sub(n);
                }
            }
        }
        if self.size == 0 {
            if let Some(done) = &self.done {
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.last_read_signal.send(Ok(())).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
