//! llm-relay patch: a connection kept by the thread that answered its request.
//!
//! In handler mode a request the handler passes to another thread (the relay's `workers`)
//! parks its connection, and the answer's end hands the connection to the pool, whose thread
//! then waits for the next request. A client that sends its next request at once (an agent, an
//! eval loop, a benchmark) so costs two thread hand-offs per request. A thread that calls
//! [`keep_connections_here`] keeps such a connection instead ([`take_kept_connection`]) and
//! serves it on itself ([`KeptConnection::serve`]) while each next request arrives *whole*
//! within a short window — never waiting longer, never reading part of a request — and hands
//! it to the pool otherwise. A slow client costs the keeping thread one window, after which its
//! connection is not kept for a while.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Waited;
use crate::util::notify::{Notify, Resume};
use crate::{serve_handled, Handled};

/// How many times a connection goes back to the pool, not kept, after its client was slower
/// than the window once.
const SKIP_AFTER_SLOW: u8 = 8;

thread_local! {
    /// `None`: this thread does not keep connections; `Some(slot)`: it does, and `slot` holds
    /// the one it kept last, until taken.
    static KEPT: RefCell<Option<Option<Handled>>> = const { RefCell::new(None) };
}

/// From now on this thread keeps the connection of each request it answers, when that
/// connection's thread had passed the request on (see the module's notes); take it with
/// [`take_kept_connection`] once the answer is done.
pub fn keep_connections_here() {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if k.is_none() {
            *k = Some(None);
        }
    });
}

/// The connection this thread kept last, if any.
pub fn take_kept_connection() -> Option<KeptConnection> {
    KEPT.with(|k| k.borrow_mut().as_mut().and_then(Option::take))
        .map(KeptConnection)
}

/// Keeps `conn` on this thread if it keeps connections and holds none yet; else gives it back
/// (for the pool).
pub(crate) fn keep_here(conn: Handled) -> Option<Handled> {
    KEPT.with(|k| match &mut *k.borrow_mut() {
        Some(slot @ None) => {
            *slot = Some(conn);
            None
        }
        _ => Some(conn),
    })
}

/// A connection whose last request this thread answered (see [`take_kept_connection`]).
pub struct KeptConnection(Handled);

impl KeptConnection {
    /// Serves the connection's next requests on this thread, each through the server's
    /// handler, while `go_on()` says so and each arrives whole within `window`; then hands the
    /// connection to the pool (or closes it, when the client did or an answer was cut short).
    pub fn serve(self, window: Duration, go_on: &dyn Fn() -> bool) {
        let mut conn = self.0;
        loop {
            if conn.skip_keeping > 0 || !go_on() {
                conn.skip_keeping = conn.skip_keeping.saturating_sub(1);
                return to_pool(conn);
            }
            match conn.client.whole_request_within(window) {
                Waited::Whole => {}
                Waited::NotYet => {
                    conn.skip_keeping = SKIP_AFTER_SLOW;
                    return to_pool(conn);
                }
                Waited::Closed => return,
            }
            let Some(rq) = conn.client.next() else {
                return;
            };
            let resume = Resume::new(Arc::clone(&conn.pool), serve_handled, keep_here);
            let rq = rq.with_notify(Notify::resume(resume.clone()));
            let handler = Arc::clone(&conn.handler);
            let call = std::panic::AssertUnwindSafe(|| handler(rq));
            if std::panic::catch_unwind(call).is_err() {
                log::error!("request handler panicked; closing its connection");
                return;
            }
            match resume.park(conn) {
                Some(next) => conn = next,
                None => return,
            }
        }
    }

    /// Hands the connection to the pool, which serves its next request.
    pub fn release(self) {
        to_pool(self.0);
    }
}

fn to_pool(conn: Handled) {
    let pool = Arc::clone(&conn.pool);
    let mut conn = Some(conn);
    pool.spawn(Box::new(move || {
        if let Some(conn) = conn.take() {
            serve_handled(conn);
        }
    }));
}
