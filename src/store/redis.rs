//! The Redis/Valkey backend of the store: one truth for every replica.
//!
//! Rate-limit windows are sorted sets of admission times, checked and extended by one Lua script
//! (atomic on the server, timed by the server's clock, so replicas with skewed clocks agree);
//! usage figures are hashes (all time, per UTC day, per UTC month) incremented by one script
//! per request or per batch of usage kept while Redis was down. That script first claims the
//! batch's id (`SET NX`), so a call whose reply was lost after Redis applied it can be sent
//! again and counts once; claims of confirmed calls are deleted by the next call. Keys created
//! through the admin API are one hash of id → key record. Leases for the cache's single flight
//! across replicas are in `redis/lease.rs`. A small pool of blocking connections
//! serves the relay's threads; a failed connection is dropped, and the first failure and the
//! recovery are logged once each.
//!
//! A circuit breaker stands in front: after a failure every call fails at once (no connection,
//! no wait) for a back-off period (1 s, doubling to 8 s while failures go on); then one call
//! probes Redis, and the others keep failing fast until it answers. Redis Cluster is refused:
//! at start when the server answers (`INFO cluster`), and on first contact or a `MOVED` reply
//! otherwise (the scripts touch several keys in one step, which a cluster refuses across slots).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use super::pending::Batch;
use super::{redact, Admission, Down};
use crate::keys_file::StoredKey;
use crate::limits::{RateLimit, Verdict};
use crate::usage::{KeyUsage, KEEP_DAYS};
use crate::utc;
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
/// How long a usage call's claim is kept (a call sent again later than this would count
/// twice); a confirmed call's claim is deleted by the next call.
const CLAIM_TTL: u64 = KEEP_DAYS * 86_400;
/// Claims of confirmed calls deleted by one call at most (the rest wait for the next).
const FORGET_PER_CALL: usize = 64;
/// Claims waiting to be deleted at most (beyond, they are left to expire).
const FORGET_MAX: usize = 4096;

/// Sliding-window admission. KEYS[1] the key's window, KEYS[2] a sequence counter; ARGV[1]
/// per_minute, ARGV[2] per_hour (0 = none). Returns {admitted, limit, remaining, retry_after}.
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

/// Adds a batch of usage (one request's, or what was kept while Redis was down) once. KEYS[1]
/// the batch's claim, KEYS[2..1+f] claims of confirmed batches to delete, then per entry its
/// all-time, day and month hashes; ARGV[1] how long the claim is kept, ARGV[2] f, ARGV[3] the
/// number of counters n, ARGV[4..3+n] their names, then per entry: day TTL, month TTL,
/// last_used_at, n counter values. Returns 1 if applied now, 0 if this batch was applied before.
static ADD_USAGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local f = tonumber(ARGV[2])
for i = 2, 1 + f do redis.call('DEL', KEYS[i]) end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local n = tonumber(ARGV[3])
local a = 4 + n
local k = 2 + f
for e = 0, (#KEYS - 1 - f) / 3 - 1 do
  local day_ttl, month_ttl, last = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  for h = 0, 2 do
    local hash = KEYS[k + e * 3 + h]
    for c = 1, n do
      local v = tonumber(ARGV[a + 2 + c])
      if v > 0 then redis.call('HINCRBY', hash, ARGV[3 + c], v) end
    end
    if last > tonumber(redis.call('HGET', hash, 'last_used_at') or '0') then
      redis.call('HSET', hash, 'last_used_at', last)
    end
  end
  redis.call('EXPIRE', KEYS[k + e * 3 + 1], day_ttl)
  redis.call('EXPIRE', KEYS[k + e * 3 + 2], month_ttl)
  a = a + 3 + n
end
return 1
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

/// A usage call that failed (see [`Redis::record`]).
#[derive(Debug)]
pub enum Unrecorded {
    /// Nothing reached Redis: the figures can be summed with other pending usage.
    Unsent,
    /// Sent, reply lost: Redis may have applied it, so only this batch (with its id) may be
    /// sent again.
    InDoubt(Batch),
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

    /// Adds one request's figures, once: the call carries an id of its own, so when its reply
    /// is lost ([`Unrecorded::InDoubt`]) the same batch can be sent again.
    pub fn record(&self, key: &str, figures: &KeyUsage, now: u64) -> Result<(), Unrecorded> {
        let mut figures = figures.clone();
        figures.last_used_at = Some(now);
        let batch = Batch::new(vec![(key.to_string(), now / 86_400, figures)]);
        match self.add(&batch, now, false) {
            Ok(()) => Ok(()),
            Err(Failure::Unsent) => Err(Unrecorded::Unsent),
            Err(Failure::InDoubt) => Err(Unrecorded::InDoubt(batch)),
        }
    }

    /// Adds usage kept while Redis was down, exactly once per batch id (a retry of a batch
    /// whose answer was lost changes nothing). Expiry is what [`Redis::record`] would have set
    /// at the bucket's last use.
    pub fn add_pending(&self, batch: &Batch, now: u64) -> Result<(), Down> {
        self.add(batch, now, false).map_err(|_| Down)
    }

    /// [`Redis::add_pending`] even while the breaker is open: the last try at shutdown.
    pub fn add_pending_now(&self, batch: &Batch, now: u64) -> Result<(), Down> {
        self.add(batch, now, true).map_err(|_| Down)
    }

    /// Applies `batch` unless Redis has applied its id before; deletes claims of batches
    /// confirmed earlier on the way, and queues this one's for the next call.
    fn add(&self, batch: &Batch, now: u64, force: bool) -> Result<(), Failure> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let forget: Vec<String> = {
            let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
            let n = confirmed.len().min(FORGET_PER_CALL);
            // never this batch's own claim (a batch confirmed once is not sent again, but if
            // it were, its claim must hold)
            confirmed.drain(..n).filter(|id| *id != batch.id).collect()
        };
        let mut script = ADD_USAGE.prepare_invoke();
        script.key(claim_key(&batch.id));
        for id in &forget {
            script.key(claim_key(id));
        }
        script
            .arg(CLAIM_TTL)
            .arg(forget.len())
            .arg(KeyUsage::COUNTERS.len())
            .arg(KeyUsage::COUNTERS.as_slice());
        for (key, day, figures) in &batch.entries {
            let last = figures.last_used_at.unwrap_or(day * 86_400);
            let ttl = |keep: u64| (last + keep).saturating_sub(now).max(1);
            script
                .key(usage_key(key, None))
                .key(usage_key(key, Some(&utc::day(day * 86_400))))
                .key(usage_key(key, Some(&utc::month(day * 86_400))))
                .arg(ttl(KEEP_DAYS * 86_400))
                .arg(ttl((KEEP_DAYS + 31) * 86_400))
                .arg(last)
                .arg(figures.counters().as_slice());
        }
        match self.attempt(force, |c| script.invoke::<i64>(c)) {
            Ok(_) => {
                self.to_forget([batch.id.clone()]);
                Ok(())
            }
            Err(Failure::Unsent) => {
                // the claims to delete never left: keep them for the next call
                self.to_forget(forget);
                Err(Failure::Unsent)
            }
            // they may have been deleted; if not, they expire
            Err(Failure::InDoubt) => Err(Failure::InDoubt),
        }
    }

    /// Queues claims of confirmed batches for deletion by the next usage call (beyond
    /// `FORGET_MAX` waiting, they are left to expire).
    fn to_forget(&self, ids: impl IntoIterator<Item = String>) {
        let mut c = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        let room = FORGET_MAX.saturating_sub(c.len());
        c.extend(ids.into_iter().take(room));
    }

    /// The figures of each hash in `hashes`.
    fn read(&self, hashes: &[String]) -> Result<Vec<KeyUsage>, Down> {
        let mut p = redis::pipe();
        for h in hashes {
            p.cmd("HGETALL").arg(h);
        }
        let maps: Vec<HashMap<String, u64>> = self.run(|c| p.query(c))?;
        Ok(maps
            .iter()
            .map(|m| {
                let c = KeyUsage::COUNTERS.map(|f| m.get(f).copied().unwrap_or(0));
                KeyUsage::from_counters(c, m.get("last_used_at").copied())
            })
            .collect())
    }

    pub fn period(&self, key: &str, now: u64) -> Result<(KeyUsage, KeyUsage), Down> {
        let hashes = [
            usage_key(key, Some(&utc::day(now))),
            usage_key(key, Some(&utc::month(now))),
        ];
        let mut figures = self.read(&hashes)?.into_iter();
        Ok((
            figures.next().unwrap_or_default(),
            figures.next().unwrap_or_default(),
        ))
    }

    pub fn totals(&self, key: &str, since: Option<u64>, now: u64) -> Result<KeyUsage, Down> {
        let Some(since) = since else {
            return Ok(self
                .read(&[usage_key(key, None)])?
                .pop()
                .unwrap_or_default());
        };
        let mut sum = KeyUsage::default();
        for (_, u) in self.days(key, since, now)? {
            sum.add(&u);
        }
        Ok(sum)
    }

    pub fn days(&self, key: &str, since: u64, now: u64) -> Result<Vec<(String, KeyUsage)>, Down> {
        let since = since.max(now.saturating_sub(KEEP_DAYS * 86_400));
        let days: Vec<String> = (since / 86_400..=now / 86_400)
            .map(|d| utc::day(d * 86_400))
            .collect();
        let hashes: Vec<String> = days.iter().map(|d| usage_key(key, Some(d))).collect();
        let figures = self.read(&hashes)?;
        Ok(days
            .into_iter()
            .zip(figures)
            .filter(|(_, u)| u.requests > 0)
            .collect())
    }

    pub fn forget(&self, key: &str) -> Result<(), Down> {
        self.run(|c| {
            redis::cmd("DEL")
                .arg(format!("{PREFIX}rl:{key}"))
                .query::<()>(c)
        })
    }

    /// Keys created through the admin API on any replica.
    pub fn keys(&self) -> Result<Vec<StoredKey>, Down> {
        let all: HashMap<String, String> =
            self.run(|c| redis::cmd("HGETALL").arg(format!("{PREFIX}keys")).query(c))?;
        let mut keys: Vec<StoredKey> = all
            .values()
            .filter_map(|v| match serde_json::from_str(v) {
                Ok(k) => Some(k),
                Err(e) => {
                    log::error(&format!(
                        "a key record in Redis is unreadable, skipped: {e}"
                    ));
                    None
                }
            })
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    /// Creates or replaces a key record.
    pub fn put_key(&self, key: &StoredKey) -> Result<(), Down> {
        let json = serde_json::to_string(key).map_err(|_| Down)?;
        self.run(|c| {
            redis::cmd("HSET")
                .arg(format!("{PREFIX}keys"))
                .arg(&key.id)
                .arg(json)
                .query::<()>(c)
        })
    }

    /// Deletes a key record; `false` if there was none.
    pub fn delete_key(&self, id: &str) -> Result<bool, Down> {
        let n: u64 = self.run(|c| {
            redis::cmd("HDEL")
                .arg(format!("{PREFIX}keys"))
                .arg(id)
                .query(c)
        })?;
        Ok(n > 0)
    }
}

/// The claim of a usage batch (what makes it count once).
fn claim_key(id: &str) -> String {
    format!("{PREFIX}usage-batch:{id}")
}

/// The hash of a key's figures: all time (`period` None), a day or a month.
fn usage_key(key: &str, period: Option<&str>) -> String {
    match period {
        Some(p) => format!("{PREFIX}usage:{key}:{p}"),
        None => format!("{PREFIX}usage:{key}"),
    }
}

mod lease;
mod owners;
mod responses;

#[cfg(test)]
mod tests;
