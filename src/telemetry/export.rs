//! The batch exporter: a bounded queue of finished spans and one thread (`otlp-export`) that
//! posts them in batches to `{otlp_endpoint}/v1/traces` as OTLP/HTTP JSON.
//!
//! A request only ever takes the queue's lock to append its spans: when the queue is full (the
//! collector is slow, hangs or is down) the spans are dropped and counted
//! (`llm_relay_trace_spans_dropped_total{reason="queue_full"}`), never waited for. A batch the
//! collector refuses or never answers within `export_timeout_ms` is dropped and counted too
//! (`reason="export_failed"`); there is no retry, so a dead collector costs one timeout per
//! batch on this thread and nothing on a request's. The first failure and the recovery are
//! logged once each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::span::{export_request, Span};
use super::TelemetryConfig;
use crate::{log, metrics};

/// What the exporter thread and the requests share.
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when spans arrive, on close, and when a flush is asked for.
    wake: Condvar,
    /// Signalled when a batch is done (for [`Exporter::flush`]).
    done: Condvar,
}

/// The most memory queued spans may hold together (by [`Span::weight`]); beyond it spans are
/// dropped as for a full queue, so prompts recorded with `capture_content` cannot pile up.
const MAX_QUEUE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Queue {
    spans: VecDeque<Span>,
    /// The weight of `spans`.
    bytes: usize,
    /// Spans taken by the thread and not yet posted.
    posting: usize,
    closed: bool,
    flush: bool,
}

/// The running exporter. Dropping it closes the queue: the thread posts what is left and ends.
pub struct Exporter {
    shared: Arc<Shared>,
    max_queue: usize,
    max_batch: usize,
}

impl Exporter {
    /// Starts the `otlp-export` thread for `config`.
    pub fn start(config: &TelemetryConfig) -> Result<Exporter, String> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let thread = Poster::new(config, Arc::clone(&shared));
        metrics::tracing_on();
        std::thread::Builder::new()
            .name("otlp-export".to_string())
            .spawn(move || thread.run())
            .map_err(|e| format!("cannot start the trace exporter thread: {e}"))?;
        Ok(Exporter {
            shared,
            max_queue: config.max_queue_spans,
            max_batch: config.max_batch_spans,
        })
    }

    /// Queues the spans of one request, or drops and counts all of them if they do not fit.
    pub fn push(&self, spans: Vec<Span>) {
        let n = spans.len();
        let weight: usize = spans.iter().map(Span::weight).sum();
        let mut q = self.lock();
        if q.spans.len() + n > self.max_queue || q.bytes + weight > MAX_QUEUE_BYTES {
            drop(q);
            metrics::trace_spans_dropped("queue_full", n as u64);
            return;
        }
        // the thread needs waking only to start an empty queue's delay, or for a full batch
        let wake = q.spans.is_empty() || q.spans.len() + n >= self.max_batch;
        q.bytes += weight;
        q.spans.extend(spans);
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Posts everything queued now and waits for it, at most `limit` (at shutdown).
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut q = self.lock();
        q.flush = true;
        self.shared.wake.notify_one();
        while !(q.spans.is_empty() && q.posting == 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = match self.shared.done.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The exporter thread's side.
struct Poster {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    url: String,
    /// `url` as logs show it (without `user:password@`).
    shown: String,
    headers: Vec<(String, String)>,
    service: String,
    max_batch: usize,
    delay: Duration,
    /// Whether the last post failed (so a failure and a recovery are logged once each).
    failing: AtomicBool,
}

impl Poster {
    fn new(config: &TelemetryConfig, shared: Arc<Shared>) -> Poster {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.export_timeout))
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("llm-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Poster {
            shared,
            agent,
            url: config.traces_url.clone(),
            shown: super::without_userinfo(&config.traces_url),
            headers: config.headers.clone(),
            service: config.service_name.clone(),
            max_batch: config.max_batch_spans,
            delay: config.export_delay,
            failing: AtomicBool::new(false),
        }
    }

    /// Waits for a full batch, the delay since the oldest waiting span, a flush or the close;
    /// posts; until closed and empty.
    fn run(self) {
        loop {
            let batch = {
                let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                let mut waiting_since = None;
                loop {
                    if q.spans.len() >= self.max_batch || q.closed || q.flush {
                        break;
                    }
                    if !q.spans.is_empty() {
                        let since = *waiting_since.get_or_insert_with(Instant::now);
                        let left = self.delay.saturating_sub(since.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        q = match self.shared.wake.wait_timeout(q, left) {
                            Ok((q, _)) => q,
                            Err(p) => p.into_inner().0,
                        };
                    } else {
                        q = self.shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    }
                }
                if q.spans.is_empty() {
                    q.flush = false;
                    self.shared.done.notify_all();
                    if q.closed {
                        return;
                    }
                    continue;
                }
                let n = q.spans.len().min(self.max_batch);
                q.posting = n;
                let batch = q.spans.drain(..n).collect::<Vec<Span>>();
                let weight: usize = batch.iter().map(Span::weight).sum();
                q.bytes = q.bytes.saturating_sub(weight);
                batch
            };
            self.post(&batch);
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.posting = 0;
            self.shared.done.notify_all();
        }
    }

    fn post(&self, batch: &[Span]) {
        let body = export_request(&self.service, batch);
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let outcome = match req.send(&body[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                if (200..300).contains(&status) {
                    Ok(rejected(&text))
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let n = batch.len() as u64;
        match outcome {
            Ok(refused) => {
                metrics::trace_spans_dropped("rejected", refused.min(n));
                metrics::trace_spans_exported(n.saturating_sub(refused));
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info(&format!("trace export to {} works again", self.shown));
                }
            }
            Err(why) => {
                metrics::trace_spans_dropped("export_failed", n);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn(&format!(
                        "trace export to {} failed ({why}); its spans are dropped and counted in \
                         llm_relay_trace_spans_dropped_total until it works again",
                        self.shown
                    ));
                }
            }
        }
    }
}

/// `partialSuccess.rejectedSpans` of a collector's answer (0 when absent).
fn rejected(answer: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| {
            let n = v.get("partialSuccess")?.get("rejectedSpans")?.clone();
            n.as_u64().or_else(|| n.as_str()?.parse().ok())
        })
        .unwrap_or(0)
}
