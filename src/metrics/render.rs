//! `GET /metrics`: the registry rendered in the Prometheus text format (version 0.0.4), by
//! hand, labels sorted so the output is stable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{
    with, Histogram, BUSY_WORKERS, IN_FLIGHT, KEPT_REQUESTS, OVERHEAD_BUCKETS, TOTAL_BUCKETS,
    WORKERS,
};
use crate::log::CacheResult;

/// The whole registry in Prometheus text format.
pub fn render() -> String {
    let mut out = String::with_capacity(4096);
    let in_flight = IN_FLIGHT.load(Ordering::SeqCst);
    let busy = BUSY_WORKERS.load(Ordering::SeqCst);
    let workers = WORKERS.load(Ordering::Relaxed);
    with(|r| {
        header(
            &mut out,
            "llm_relay_requests_total",
            "counter",
            "Requests answered, by route and HTTP status.",
        );
        for ((route, status), n) in &r.requests {
            let _ = writeln!(
                out,
                "llm_relay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "llm_relay_cache_requests_total",
            "counter",
            "Cache lookups, by route and result (hit, miss, bypass).",
        );
        for ((route, result), n) in &r.cache {
            let _ = writeln!(
                out,
                "llm_relay_cache_requests_total{{route=\"{route}\",result=\"{}\"}} {n}",
                result.label()
            );
        }
        let hits: u64 = r
            .cache
            .iter()
            .filter(|((_, res), _)| *res == CacheResult::Hit)
            .map(|(_, n)| n)
            .sum();
        let misses: u64 = r
            .cache
            .iter()
            .filter(|((_, res), _)| *res == CacheResult::Miss)
            .map(|(_, n)| n)
            .sum();
        simple(
            &mut out,
            "llm_relay_cache_hits_total",
            "counter",
            "Cache hits, all routes.",
            hits,
        );
        simple(
            &mut out,
            "llm_relay_cache_misses_total",
            "counter",
            "Cache misses, all routes.",
            misses,
        );
        simple(
            &mut out,
            "llm_relay_cache_entries",
            "gauge",
            "Entries in the response cache.",
            r.cache_entries,
        );
        simple(
            &mut out,
            "llm_relay_cache_bytes",
            "gauge",
            "Bytes held by the response cache.",
            r.cache_bytes,
        );
        header(
            &mut out,
            "llm_relay_upstream_errors_total",
            "counter",
            "Failed upstream calls (transport errors, 5xx), by endpoint.",
        );
        for (endpoint, n) in &r.upstream_errors {
            let _ = writeln!(
                out,
                "llm_relay_upstream_errors_total{{endpoint=\"{}\"}} {n}",
                escape(endpoint)
            );
        }
        header(
            &mut out,
            "llm_relay_upstream_retries_total",
            "counter",
            "Upstream calls retried, by endpoint.",
        );
        for (endpoint, n) in &r.retries {
            let _ = writeln!(
                out,
                "llm_relay_upstream_retries_total{{endpoint=\"{}\"}} {n}",
                escape(endpoint)
            );
        }
        header(
            &mut out,
            "llm_relay_tokens_total",
            "counter",
            "Tokens of answers, by kind (input without cache, cache_read, cache_write, \
             cache_write_1h: part of cache_write, output, reasoning: part of output) and whether \
             the upstream or a cache hit served them.",
        );
        for ((served, kind), n) in &r.tokens {
            let _ = writeln!(
                out,
                "llm_relay_tokens_total{{kind=\"{kind}\",served=\"{served}\"}} {n}"
            );
        }
        header(
            &mut out,
            "llm_relay_web_searches_total",
            "counter",
            "Web searches the provider ran for the answers (Anthropic's server_tool_use), by \
             whether the upstream or a cache hit served them.",
        );
        for (served, n) in &r.web_searches {
            let _ = writeln!(
                out,
                "llm_relay_web_searches_total{{served=\"{served}\"}} {n}"
            );
        }
        simple(
            &mut out,
            "llm_relay_rate_limited_total",
            "counter",
            "Requests refused by a rate limit.",
            r.rate_limited,
        );
        simple(
            &mut out,
            "llm_relay_budget_exceeded_total",
            "counter",
            "Requests refused because their key's budget was used up.",
            r.budget_exceeded,
        );
        if let Some(up) = r.state_available {
            simple(
                &mut out,
                "llm_relay_state_available",
                "gauge",
                "1 while the shared state (state.redis) answers.",
                u8::from(up),
            );
            simple(
                &mut out,
                "llm_relay_state_errors_total",
                "counter",
                "Failed calls to the shared state (state.redis).",
                r.state_errors,
            );
            header(
                &mut out,
                "llm_relay_state_unavailable_requests_total",
                "counter",
                "Requests that met the shared state down, by what on_unavailable did.",
            );
            let _ = writeln!(
                out,
                "llm_relay_state_unavailable_requests_total{{action=\"allow\"}} {}",
                r.state_allowed
            );
            let _ = writeln!(
                out,
                "llm_relay_state_unavailable_requests_total{{action=\"refuse\"}} {}",
                r.state_refused
            );
            simple(
                &mut out,
                "llm_relay_state_fast_failures_total",
                "counter",
                "Calls to the shared state failed at once, without a connection, while its \
                 circuit breaker was open.",
                r.state_fast_failures,
            );
            simple(
                &mut out,
                "llm_relay_state_probes_total",
                "counter",
                "Single calls that tested whether the shared state answers again.",
                r.state_probes,
            );
            simple(
                &mut out,
                "llm_relay_state_pending_usage_requests",
                "gauge",
                "Requests whose usage waits for the shared state to answer again.",
                r.pending_usage,
            );
        }
        if r.tracing {
            simple(
                &mut out,
                "llm_relay_trace_spans_exported_total",
                "counter",
                "Spans the OTLP collector accepted.",
                r.trace_exported,
            );
            header(
                &mut out,
                "llm_relay_trace_spans_dropped_total",
                "counter",
                "Spans never exported, by reason: queue_full (the collector is slower than the \
                 traffic), export_failed (it refused or did not answer), rejected (it said so).",
            );
            for reason in ["queue_full", "export_failed", "rejected"] {
                let n = r.trace_dropped.get(reason).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "llm_relay_trace_spans_dropped_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        histograms(
            &mut out,
            "llm_relay_request_duration_seconds",
            "Total time from request to last byte, by route.",
            TOTAL_BUCKETS,
            &r.total,
        );
        histograms(
            &mut out,
            "llm_relay_overhead_seconds",
            "The relay's own time per upstream call: total minus upstream time, by route.",
            OVERHEAD_BUCKETS,
            &r.overhead,
        );
    });
    simple(
        &mut out,
        "llm_relay_in_flight_requests",
        "gauge",
        "Requests being handled now.",
        in_flight,
    );
    simple(
        &mut out,
        "llm_relay_busy_workers",
        "gauge",
        "Upstream worker threads (the `workers` pool) busy with a request now.",
        busy,
    );
    simple(
        &mut out,
        "llm_relay_workers",
        "gauge",
        "Worker threads in the pool.",
        workers,
    );
    simple(
        &mut out,
        "llm_relay_kept_requests_total",
        "counter",
        "Requests read by the worker that answered their connection's previous request (no \
         thread hand-off; see `server`).",
        KEPT_REQUESTS.load(Ordering::Relaxed),
    );
    out
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

pub(super) fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    by_route: &BTreeMap<&'static str, Histogram>,
) {
    header(out, name, "histogram", help);
    for (route, h) in by_route {
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
    }
}

/// Escapes a label value (backslash, quote, newline).
/// A label value escaped for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
