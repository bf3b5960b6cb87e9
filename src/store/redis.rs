//! The Redis/Valkey backend of the store: one truth for every replica.
//!
//! Rate-limit windows are sorted sets of admission times, checked and extended by one Lua script
//! (atomic on the server, timed by the server's clock, so replicas with skewed clocks agree);
//! usage figures are hashes (all time, per UTC day, per UTC month) incremented by one script
//! per request or per batch of usage kept while Redis was down (`redis/usage.rs`). That script
//! first claims the batch's id (`SET NX`), so a call whose reply was lost after Redis applied
//! it can be sent again and counts once; claims of confirmed calls are deleted by the next
//! call. Keys created through the admin API are one hash of id → key record (`redis/keys.rs`).
//! Leases for the cache's single flight across replicas are in `redis/lease.rs`. A small pool of blocking connections
//! serves the relay's threads; a failed connection is dropped, and the first failure and the
//! recovery are logged once each.
//!
//! A circuit breaker stands in front: after a failure every call fails at once (no connection,
//! no wait) for a back-off period (1 s, doubling to 8 s while failures go on); then one call
//! probes Redis, and the others keep failing fast until it answers. Redis Cluster is refused:
//! at start when the server answers (`INFO cluster`), and on first contact or a `MOVED` reply
//! otherwise (the scripts touch several keys in one step, which a cluster refuses across slots).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use super::{redact, Admission, Down};
use crate::limits::{RateLimit, Verdict};
use crate::{log, metrics};

/// Every key the relay writes starts with this.
const PREFIX: &str = "llm-relay:";
/// Connections kept open between requests.
const POOL: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long calls fail fast after the first failure; doubled after each failed probe.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Sliding-window admission. `KEYS[1]` the key's window, `KEYS[2]` a sequence counter; `ARGV[1]`
/// per_minute, `ARGV[2]` per_hour (0 = none). Returns {admitted, limit, remaining, retry_after}.
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_minute, per_hour = tonumber(ARGV[1]), tonumber(ARGV[2])
local keep = 60000
if per_hour > 0 then keep = 3600000 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - keep)
local refused, best = false, nil
for _, w in ipairs({{per_minute, 60000}, {per_hour, 3600000}}) do
  local max, window = w[1], w[2]
  if max > 0 then
    local used = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf')
    local v
    if used >= max then
      refused = true
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), '+inf',
        'WITHSCORES', 'LIMIT', used - max, 1)
      local wait = window - (now - tonumber(oldest[2]))
      v = {max, 0, math.max(1, math.ceil(wait / 1000))}
    else
      v = {max, max - used - 1, 0}
    end
    if best == nil or v[3] > best[3] or (v[3] == best[3] and v[2] < best[2]) then best = v end
  end
end
if refused then return {0, best[1], best[2], best[3]} end
redis.call('ZADD', KEYS[1], now, now .. '-' .. redis.call('INCR', KEYS[2]))
redis.call('PEXPIRE', KEYS[1], keep)
return {1, best[1], best[2], best[3]}
",
    )
});

/// Why a call did not reach Redis, or may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Nothing was sent: the breaker is open, the connection failed, or Redis is a cluster.
    Unsent,
    /// The call was sent and its reply not read: Redis may have applied it.
    InDoubt,
}

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Closed: go ahead.
    Go,
    /// Open and its back-off is over: this call tests Redis; the others fail fast meanwhile.
    Probe,
    /// Open: fail at once.
    FailFast,
}

/// The circuit breaker: closed while Redis answers; after a failure open for a back-off
/// period, then one probe at a time.
#[derive(Debug)]
struct Breaker {
    /// `Some(until)` while open.
    open_until: Option<Instant>,
    /// The next back-off period.
    backoff: Duration,
    /// A probe is under way.
    probing: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            open_until: None,
            backoff: BACKOFF_FIRST,
            probing: false,
        }
    }
}

impl Breaker {
    fn pass(&mut self, now: Instant) -> Pass {
        match self.open_until {
            None => Pass::Go,
            Some(until) if now < until || self.probing => Pass::FailFast,
            Some(_) => {
                self.probing = true;
                Pass::Probe
            }
        }
    }

    fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    /// A call failed at `now`: open (again) for the back-off, which doubles up to its cap.
    fn failed(&mut self, now: Instant) {
        self.open_until = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.probing = false;
    }
}

/// A Redis or Valkey server and a pool of connections to it.
pub struct Redis {
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
    pool: Mutex<Vec<Connection>>,
    available: AtomicBool,
    breaker: Mutex<Breaker>,
    /// A connection has shown the server is standalone (checked once).
    standalone: AtomicBool,
    /// The server turned out to be a Redis Cluster node: every call fails.
    cluster: AtomicBool,
    /// Claims of confirmed usage calls, deleted by the next usage call.
    confirmed: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.shown).finish()
    }
}

/// Whether `INFO cluster` says the server runs in cluster mode.
fn is_cluster(info: &str) -> bool {
    info.lines().any(|l| l.trim() == "cluster_enabled:1")
}

impl Redis {
    /// Checks the URL; connects on first use.
    pub fn open(url: &str) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "`state.redis` ({}) is not a usable Redis URL: {e}",
                redact(url)
            )
        })?;
        metrics::state_available(true);
        Ok(Redis {
            client,
            shown: redact(url),
            pool: Mutex::new(Vec::new()),
            available: AtomicBool::new(true),
            breaker: Mutex::new(Breaker::default()),
            standalone: AtomicBool::new(false),
            cluster: AtomicBool::new(false),
            confirmed: Mutex::new(Vec::new()),
        })
    }

    /// At start: `Err` when the server answers and is a Redis Cluster node. A server that
    /// cannot be reached now is checked on first contact instead (the relay starts while Redis
    /// is down).
    pub fn refuse_cluster(&self) -> Result<(), String> {
        // through the breaker: a server that cannot be reached opens it, so the first
        // requests do not each wait for it again
        let _ = self.run(|_| Ok(()));
        if self.cluster.load(Ordering::SeqCst) {
            return Err(self.cluster_refused().to_string());
        }
        Ok(())
    }

    /// The error a Redis Cluster node gets.
    fn cluster_refused(&self) -> redis::RedisError {
        redis::RedisError::from((
            redis::ErrorKind::ClientError,
            "Redis Cluster is not supported",
            format!(
                "`state.redis` ({}) is a Redis Cluster node (INFO cluster: cluster_enabled:1); \
                 llm-relay needs a standalone Redis or Valkey server (replicas and Sentinel \
                 are fine): its scripts touch several keys in one step, which a cluster \
                 refuses across hash slots",
                self.shown
            ),
        ))
    }

    fn connect(&self) -> RedisResult<Connection> {
        let mut con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        if !self.standalone.load(Ordering::SeqCst) {
            match redis::cmd("INFO").arg("cluster").query::<String>(&mut con) {
                Ok(info) if is_cluster(&info) => {
                    self.cluster.store(true, Ordering::SeqCst);
                    return Err(self.cluster_refused());
                }
                Ok(_) => self.standalone.store(true, Ordering::SeqCst),
                Err(e) if e.is_io_error() => return Err(e),
                // refused (a server still loading, or one that disables INFO, as some managed
                // ones do): asked again on the next new connection; a MOVED reply also tells
                Err(_) => {}
            }
        }
        Ok(con)
    }

    /// Runs `f` on a pooled connection through the breaker; a failure drops the connection
    /// and marks Redis down.
    fn run<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, Down> {
        self.attempt(false, f).map_err(|_| Down)
    }

    /// [`Redis::run`], saying whether a failed call may have reached Redis; `force`: try even
    /// while the breaker is open (the last flush at shutdown).
    fn attempt<T>(
        &self,
        force: bool,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        if self.cluster.load(Ordering::SeqCst) {
            return Err(Failure::Unsent);
        }
        let breaker = || self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let pass = breaker().pass(Instant::now());
        match pass {
            Pass::FailFast if force => {}
            Pass::FailFast => {
                metrics::state_fast_failure();
                return Err(Failure::Unsent);
            }
            Pass::Probe => metrics::state_probe(),
            Pass::Go => {}
        }
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let con = match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        };
        let result = match con {
            Ok(mut con) => f(&mut con).map(|v| (v, con)).map_err(|e| {
                if matches!(e.kind(), redis::ErrorKind::Moved | redis::ErrorKind::Ask) {
                    self.cluster.store(true, Ordering::SeqCst);
                    (self.cluster_refused(), Failure::Unsent)
                } else {
                    (e, Failure::InDoubt)
                }
            }),
            Err(e) => Err((e, Failure::Unsent)),
        };
        match result {
            Ok((v, con)) => {
                breaker().succeeded();
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < POOL {
                    pool.push(con);
                }
                drop(pool);
                if !self.available.swap(true, Ordering::SeqCst) {
                    log::info(&format!("Redis at {} answers again", self.shown));
                    metrics::state_available(true);
                }
                Ok(v)
            }
            Err((e, failure)) => {
                metrics::state_error();
                breaker().failed(Instant::now());
                if self.cluster.load(Ordering::SeqCst) {
                    if self.available.swap(false, Ordering::SeqCst) {
                        log::error(&e.to_string());
                        metrics::state_available(false);
                    }
                    return Err(Failure::Unsent);
                }
                if self.available.swap(false, Ordering::SeqCst) {
                    log::warn(&format!(
                        "Redis at {} cannot be reached ({e}); applying `state.on_unavailable` \
                         until it answers (calls fail at once for {} s, then one probes)",
                        self.shown,
                        BACKOFF_FIRST.as_secs()
                    ));
                    metrics::state_available(false);
                    // every pooled connection is suspect now
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(failure)
            }
        }
    }

    pub fn ping(&self) -> Result<(), Down> {
        self.run(|c| redis::cmd("PING").query::<String>(c).map(drop))
    }

    /// Counts one more use of `name` (a cache `repeat: "sequence"` count) and returns the
    /// count; it restarts from 1 after `window_secs` without a use.
    pub fn next_in_sequence(&self, name: &str, window_secs: u64) -> Result<u64, Down> {
        let key = format!("{PREFIX}cache-seq:{name}");
        let (n,): (u64,) = self.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs.max(1))
                .ignore()
                .query(c)
        })?;
        Ok(n)
    }

    pub fn admit(&self, key: &str, limit: RateLimit) -> Result<Admission, Down> {
        let r: Vec<i64> = self.run(|c| {
            ADMIT
                .key(format!("{PREFIX}rl:{key}"))
                .key(format!("{PREFIX}rl-seq"))
                .arg(limit.per_minute.unwrap_or(0))
                .arg(limit.per_hour.unwrap_or(0))
                .invoke(c)
        })?;
        let n = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        let v = Verdict {
            limit: n(1) as u32,
            remaining: n(2) as u32,
            retry_after: n(3),
        };
        Ok(if n(0) == 1 { Ok(Some(v)) } else { Err(v) })
    }

    pub fn forget(&self, key: &str) -> Result<(), Down> {
        self.run(|c| {
            redis::cmd("DEL")
                .arg(format!("{PREFIX}rl:{key}"))
                .query::<()>(c)
        })
    }
}

mod keys;
mod lease;
mod owners;
mod responses;
mod usage;

pub use usage::Unrecorded;

#[cfg(test)]
mod tests;
