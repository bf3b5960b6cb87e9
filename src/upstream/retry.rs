//! Failover: one request, tried on up to `retries + 1` different endpoints that serve its model.
//!
//! An attempt fails on a transport error (refused, reset, DNS, TLS), a timeout before the
//! response head, or a 429/500/502/503/504 status. A request whose own body failed while it was
//! streamed (`error::ClientFault`: too large, too slow, cut by the client) ends with the
//! client's error and does not count against the endpoint. Anything else, other 4xx included, is the
//! answer. The loop only ever hands back a response head: the caller decides what reaches the
//! client, so nothing is retried once the client has seen a byte. When every attempt failed,
//! the error names each endpoint tried and why; a single attempt keeps the core's behaviour
//! (its status response passes through, its transport error is a 502/504).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::Body;

use super::balance::{self, Candidate};
use super::endpoints::Api;
use super::{transport_error, Endpoint, Reply, Sent, Upstream};
use crate::error::{ApiError, ClientFault};
use crate::log;
use crate::telemetry::Trace;

/// Statuses that send a request to another endpoint.
pub const RETRYABLE: &[u16] = &[429, 500, 502, 503, 504];

/// Pause before the second attempt; doubles for each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What an attempt is given: the endpoint, and with a `trace` the `traceparent` naming the
/// attempt's own span, sent instead of the client's.
pub type Call<'a> = dyn FnMut(&Endpoint, Option<&str>) -> Result<Reply, ureq::Error> + 'a;

/// Runs `call` on endpoints that serve `model` (`""` = any endpoint) and speak `api` (`None` =
/// any API) until one answers; each attempt is a span of `trace` when there is one.
pub fn send(
    up: &Upstream,
    model: &str,
    api: Option<Api>,
    trace: Option<&Trace>,
    call: &mut Call<'_>,
) -> Result<Sent, ApiError> {
    send_limited(up, model, api, false, trace, call)
}

/// [`send`], with `once`: a single attempt (a request whose body cannot be sent twice).
pub fn send_limited(
    up: &Upstream,
    model: &str,
    api: Option<Api>,
    once: bool,
    trace: Option<&Trace>,
    call: &mut Call<'_>,
) -> Result<Sent, ApiError> {
    let speaks = |ep: &Endpoint| api.map_or(true, |a| ep.config.api.speaks(a));
    // Every endpoint that may answer; each attempt refreshes their health and takes its choice
    // out (one list a request, no other).
    let mut candidates: Vec<Candidate> = up
        .endpoints
        .iter()
        .enumerate()
        .filter(|(_, ep)| speaks(ep) && (model.is_empty() || ep.config.serves(model)))
        .map(|(index, ep)| Candidate {
            index,
            weight: ep.config.weight,
            cooling_until: None,
        })
        .collect();
    if candidates.is_empty() && !up.endpoints.iter().any(speaks) {
        let api = api.map_or("", Api::name);
        return Err(ApiError::new(
            404,
            "invalid_request_error",
            "no_endpoint_for_api",
            format!(
                "no endpoint in `upstreams` speaks the `{api}` API this route needs; add one with \
                 \"api\": \"{api}\" (or a provider preset that speaks it)"
            ),
        ));
    }
    if candidates.is_empty() {
        return Err(ApiError::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!(
                "no endpoint in `upstreams` serves the model \"{model}\"; add it (or a glob such \
                 as \"{}*\") to the `models` of an endpoint",
                model.split('-').next().unwrap_or(model)
            ),
        ));
    }
    let retries = if once { 0 } else { up.retries as usize };
    let max_attempts = candidates.len().min(retries + 1);
    let mut reasons: Vec<String> = Vec::new();
    let mut last_error = None;
    let mut last_status = 0;
    for attempt in 0..max_attempts {
        let now = Instant::now();
        for c in &mut candidates {
            c.cooling_until = up
                .endpoints
                .get(c.index)
                .and_then(|ep| ep.health.cooling_until(now));
        }
        let Some(i) = balance::choose(&candidates, crate::util::random()) else {
            break;
        };
        candidates.retain(|c| c.index != i);
        let Some(ep) = up.endpoints.get(i) else {
            break;
        };
        let counters = &ep.health.counters;
        if attempt > 0 {
            std::thread::sleep(backoff(attempt));
            counters.retries.fetch_add(1, Ordering::Relaxed);
            crate::metrics::retry(&ep.config.name);
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let last = attempt + 1 == max_attempts;
        let name = &ep.config.name;
        let span = trace.map(|t| {
            let sent_model = ep.config.model.as_deref().unwrap_or(model);
            (t, t.attempt(name, &ep.config.url, sent_model))
        });
        let result = call(ep, span.as_ref().map(|(_, s)| s.traceparent.as_str()));
        let status = result.as_ref().ok().map(|r| r.response.status().as_u16());
        let answered = status.is_some_and(|s| !RETRYABLE.contains(&s) || (attempt == 0 && last));
        if let Some((t, started)) = span {
            let error = result.as_ref().err().map(short_reason);
            t.attempt_done(started, status, error.as_deref(), answered);
        }
        match result {
            Ok(reply) => {
                let status = reply.response.status().as_u16();
                if !RETRYABLE.contains(&status) {
                    ep.health.success();
                    return Ok(sent(ep, reply));
                }
                let wait = retry_after(&reply.response).filter(|_| status == 429);
                up.failed(ep, wait);
                if attempt == 0 && last {
                    return Ok(sent(ep, reply)); // nothing to fail over to: pass it through
                }
                let reason = format!("HTTP {status}");
                if !last {
                    log::warn(&format!(
                        "upstream {name} answered {status}; trying another endpoint"
                    ));
                }
                reasons.push(format!("{name} ({}): {reason}", ep.config.url));
                last_status = status;
                last_error = None;
            }
            Err(ureq::Error::Http(e)) => {
                // The request could not be built (a header value the client sent): its fault,
                // not the endpoint's, and no other endpoint could send it either.
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!("the request cannot be sent upstream: {e}"),
                ));
            }
            Err(ureq::Error::Io(io)) if ClientFault::of(&io).is_some() => {
                // The client's body failed while it was being streamed (too large, too slow,
                // cut): the upstream saw an aborted request, and the endpoint did nothing wrong.
                let fault = ClientFault::of(&io).cloned();
                return Err(fault.unwrap_or_else(|| ApiError::internal(io.to_string())));
            }
            Err(e) => {
                up.failed(ep, None);
                let err = transport_error(&ep.config.url, &e);
                if !last {
                    log::warn(&format!(
                        "upstream {name} failed ({}); trying another endpoint",
                        short_reason(&e)
                    ));
                }
                reasons.push(format!("{name} ({}): {}", ep.config.url, short_reason(&e)));
                last_status = err.status;
                last_error = Some(err);
            }
        }
    }
    if let (Some(err), 1) = (&last_error, reasons.len()) {
        return Err(err.clone());
    }
    let status = match last_status {
        429 | 503 | 504 => last_status,
        _ => 502,
    };
    Err(ApiError::new(
        status,
        "upstream_error",
        "all_upstreams_failed",
        format!(
            "all {} upstream endpoints tried failed: {}",
            reasons.len(),
            reasons.join("; ")
        ),
    ))
}

fn sent(ep: &Endpoint, reply: Reply) -> Sent {
    let (whole, held) = reply.whole.unzip();
    Sent {
        _held: held,
        whole,
        response: reply.response,
        base: ep.base.clone(),
        endpoint: ep.name.clone(),
    }
}

/// The pause before attempt number `attempt` (1 = the first retry).
fn backoff(attempt: usize) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let v = response.headers().get("retry-after")?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// What went wrong, in a few words.
fn short_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
