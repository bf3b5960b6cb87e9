//! llm-relay patch: how a request tells its connection that it was answered.
//!
//! Upstream's connection thread waited on a channel until each request's answer was written, so
//! a request answered on another thread (a long stream) held two threads. In handler mode a
//! connection whose request is still unanswered when the handler returns is *parked* instead:
//! its thread goes back to the pool, and the answer's end hands the connection back to the pool
//! to read its next request ([`Resume`]). A request dropped without an answer closes it.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::TaskPool;

/// Told once the request's answer was written whole (`send`), or dropped without that (the
/// connection must close).
pub(crate) struct Notify(Kind);

enum Kind {
    /// Upstream's way: a thread waits on the other end.
    Channel(Sender<()>),
    /// Handler mode: see [`Resume`]; `None` once told.
    Resume(Option<Arc<dyn Told>>),
}

impl Notify {
    pub(crate) fn channel(sender: Sender<()>) -> Notify {
        Notify(Kind::Channel(sender))
    }

    pub(crate) fn resume(resume: Arc<dyn Told>) -> Notify {
        Notify(Kind::Resume(Some(resume)))
    }

    /// The answer was written whole: the connection may serve its next request.
    pub(crate) fn send(mut self) {
        match &mut self.0 {
            Kind::Channel(sender) => {
                let _ = sender.send(()); // the connection may be gone
            }
            Kind::Resume(resume) => {
                if let Some(resume) = resume.take() {
                    resume.told(true);
                }
            }
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Kind::Resume(resume) = &mut self.0 {
            if let Some(resume) = resume.take() {
                resume.told(false);
            }
        }
    }
}

/// Told the answer's end (see [`Resume`]).
pub(crate) trait Told: Send + Sync {
    /// The answer was written whole (`true`), or the request dropped without that.
    fn told(&self, whole: bool);
}

/// One request's meeting point between its connection `C` and whoever answers the request.
pub(crate) struct Resume<C> {
    state: Mutex<State<C>>,
    pool: Arc<TaskPool>,
    /// Serves a connection on from its next request (on a pool thread).
    serve: fn(C),
    /// Keeps a connection on the thread that answered its request (see `keep`), or gives it
    /// back for the pool.
    keep: fn(C) -> Option<C>,
}

enum State<C> {
    /// Neither the answer's end nor the parked connection has arrived yet.
    Pending,
    /// Answered: whole (`true`) or not (`false`: the connection closes).
    Told(bool),
    /// The connection's thread went back to the pool; the answer's end serves it on.
    Parked(C),
}

impl<C: Send + 'static> Resume<C> {
    pub(crate) fn new(
        pool: Arc<TaskPool>,
        serve: fn(C),
        keep: fn(C) -> Option<C>,
    ) -> Arc<Resume<C>> {
        Arc::new(Resume {
            state: Mutex::new(State::Pending),
            pool,
            serve,
            keep,
        })
    }

    /// Called by the connection once its handler returned. `Some(conn)`: the request was
    /// answered whole, serve the next one on this thread. `None`: the connection was closed (an
    /// answer cut short), or it is parked until the answer's end (which starts `serve` with it
    /// on the pool).
    pub(crate) fn park(&self, conn: C) -> Option<C> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Told(true) => Some(conn),
            State::Told(false) => None,
            State::Pending | State::Parked(_) => {
                *state = State::Parked(conn);
                None
            }
        }
    }
}

impl<C: Send + 'static> Told for Resume<C> {
    fn told(&self, whole: bool) {
        let parked = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *state, State::Told(whole))
        };
        if let State::Parked(conn) = parked {
            if whole {
                // kept by this thread (a worker of the relay's: see `keep`), or served on
                // from the pool
                let Some(conn) = (self.keep)(conn) else {
                    return;
                };
                let (serve, mut conn) = (self.serve, Some(conn));
                self.pool.spawn(Box::new(move || {
                    if let Some(conn) = conn.take() {
                        serve(conn);
                    }
                }));
            }
            // else: dropping `conn` closes the connection
        }
    }
}
