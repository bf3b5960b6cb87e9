//! The access gate every request passes first: which key it needs, whether it presented one,
//! whether that key is within its rate limit; and afterwards, recording its usage.
//!
//! Routing calls [`Gate::check`] first; the admitted key's usage is then counted by the
//! request's `Exchange` once it is answered. Everything after the gate only sees the
//! [`Client`] (key id and name), never the key.

use std::sync::Arc;
use std::time::Instant;

use tiny_http::Request;

use crate::auth::{self, Client, KeyStore, Need, Refused};
use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::{json_content_type, Exchange};
use crate::limits::{Limiter, RateLimit};
use crate::usage::Usage;

/// Keys, limits and usage, shared by all workers.
#[derive(Debug)]
pub struct Gate {
    pub keys: KeyStore,
    /// Shared with the gate a reload replaces, so windows and figures survive a SIGHUP.
    pub limiter: Arc<Limiter>,
    pub usage: Arc<Usage>,
    /// The top-level `rate_limit`, for keys that set none of their own.
    pub default_limit: RateLimit,
}

/// Why a request was refused, with the error it is answered with.
#[derive(Debug)]
pub enum Refusal {
    /// No valid key for the route: a 401.
    Unauthorized(ApiError),
    /// A valid key over its limit: a 429 with the limit's headers; it counts as the key's usage.
    RateLimited {
        error: ApiError,
        headers: Vec<(String, String)>,
        client: Client,
    },
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Unauthorized(error)
    }
}

impl Gate {
    /// Opens the key store for `config`. On a reload, `previous` is the gate being replaced:
    /// its rate-limit windows and usage figures carry over.
    pub fn new(config: &Config, previous: Option<&Gate>) -> Result<Gate, String> {
        Ok(Gate {
            keys: KeyStore::open(&config.auth)?,
            limiter: previous.map_or_else(Arc::default, |p| Arc::clone(&p.limiter)),
            usage: previous.map_or_else(Arc::default, |p| Arc::clone(&p.usage)),
            default_limit: config.rate_limit,
        })
    }

    /// Checks `req` for `route` (the path without `/v1`). `Ok(None)`: no key needed (or auth is
    /// off); `Ok(Some(client))`: a valid client key within its limit, now counted.
    pub fn check(&self, route: &str, req: &Request) -> Result<Option<Client>, Box<Refusal>> {
        let need = auth::route_needs_key(route);
        match need {
            Need::Nothing => return Ok(None),
            Need::Metrics if !self.keys.protect_metrics() => return Ok(None),
            Need::Client if !self.keys.enabled() => return Ok(None),
            _ => {}
        }
        let presented = auth::presented_key(req);
        let presented = presented.as_deref().filter(|k| !k.is_empty());
        if need == Need::Admin {
            return if self.keys.is_admin(presented) {
                Ok(None)
            } else {
                Err(Box::new(auth::unauthorized(Refused::Wrong, true).into()))
            };
        }
        if need == Need::Metrics && self.keys.is_admin(presented) {
            return Ok(None);
        }
        let client = self
            .keys
            .client(presented)
            .map_err(|why| Box::new(Refusal::from(auth::unauthorized(why, false))))?;
        if need == Need::Metrics {
            return Ok(None);
        }
        let limit = client.rate_limit.or(self.default_limit);
        match self.limiter.admit(&client.key_id, limit, Instant::now()) {
            Ok(_) => Ok(Some(client)),
            Err(verdict) => Err(Box::new(Refusal::RateLimited {
                error: ApiError::new(
                    429,
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    format!(
                        "rate limit reached for key `{}` ({} requests); retry after {} s",
                        client.key_id, verdict.limit, verdict.retry_after
                    ),
                ),
                headers: verdict.headers(),
                client,
            })),
        }
    }

    /// Answers a refusal; it counts as usage of the key it names, if any.
    pub fn refuse(&self, ex: &mut Exchange, refusal: Refusal) {
        let mut headers = vec![json_content_type()];
        let error = match refusal {
            // with `WWW-Authenticate: Bearer`, as RFC 9110 asks of a 401
            Refusal::Unauthorized(error) => {
                headers.push(("WWW-Authenticate".to_string(), "Bearer".to_string()));
                error
            }
            Refusal::RateLimited {
                error,
                headers: limit_headers,
                client,
            } => {
                crate::metrics::rate_limited();
                ex.count_usage(Arc::clone(&self.usage), client.key_id);
                headers.extend(limit_headers);
                error
            }
        };
        let body = ex.error_body(&error);
        ex.respond(error.status, &headers, body);
    }
}
