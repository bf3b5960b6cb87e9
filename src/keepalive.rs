//! `stream_keepalive_ms`: SSE comment lines (`: keepalive`) to a streaming client while the
//! upstream has not sent its response head yet, so proxies and load balancers that cut silent
//! connections keep a thinking model's stream open.
//!
//! The response head (200, `text/event-stream`) is sent before the upstream answers, so a
//! later upstream failure can only arrive as an error event in the client API's shape.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use crate::sse_out::SseOut;

/// The comment line; SSE parsers ignore lines starting with `:`.
const COMMENT: &[u8] = b": keepalive\n\n";

/// Runs `wait` on this thread while a scoped helper thread writes [`COMMENT`] to `out` every
/// `every`, until `wait` returns (or the client is gone). Returns what `wait` returned.
pub fn while_waiting<T>(out: &mut SseOut, every: Duration, wait: impl FnOnce() -> T) -> T {
    let out = &Mutex::new(out);
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || loop {
            match stopped.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {
                    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                    if out.write(COMMENT).and_then(|()| out.flush()).is_err() {
                        return; // the client left; the upstream call still ends normally
                    }
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        let result = wait();
        drop(stop);
        result
    })
}
