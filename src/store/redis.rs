//! The Redis/Valkey backend of the store: one truth for every replica.
//!
//! Rate-limit windows are sorted sets of admission times, checked and extended by one Lua script
//! (atomic on the server, timed by the server's clock, so replicas with skewed clocks agree);
//! usage figures are hashes (all time, per UTC day, per UTC month) incremented in one
//! MULTI/EXEC (usage kept while Redis was down is added by one script per batch that claims
//! the batch's id first, so it counts once); keys created through the admin API are one hash of id → key record. A small pool
//! of blocking connections serves the relay's threads; a failed connection is dropped, and the
//! first failure and the recovery are logged once each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

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

/// Adds a batch of usage kept while Redis was down, once. KEYS[1] the batch's claim, then per
/// entry its all-time, day and month hashes; ARGV[1] how long the claim is kept, ARGV[2] the
/// number of counters n, ARGV[3..2+n] their names, then per entry: day TTL, month TTL,
/// last_used_at, n counter values. Returns 1 if applied now, 0 if this batch was applied before.
static ADD_PENDING: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local n = tonumber(ARGV[2])
local a = 3 + n
for e = 0, (#KEYS - 1) / 3 - 1 do
  local day_ttl, month_ttl, last = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  for h = 1, 3 do
    local hash = KEYS[1 + e * 3 + h]
    for f = 1, n do
      local v = tonumber(ARGV[a + 2 + f])
      if v > 0 then redis.call('HINCRBY', hash, ARGV[2 + f], v) end
    end
    if last > tonumber(redis.call('HGET', hash, 'last_used_at') or '0') then
      redis.call('HSET', hash, 'last_used_at', last)
    end
  end
  redis.call('EXPIRE', KEYS[3 + e * 3], day_ttl)
  redis.call('EXPIRE', KEYS[4 + e * 3], month_ttl)
  a = a + 3 + n
end
return 1
",
    )
});

/// A Redis or Valkey server and a pool of connections to it.
pub struct Redis {
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
    pool: Mutex<Vec<Connection>>,
    available: AtomicBool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.shown).finish()
    }
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
        })
    }

    fn connect(&self) -> RedisResult<Connection> {
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Runs `f` on a pooled connection; a failure drops the connection and marks Redis down.
    fn run<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, Down> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let result = match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
        .and_then(|mut con| f(&mut con).map(|v| (v, con)));
        match result {
            Ok((v, con)) => {
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
            Err(e) => {
                metrics::state_error();
                if self.available.swap(false, Ordering::SeqCst) {
                    log::warn(&format!(
                        "Redis at {} cannot be reached ({e}); applying `state.on_unavailable` \
                         until it answers",
                        self.shown
                    ));
                    metrics::state_available(false);
                    // every pooled connection is suspect now
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(Down)
            }
        }
    }

    pub fn ping(&self) -> Result<(), Down> {
        self.run(|c| redis::cmd("PING").query::<String>(c).map(drop))
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

    pub fn record(&self, key: &str, figures: &KeyUsage, now: u64) -> Result<(), Down> {
        let hashes = [
            (usage_key(key, None), None),
            (
                usage_key(key, Some(&utc::day(now))),
                Some(KEEP_DAYS * 86_400),
            ),
            (
                usage_key(key, Some(&utc::month(now))),
                Some((KEEP_DAYS + 31) * 86_400),
            ),
        ];
        let mut p = redis::pipe();
        p.atomic();
        for (hash, ttl) in &hashes {
            for (field, v) in KeyUsage::COUNTERS.iter().zip(figures.counters()) {
                if v > 0 {
                    p.cmd("HINCRBY").arg(hash).arg(*field).arg(v).ignore();
                }
            }
            p.cmd("HSET")
                .arg(hash)
                .arg("last_used_at")
                .arg(now)
                .ignore();
            if let Some(ttl) = ttl {
                p.cmd("EXPIRE").arg(hash).arg(*ttl).ignore();
            }
        }
        self.run(|c| p.query::<()>(c))
    }

    /// Adds usage kept while Redis was down, exactly once per batch id (a retry of a batch
    /// whose answer was lost changes nothing). Expiry is what [`Redis::record`] would have set
    /// at the bucket's last use.
    pub fn add_pending(&self, batch: &Batch, now: u64) -> Result<(), Down> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let mut script = ADD_PENDING.prepare_invoke();
        script
            .key(format!("{PREFIX}usage-batch:{}", batch.id))
            .arg(KEEP_DAYS * 86_400)
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
        self.run(|c| script.invoke::<i64>(c)).map(drop)
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

/// The hash of a key's figures: all time (`period` None), a day or a month.
fn usage_key(key: &str, period: Option<&str>) -> String {
    match period {
        Some(p) => format!("{PREFIX}usage:{key}:{p}"),
        None => format!("{PREFIX}usage:{key}"),
    }
}

mod owners;
#[cfg(test)]
mod tests;
