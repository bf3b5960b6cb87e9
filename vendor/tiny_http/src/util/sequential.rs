use std::io::Result as IoResult;
use std::io::{Read, Write};

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use std::mem;

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Receiver<R>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Sender<R>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Receiver<R>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<()>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<()>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<()>,
}

/// llm-relay patch: a one-value hand-over between the request before and the one after (it
/// replaces a `std::sync::mpsc` channel per request and per side, whose first send allocated
/// and zeroed a block of 31 slots: ~9 k instructions of a ~90 k instruction cache hit).
struct Slot<T> {
    state: Mutex<(State<T>, Waiting)>,
    changed: Condvar,
}

/// Whether the taker waits on the condition variable (std's `notify_one` is a system call
/// even with nobody waiting, and most hand-overs find the value given already).
type Waiting = bool;

enum State<T> {
    Empty,
    Full(T),
    /// Taken, or the giver went away without giving.
    Gone,
}

/// The giving side: gives at most once; dropped without giving, the taker gets an error.
struct Sender<T>(Arc<Slot<T>>);

/// The taking side.
struct Receiver<T>(Arc<Slot<T>>);

/// The taker got nothing and never will.
#[derive(Debug)]
struct Disconnected;

fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new((State::Empty, false)),
        changed: Condvar::new(),
    });
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    fn send(&self, value: T) -> Result<(), Disconnected> {
        let mut guard = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(guard.0, State::Empty) {
            return Err(Disconnected);
        }
        guard.0 = State::Full(value);
        let waiting = guard.1;
        drop(guard);
        if waiting {
            self.0.changed.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut guard = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(guard.0, State::Empty) {
            guard.0 = State::Gone;
            let waiting = guard.1;
            drop(guard);
            if waiting {
                self.0.changed.notify_one();
            }
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the value.
    fn recv(&self) -> Result<T, Disconnected> {
        let mut guard = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match mem::replace(&mut guard.0, State::Gone) {
                State::Full(value) => return Ok(value),
                State::Gone => return Err(Disconnected),
                State::Empty => {
                    guard.0 = State::Empty;
                    guard.1 = true;
                    guard = self
                        .0
                        .changed
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                    guard.1 = false;
                }
            }
        }
    }

    /// The value if it is there; never waits.
    fn try_recv(&self) -> Result<T, Disconnected> {
        let mut guard = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match mem::replace(&mut guard.0, State::Gone) {
            State::Full(value) => Ok(value),
            State::Gone => Err(Disconnected),
            State::Empty => {
                guard.0 = State::Empty;
                Err(Disconnected)
            }
        }
    }
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    /// llm-relay patch: runs `f` on the underlying writer (None if a writer panicked holding it).
    pub fn with_inner<T>(&self, f: impl FnOnce(&mut W) -> T) -> Option<T> {
        self.writer.lock().ok().map(|mut w| f(&mut w))
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// llm-relay patch: the underlying reader if it is this reader's turn, without waiting.
    pub fn inner_mut(&mut self) -> Option<&mut R> {
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => Some(reader),
            _ => None,
        }
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let (tx, rx) = channel();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// llm-relay patch: blocks until the readers before this one are dropped, without reading.
    pub fn wait_turn(&mut self) {
        if let SequentialReaderInner::Waiting(ref mut recv) = self.inner {
            if let Ok(reader) = recv.recv() {
                self.inner = SequentialReaderInner::MyTurn(reader);
            }
        }
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// llm-relay patch: takes the turn if the readers before this one are dropped; never
    /// waits. True when it is this reader's turn.
    pub fn try_turn(&mut self) -> bool {
        if let SequentialReaderInner::Waiting(ref mut recv) = self.inner {
            if let Ok(reader) = recv.try_recv() {
                self.inner = SequentialReaderInner::MyTurn(reader);
            }
        }
        matches!(self.inner, SequentialReaderInner::MyTurn(_))
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut reader = match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => return reader.read(buf),
            SequentialReaderInner::Waiting(ref mut recv) => recv.recv().unwrap(),
            SequentialReaderInner::Empty => unreachable!(),
        };

        let result = reader.read(buf);
        self.inner = SequentialReaderInner::MyTurn(reader);
        result
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.send(reader).ok();
            }
            SequentialReaderInner::Waiting(recv) => {
                let reader = recv.recv().unwrap();
                self.next.send(reader).ok();
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.send(()).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::channel;
    use std::time::Duration;

    #[test]
    fn a_value_given_is_taken_once() {
        let (tx, rx) = channel();
        assert!(rx.try_recv().is_err(), "nothing given yet");
        tx.send(7).unwrap();
        assert!(tx.send(8).is_err(), "a slot takes one value");
        assert_eq!(rx.try_recv().unwrap(), 7);
        assert!(rx.recv().is_err(), "taken already");
    }

    #[test]
    fn the_taker_waits_for_a_giver_on_another_thread() {
        let (tx, rx) = channel();
        let giver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send("reader").unwrap();
        });
        assert_eq!(rx.recv().unwrap(), "reader");
        giver.join().unwrap();
    }

    #[test]
    fn a_giver_gone_without_giving_ends_the_wait() {
        let (tx, rx) = channel::<u8>();
        let giver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        assert!(rx.recv().is_err());
        giver.join().unwrap();
    }
}
