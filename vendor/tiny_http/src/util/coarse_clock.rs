//! llm-relay patch: a millisecond clock that is cheap to read, for the request-head deadline.
//!
//! The head reader checks its deadline after every byte; `Instant::now()` there cost ~5% of
//! the CPU of a cache-hit load. This clock is one atomic load: a background thread (started on
//! first use) advances it every 10 ms, so deadlines are exact to about 10 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static NOW_MS: AtomicU64 = AtomicU64::new(0);
static STARTED: OnceLock<()> = OnceLock::new();

/// Milliseconds since the clock started (monotonic, 10 ms steps).
pub fn now_ms() -> u64 {
    STARTED.get_or_init(|| {
        let origin = Instant::now();
        let _ = std::thread::Builder::new()
            .name("coarse-clock".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(10));
                NOW_MS.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
            });
    });
    NOW_MS.load(Ordering::Relaxed)
}
