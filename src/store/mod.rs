//! Per-key state that outlives a request — rate-limit windows, usage figures and the budgets
//! they are checked against — and where it lives: on this machine (memory, plus `usage.json`
//! under `state.dir`), or in Redis/Valkey shared by every replica (`state.redis`).
//!
//! The gate asks the [`Store`]; it never knows which backend answers. When Redis cannot be
//! reached, calls return [`Down`] and the gate applies `state.on_unavailable`; usage of
//! requests served meanwhile is kept here ([`pending`]) and added to Redis once it answers.

mod owners;
mod pending;
mod redis;
mod responses;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use self::owners::Owners;
use self::pending::Pending;
pub use self::redis::{Redis, Unrecorded};
pub use self::responses::{Responses, Stored};
use crate::limits::{Limiter, RateLimit, Verdict};
use crate::usage::{Book, KeyUsage};
use crate::{log, metrics};

/// How often the usage book is written to `state.dir` (what a `kill -9` can lose).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What to do with a request while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Answer 503 `state_unavailable` (limits and budgets are never exceeded).
    #[default]
    Refuse,
    /// Serve without limits or budgets, log a warning; usage of those requests is kept on this
    /// machine and added to Redis when it answers again.
    Allow,
}

/// The `state` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    dir: Option<String>,
    redis: Option<String>,
    on_unavailable: Option<OnUnavailable>,
    responses_store_days: Option<u64>,
}

/// The checked `state` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Where `usage.json` is kept without Redis; `None`: usage lives in memory only.
    pub dir: Option<PathBuf>,
    /// `redis://` (or `unix://`) URL of a Redis or Valkey server shared by all replicas.
    pub redis: Option<String>,
    pub on_unavailable: OnUnavailable,
    /// Days a translated `/v1/responses` answer is kept (`store` not false).
    pub responses_store_days: u64,
}

/// `state.responses_store_days` when unset (OpenAI keeps responses 30 days).
pub const RESPONSES_STORE_DAYS: u64 = 30;

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            redis: None,
            on_unavailable: OnUnavailable::default(),
            responses_store_days: RESPONSES_STORE_DAYS,
        }
    }
}

impl StateConfig {
    pub fn from_raw(raw: Option<RawState>) -> Result<StateConfig, String> {
        let mut raw = raw.unwrap_or_default();
        // "" is none, so a config can take it from an environment variable that may be unset
        raw.redis = raw.redis.filter(|url| !url.is_empty());
        if let Some(url) = &raw.redis {
            if !url.starts_with("redis://") && !url.starts_with("unix://") {
                return Err(format!(
                    "`state.redis` must be a redis:// URL, e.g. \"redis://127.0.0.1:6379/0\"; \
                     got \"{}\"",
                    redact(url)
                ));
            }
        }
        if raw.on_unavailable.is_some() && raw.redis.is_none() {
            return Err(
                "`state.on_unavailable` only applies with `state.redis`; set both or \
                        neither"
                    .to_string(),
            );
        }
        let days = raw.responses_store_days.unwrap_or(RESPONSES_STORE_DAYS);
        if !(1..=3650).contains(&days) {
            return Err(format!(
                "`state.responses_store_days` must be from 1 to 3650 (days a translated \
                 response is kept); got {days}"
            ));
        }
        Ok(StateConfig {
            responses_store_days: days,
            dir: raw.dir.map(PathBuf::from),
            redis: raw.redis,
            on_unavailable: raw.on_unavailable.unwrap_or_default(),
        })
    }

    /// One line for `--check`.
    pub fn summary(&self) -> String {
        match (&self.redis, &self.dir) {
            (Some(url), _) => format!(
                "state: redis {} (shared by replicas), on_unavailable {}\n",
                redact(url),
                match self.on_unavailable {
                    OnUnavailable::Refuse => "refuse",
                    OnUnavailable::Allow => "allow",
                }
            ),
            (None, Some(dir)) => format!(
                "state: this machine, usage written to {} every second\n",
                dir.join("usage.json").display()
            ),
            (None, None) => "state: this machine, usage in memory only (set `state.dir` to keep \
                             it across restarts)\n"
                .to_string(),
        }
    }
}

/// Adds the pending usage to Redis and updates the metric; `last`: the try at shutdown, made
/// even while the circuit breaker is open.
fn flush_pending(redis: &Redis, pending: &Pending, last: bool) -> Result<(), Down> {
    let now = crate::util::now_secs;
    let result = pending.flush(|batch| match last {
        true => redis.add_pending_now(batch, now()),
        false => redis.add_pending(batch, now()),
    });
    metrics::state_pending_usage(pending.requests());
    result
}

/// A URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!(
                "{}://***@{}",
                url.get(..scheme).unwrap_or(""),
                url.get(at + 1..).unwrap_or("")
            )
        }
        _ => url.to_string(),
    }
}

/// Redis could not be reached (the reason is already logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down;

/// The outcome of a rate-limit check: `Ok` admitted (figures when limited), `Err` refused.
pub type Admission = Result<Option<Verdict>, Verdict>;

/// Windows and figures, on this machine or in Redis.
#[derive(Debug)]
pub struct Store {
    pub config: StateConfig,
    limiter: Limiter,
    book: Arc<Book>,
    redis: Option<Arc<Redis>>,
    /// Usage recorded while Redis was down (always empty without Redis).
    pending: Arc<Pending>,
}

/// Starts the thread `name`, which runs `tick` every `FLUSH_EVERY` for the life of the process.
fn every_flush(name: &str, tick: impl Fn() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            tick();
        })
        .map(drop)
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

impl Store {
    /// Opens the store (reading `usage.json`, or preparing the Redis client without
    /// connecting yet, so a relay starts while Redis is down) and starts the writer of the book.
    pub fn open(config: &StateConfig) -> Result<Store, String> {
        let redis = match &config.redis {
            Some(url) => {
                let redis = Redis::open(url)?;
                redis.refuse_cluster()?;
                Some(Arc::new(redis))
            }
            None => None,
        };
        let dir = if redis.is_some() {
            None
        } else {
            config.dir.as_deref()
        };
        let book = Arc::new(Book::open(dir)?);
        let pending = Arc::new(Pending::default());
        if let Some(redis) = &redis {
            let (redis, pending) = (Arc::clone(redis), Arc::clone(&pending));
            every_flush("usage-retry", move || {
                if !pending.is_empty() {
                    let _ = flush_pending(&redis, &pending, false);
                }
            })?;
        }
        if dir.is_some() {
            let book = Arc::clone(&book);
            every_flush("usage-writer", move || {
                if let Err(e) = book.flush(crate::util::now_secs()) {
                    log::error(&format!("cannot save usage: {e}"));
                }
            })?;
        }
        Ok(Store {
            config: config.clone(),
            limiter: Limiter::default(),
            book,
            redis,
            pending,
        })
    }

    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    /// Admits one request for `key` under `limit`, or refuses it.
    pub fn admit(&self, key: &str, limit: RateLimit) -> Result<Admission, Down> {
        if limit.is_empty() {
            return Ok(Ok(None));
        }
        match &self.redis {
            Some(r) => r.admit(key, limit),
            None => Ok(self.limiter.admit(key, limit, Instant::now())),
        }
    }

    /// The key's figures for the UTC day and month containing `now`.
    pub fn period(&self, key: &str, now: u64) -> Result<(KeyUsage, KeyUsage), Down> {
        match &self.redis {
            Some(r) => r.period(key, now),
            None => Ok(self.book.period(key, now)),
        }
    }

    /// Counts a served request's figures; with Redis down they wait in [`Pending`] (a call
    /// whose reply was lost waits as it was sent, so it counts once).
    pub fn record(&self, key: &str, figures: &KeyUsage, now: u64) {
        match &self.redis {
            Some(r) => {
                match r.record(key, figures, now) {
                    Ok(()) => return,
                    Err(Unrecorded::Unsent) => self.pending.add(key, figures, now),
                    Err(Unrecorded::InDoubt(batch)) => self.pending.add_sent(batch),
                }
                metrics::state_pending_usage(self.pending.requests());
            }
            None => self.book.record(key, figures, now),
        }
    }

    /// Requests whose usage waits for Redis to answer again.
    pub fn pending_requests(&self) -> u64 {
        self.pending.requests()
    }

    /// All-time figures, or the sum of the UTC days from `since` on.
    pub fn totals(&self, key: &str, since: Option<u64>, now: u64) -> Result<KeyUsage, Down> {
        match &self.redis {
            Some(r) => r.totals(key, since, now),
            None => Ok(self.book.totals(key, since)),
        }
    }

    /// Per-day figures from `since` on, oldest first (days without use left out).
    pub fn days(&self, key: &str, since: u64, now: u64) -> Result<Vec<(String, KeyUsage)>, Down> {
        match &self.redis {
            Some(r) => r.days(key, since, now),
            None => Ok(self.book.days(key, since)),
        }
    }

    /// Forgets a revoked key's rate-limit window (its figures stay).
    pub fn forget(&self, key: &str) {
        match &self.redis {
            Some(r) => {
                let _ = r.forget(key);
            }
            None => self.limiter.forget(key),
        }
    }

    /// Writes the book now, or with Redis tries once more to add the pending usage (on
    /// shutdown; what Redis does not confirm is lost and logged).
    pub fn flush(&self) {
        if let Some(redis) = &self.redis {
            if !self.pending.is_empty() && flush_pending(redis, &self.pending, true).is_err() {
                log::error(&format!(
                    "exiting with the usage of {} requests not added to Redis (it cannot be \
                     reached)",
                    self.pending.requests()
                ));
            }
            return;
        }
        if let Err(e) = self.book.flush(crate::util::now_secs()) {
            log::error(&format!("cannot save usage: {e}"));
        }
    }

    /// For `/ready` and `/metrics`: `None` without Redis, else whether it answers now.
    pub fn reachable(&self) -> Option<bool> {
        self.redis.as_ref().map(|r| r.ping().is_ok())
    }
}
