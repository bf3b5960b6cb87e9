//! The access gate every request passes first: which key it needs, whether it presented one,
//! whether that key is within its budget and rate limit; and afterwards, charging its usage.
//!
//! Routing calls [`Gate::check`] first and gives the request's `Exchange` the admitted key and
//! its [`Gate::meter`]; the exchange charges the usage once, when the answer's tokens are known
//! (before its last bytes, so the client's next request sees the charge). Everything after the
//! gate only sees the [`Client`] (key id, name, limits), never the key.

use std::sync::Arc;

use tiny_http::Request;

use crate::auth::{self, Client, Need, Refused};
use crate::budget::{self, Budget, Price};
use crate::config::Config;
use crate::error::ApiError;
use crate::exchange::{json_content_type, Exchange, Meter};
use crate::key_store::{self, KeyStore};
use crate::limits::RateLimit;
use crate::log::{self, Access};
use crate::objects;
use crate::store::{Down, OnUnavailable, Owners, Responses, Store};
use crate::usage::Outcome;

/// Keys, limits, budgets and usage, shared by all workers.
#[derive(Debug)]
pub struct Gate {
    pub keys: KeyStore,
    /// Windows and figures; shared with the gate a reload replaces, so they survive a SIGHUP.
    pub store: Arc<Store>,
    /// Who owns each object created through the relay; shared like `store`.
    pub owners: Arc<Owners>,
    /// Stored translated responses (`stored.rs`).
    pub responses: Arc<Responses>,
    /// The top-level `rate_limit` and `budget`, for keys that set none of their own.
    pub default_limit: RateLimit,
    pub default_budget: Budget,
    pub prices: Arc<[Price]>,
}

/// Why a request was refused, with the error it is answered with.
#[derive(Debug)]
pub enum Refusal {
    /// No valid key for the route: a 401.
    Unauthorized(ApiError),
    /// A valid key over its budget or rate limit (429), or the shared state down (503), with
    /// the headers that say when to retry; it counts as the key's usage.
    Limited {
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
    /// its store (windows, figures, Redis connections) carries over; a changed `state` section
    /// takes effect after a restart.
    pub fn new(config: &Config, previous: Option<&Gate>) -> Result<Gate, String> {
        let store = match previous {
            Some(p) => {
                if p.store.config != config.state {
                    log::warn("the `state` section changed; it takes effect only after a restart");
                }
                Arc::clone(&p.store)
            }
            None => Arc::new(Store::open(&config.state)?),
        };
        let owners = match previous {
            Some(p) => Arc::clone(&p.owners),
            None => {
                let owners = Owners::open(config.state.dir.as_deref(), store.redis().cloned())?;
                if owners.in_memory() && config.auth.enabled() {
                    log::warn(
                        "the owners of files, batches and other objects created through the \
                         relay are kept in memory only: after a restart only the admin key \
                         reaches them; set `state.dir` or `state.redis` to keep them",
                    );
                }
                Arc::new(owners)
            }
        };
        let responses = match previous {
            Some(p) => Arc::clone(&p.responses),
            None => Arc::new(Responses::open(
                config.state.dir.as_deref(),
                store.redis().cloned(),
            )?),
        };
        Ok(Gate {
            responses,
            keys: KeyStore::open(&config.auth, store.redis().cloned())?,
            store,
            owners,
            default_limit: config.rate_limit,
            default_budget: config.budget,
            prices: config.prices.clone().into(),
        })
    }

    /// Checks `req` for `route` (the path without `/v1`). `Ok(None)`: no key needed (or auth is
    /// off); `Ok(Some(client))`: a valid client key within its budget and limit, now counted.
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
        // the admin key reaches every owned object (and is neither limited nor budgeted)
        if need == Need::Client
            && objects::Route::of(req.method().as_str(), route).is_owned()
            && self.keys.is_admin(presented)
        {
            return Ok(Some(Client {
                key_id: objects::ADMIN.to_string(),
                name: "admin key".to_string(),
                rate_limit: RateLimit::default(),
                budget: Budget::default(),
                models: Vec::new(),
                routes: Vec::new(),
            }));
        }
        let client = self
            .keys
            .client(presented)
            .map_err(|why| Box::new(Refusal::from(auth::unauthorized(why, false))))?;
        if need == Need::Metrics {
            return Ok(None);
        }
        let refuse = |error: ApiError, headers: Vec<(String, String)>, client: &Client| {
            Box::new(Refusal::Limited {
                error,
                headers,
                client: client.clone(),
            })
        };
        let budget = client.budget.or(self.default_budget);
        if !budget.is_empty() {
            let now = crate::util::now_secs();
            match self.store.period(&client.key_id, now) {
                Ok((day, month)) => {
                    if let Err(over) = budget.check(&client.key_id, &day, &month, now) {
                        return Err(refuse(over.error(), over.headers(), &client));
                    }
                }
                Err(Down) => self.unavailable(&client)?,
            }
        }
        let limit = client.rate_limit.or(self.default_limit);
        match self.store.admit(&client.key_id, limit) {
            Ok(Ok(_)) => Ok(Some(client)),
            Ok(Err(verdict)) => {
                let error = ApiError::new(
                    429,
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    format!(
                        "rate limit reached for key `{}` ({} requests); retry after {} s",
                        client.key_id, verdict.limit, verdict.retry_after
                    ),
                );
                Err(refuse(error, verdict.headers(), &client))
            }
            Err(Down) => {
                self.unavailable(&client)?;
                Ok(Some(client))
            }
        }
    }

    /// Redis is down: `Err` (503) with `on_unavailable: refuse`, `Ok` (no limit) with `allow`.
    fn unavailable(&self, client: &Client) -> Result<(), Box<Refusal>> {
        crate::metrics::state_bypass(self.store.config.on_unavailable == OnUnavailable::Allow);
        match self.store.config.on_unavailable {
            OnUnavailable::Allow => Ok(()),
            OnUnavailable::Refuse => Err(Box::new(Refusal::Limited {
                error: key_store::unavailable(),
                headers: vec![("Retry-After".to_string(), "1".to_string())],
                client: client.clone(),
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
            Refusal::Limited {
                error,
                headers: limit_headers,
                client,
            } => {
                match error.code {
                    "rate_limit_exceeded" => crate::metrics::rate_limited(),
                    "budget_exceeded" => crate::metrics::budget_exceeded(),
                    _ => {}
                }
                let meter = self.meter(&client);
                ex.admit(client, meter);
                headers.extend(limit_headers);
                error
            }
        };
        let body = ex.error_body(&error);
        ex.access.error_code = Some(error.code);
        ex.respond(error.status, &headers, body);
    }

    /// What charges a request of `client` to its usage: requests, tokens (cache reads and
    /// writes, reasoning), cost by `prices` of the model sent upstream, errors; a cache hit's
    /// tokens and cost count as saved.
    pub fn meter(&self, client: &Client) -> Meter {
        let (store, prices) = (Arc::clone(&self.store), Arc::clone(&self.prices));
        let key_id = client.key_id.clone();
        Box::new(move |access: &Access| {
            // priced as the model the upstream was sent (an endpoint's override), not an alias
            let model = access.priced_model();
            let outcome = Outcome {
                status: access.status,
                usage: access.usage,
                cache_hit: access.cache == Some(log::CacheResult::Hit),
                cost_micro_usd: budget::cost_micros(&prices, model, &access.usage),
            };
            let now = crate::util::now_secs();
            store.record(&key_id, &outcome.figures(now), now);
        })
    }

    /// `Err` (403 `model_not_allowed`) if the request's key may not call `model`.
    pub fn allow_model(&self, client: Option<&Client>, model: &str) -> Result<(), ApiError> {
        match client {
            Some(c) if !budget::model_allowed(&c.models, model) => Err(budget::not_allowed(model)),
            _ => Ok(()),
        }
    }
}
