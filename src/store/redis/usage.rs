//! Usage figures in Redis: hashes per key (all time, per UTC day, per UTC month) incremented
//! by one Lua script per request or per batch kept while Redis was down, which first claims
//! the batch's id (`SET NX`) so a call whose reply was lost counts once when sent again;
//! claims of confirmed calls are deleted by the next call.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{Down, Failure, Redis, PREFIX};
use crate::store::pending::Batch;
use crate::usage::{KeyUsage, KEEP_DAYS};
use crate::utc;

/// How long a usage call's claim is kept (a call sent again later than this would count
/// twice); a confirmed call's claim is deleted by the next call.
const CLAIM_TTL: u64 = KEEP_DAYS * 86_400;
/// Claims of confirmed calls deleted by one call at most (the rest wait for the next).
const FORGET_PER_CALL: usize = 64;
/// Claims waiting to be deleted at most (beyond, they are left to expire).
const FORGET_MAX: usize = 4096;

/// Adds a batch of usage (one request's, or what was kept while Redis was down) once. `KEYS[1]`
/// the batch's claim, `KEYS[2..1+f]` claims of confirmed batches to delete, then per entry its
/// all-time, day and month hashes; `ARGV[1]` how long the claim is kept, `ARGV[2]` f, `ARGV[3]` the
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

/// A usage call that failed (see [`Redis::record`]).
#[derive(Debug)]
pub enum Unrecorded {
    /// Nothing reached Redis: the figures can be summed with other pending usage.
    Unsent,
    /// Sent, reply lost: Redis may have applied it, so only this batch (with its id) may be
    /// sent again.
    InDoubt(Batch),
}

impl Redis {
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
