//! OpenTelemetry traces (`telemetry` in the config, checked in [`config`]): one SERVER span per
//! API request and one CLIENT child span per upstream attempt, exported over OTLP/HTTP with
//! JSON encoding by a batch exporter on its own thread ([`export`]), with the GenAI semantic
//! conventions ([`genai`]) and the relay's own `llm_relay.*` attributes.
//!
//! Off unless `telemetry.otlp_endpoint` is set; off, no request builds a [`Trace`] and the
//! client's `traceparent` goes upstream unchanged. On, a client's valid W3C `traceparent`
//! becomes the relay span's parent (its sampled flag is obeyed: an unsampled trace is
//! propagated but not exported), and each upstream attempt carries its own CLIENT span as the
//! parent in the `traceparent` it sends. Prompt and answer content is recorded only with
//! `capture_content`, redacted as the body log redacts. A request never waits for the
//! collector: its spans go into a bounded queue, or are dropped and counted.
//!
//! The only user of ureq's request side outside `upstream/` (and `probe.rs`): the exporter.

mod config;
mod export;
mod genai;
mod span;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json};

use crate::answer::Usage;
use crate::log::{Access, CacheResult};
pub use config::{RawTelemetry, TelemetryConfig};
use export::Exporter;
use genai::{host_port, provider, without_userinfo};
use span::{Attributes, Context, Kind, Span, Value};

/// The running tracer: the exporter and the settings requests read.
pub struct Tracer {
    pub config: TelemetryConfig,
    exporter: Exporter,
}

impl Tracer {
    /// Starts the exporter for `config`.
    pub fn start(config: TelemetryConfig) -> Result<Arc<Tracer>, String> {
        let exporter = Exporter::start(&config)?;
        Ok(Arc::new(Tracer { config, exporter }))
    }

    /// Starts the trace of one request: a child of the client's `traceparent` if it sent a
    /// valid one, else the root of a new trace.
    pub fn trace(self: &Arc<Self>, traceparent: Option<&str>, method: &str, path: &str) -> Trace {
        let parent = traceparent.and_then(Context::parse);
        let context = Context {
            trace_id: parent.map_or_else(span::new_trace_id, |p| p.trace_id),
            span_id: span::new_span_id(),
            sampled: parent.map_or(true, |p| p.sampled),
        };
        let mut attrs = Attributes::default();
        attrs.set("http.request.method", method);
        attrs.set("url.path", path);
        Trace {
            tracer: Arc::clone(self),
            context,
            parent: parent.map(|p| p.span_id),
            start_ns: now_ns(),
            start: Instant::now(),
            record: Mutex::new(Record {
                name: format!("{method} {path}"),
                attrs,
                ..Record::default()
            }),
        }
    }

    /// Posts what is queued, waiting at most `limit` (at shutdown).
    pub fn flush(&self, limit: Duration) {
        self.exporter.flush(limit);
    }
}

/// The trace of one request: its SERVER span, filled in as the request goes, and the CLIENT
/// spans of its upstream attempts. Shared (`&Trace`) by the pipeline and the upstream client;
/// the `Exchange` holding it ends it ([`Trace::finish`]) when the request is done.
pub struct Trace {
    tracer: Arc<Tracer>,
    context: Context,
    parent: Option<u64>,
    start_ns: u64,
    start: Instant,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// The span's name; empty once the trace has ended.
    name: String,
    operation: Option<&'static str>,
    attrs: Attributes,
    attempts: Vec<Attempt>,
    /// The attempt whose answer the client got.
    answered: Option<usize>,
    first_token: Option<Duration>,
    /// The answer (its route, bytes, and how to read them), read at the end.
    answer: Option<(String, Vec<u8>, Plain)>,
}

/// One upstream attempt, a CLIENT span.
struct Attempt {
    span_id: u64,
    start_ns: u64,
    end_ns: Option<u64>,
    attrs: Attributes,
    error: Option<String>,
}

/// Turns a recorded answer of an API route into its whole JSON answer (`cache::plain_answer`).
pub type Plain = fn(&str, &[u8]) -> Vec<u8>;

/// An attempt just started: where its outcome goes, and the `traceparent` it sends.
pub struct Started {
    index: usize,
    pub traceparent: String,
}

impl Trace {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.start_ns.saturating_add(elapsed)
    }

    /// Whether prompt and answer content is recorded.
    fn content(&self) -> bool {
        self.tracer.config.capture_content
    }

    /// The API call: its GenAI operation (`chat`, `text_completion`, `embeddings`) and the
    /// request body as the client sent it.
    pub fn request(&self, operation: &'static str, body: &Map<String, Json>) {
        let mut r = self.record();
        r.operation = Some(operation);
        r.attrs.set("gen_ai.operation.name", operation);
        genai::request(&mut r.attrs, body, self.content());
        let model = body.get("model").and_then(Json::as_str).unwrap_or("");
        r.name = format!("{operation} {model}").trim_end().to_string();
    }

    /// The answer the client got: a whole answer or a stream's recording, which `plain` turns
    /// into the whole answer of the API of `route`. Read when the trace ends, after the client
    /// has its answer.
    pub fn answer(&self, route: &str, body: Vec<u8>, plain: Plain) {
        self.record().answer = Some((route.to_string(), body, plain));
    }

    /// The first bytes of a streamed answer arrived from the upstream (kept once).
    pub fn first_token(&self) {
        let at = self.start.elapsed();
        self.record().first_token.get_or_insert(at);
    }

    /// An upstream attempt starts on the endpoint `name` at `url`, sending `model`.
    pub fn attempt(&self, name: &str, url: &str, model: &str) -> Started {
        let span_id = span::new_span_id();
        let mut attrs = Attributes::default();
        let mut r = self.record();
        if let Some(op) = r.operation {
            attrs.set("gen_ai.operation.name", op);
        }
        attrs.set("gen_ai.provider.name", provider(url));
        if !model.is_empty() {
            attrs.set("gen_ai.request.model", model);
        }
        let (host, port) = host_port(url);
        attrs.set("server.address", host);
        attrs.set("server.port", Value::Int(i64::from(port)));
        attrs.set("url.full", without_userinfo(url));
        attrs.set("llm_relay.upstream.endpoint", name);
        r.attempts.push(Attempt {
            span_id,
            start_ns: self.now_ns(),
            end_ns: None,
            attrs,
            error: None,
        });
        let traceparent = Context {
            span_id,
            ..self.context
        }
        .header();
        Started {
            index: r.attempts.len() - 1,
            traceparent,
        }
    }

    /// How an attempt ended: the upstream's `status`, or a transport `error`. The attempt the
    /// client's answer comes from (`answered`) stays open until [`Trace::upstream_done`].
    pub fn attempt_done(
        &self,
        started: Started,
        status: Option<u16>,
        error: Option<&str>,
        answered: bool,
    ) {
        let now = self.now_ns();
        let mut r = self.record();
        if answered {
            r.answered = Some(started.index);
        }
        let Some(a) = r.attempts.get_mut(started.index) else {
            return;
        };
        if let Some(status) = status {
            a.attrs
                .set("http.response.status_code", Value::Int(i64::from(status)));
            if status >= 400 {
                a.attrs.set("error.type", status.to_string());
                a.error = Some(format!("HTTP {status}"));
            }
        }
        if let Some(e) = error {
            a.attrs.set("error.type", "transport");
            a.error = Some(e.to_string());
        }
        if !answered {
            a.end_ns = Some(now);
        }
    }

    /// The upstream's answer has been read to its end (or given up on): the answering
    /// attempt's span ends.
    pub fn upstream_done(&self) {
        let now = self.now_ns();
        let mut r = self.record();
        for a in r.attempts.iter_mut().filter(|a| a.end_ns.is_none()) {
            a.end_ns = Some(now);
        }
    }

    /// Ends the trace with what the access record says and queues its spans (`key`: the
    /// client key's name). Only the first call counts.
    pub fn finish(&self, access: &Access, key: Option<&str>) {
        let end_ns = self.now_ns();
        let record = std::mem::take(&mut *self.record());
        if !self.context.sampled || record.name.is_empty() {
            return;
        }
        let Record {
            name,
            operation,
            mut attrs,
            attempts,
            answered,
            first_token,
            answer,
        } = record;
        let hit = access.cache == Some(CacheResult::Hit);
        if let Some((route, body, plain)) = answer {
            let content = self.tracer.config.capture_content;
            genai::answer(&mut attrs, &plain(&route, &body), content);
        }
        attrs.set(
            "http.response.status_code",
            Value::Int(i64::from(access.status)),
        );
        if operation.is_some() {
            if !access.model.is_empty() && attrs.get("gen_ai.request.model").is_none() {
                attrs.set("gen_ai.request.model", access.model.as_str());
            }
            usage(&mut attrs, &access.usage, hit);
        }
        if let Some(cache) = access.cache {
            attrs.set("llm_relay.cache", cache.label());
        }
        if let Some(a) = answered.and_then(|i| attempts.get(i)) {
            for key in ["gen_ai.provider.name", "llm_relay.upstream.endpoint"] {
                if let Some(v) = a.attrs.get(key) {
                    attrs.set(key, v.clone());
                }
            }
        }
        attrs.set("llm_relay.upstream.attempts", attempts.len() as u64);
        if let Some(t) = first_token {
            attrs.set(
                "llm_relay.time_to_first_token_ms",
                Value::Double(t.as_secs_f64() * 1000.0),
            );
        }
        if let Some(key) = key {
            attrs.set("llm_relay.key.name", key);
        }
        let error = (access.status >= 500).then(|| {
            attrs.set("error.type", access.status.to_string());
            format!("HTTP {}", access.status)
        });
        let mut spans = Vec::with_capacity(1 + attempts.len());
        for (i, mut a) in attempts.into_iter().enumerate() {
            if Some(i) == answered {
                // the answer's facts belong to the call that produced it too
                for key in [
                    "gen_ai.response.model",
                    "gen_ai.response.id",
                    "gen_ai.response.finish_reasons",
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.output_tokens",
                    "gen_ai.usage.cache_read.input_tokens",
                    "gen_ai.usage.cache_creation.input_tokens",
                ] {
                    if let Some(v) = attrs.get(key) {
                        a.attrs.set(key, v.clone());
                    }
                }
            }
            let client_name = match (operation, a.attrs.get("gen_ai.request.model")) {
                (Some(op), Some(Value::Str(m))) => format!("{op} {m}"),
                _ => name.clone(),
            };
            spans.push(Span {
                trace_id: self.context.trace_id,
                span_id: a.span_id,
                parent: Some(self.context.span_id),
                name: client_name,
                kind: Kind::Client,
                start_ns: a.start_ns,
                end_ns: a.end_ns.unwrap_or(end_ns),
                attributes: a.attrs,
                error: a.error,
            });
        }
        spans.insert(
            0,
            Span {
                trace_id: self.context.trace_id,
                span_id: self.context.span_id,
                parent: self.parent,
                name,
                kind: Kind::Server,
                start_ns: self.start_ns,
                end_ns,
                attributes: attrs,
                error,
            },
        );
        self.tracer.exporter.push(spans);
    }
}

/// The usage attributes: every prompt token as `input_tokens` (the conventions count cache
/// reads and writes in it), the cache figures and reasoning on their own. A hit spent no
/// tokens: what it saved goes under `llm_relay.cache.saved.*` instead.
fn usage(attrs: &mut Attributes, u: &Usage, hit: bool) {
    if *u == Usage::default() {
        return;
    }
    if hit {
        attrs.set("llm_relay.cache.saved.input_tokens", u.prompt());
        attrs.set("llm_relay.cache.saved.output_tokens", u.output);
        return;
    }
    attrs.set("gen_ai.usage.input_tokens", u.prompt());
    attrs.set("gen_ai.usage.output_tokens", u.output);
    for (key, n) in [
        ("gen_ai.usage.cache_read.input_tokens", u.cache_read),
        ("gen_ai.usage.cache_creation.input_tokens", u.cache_write),
        ("llm_relay.usage.reasoning_tokens", u.reasoning),
    ] {
        if n > 0 {
            attrs.set(key, n);
        }
    }
}

/// Nanoseconds since the Unix epoch.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
