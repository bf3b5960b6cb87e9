//! Leases in Redis: a name held by one owner for a time, taken with `SET NX PX`, renewed and
//! released only by its owner (one Lua script each, so a lease that expired and was taken by
//! another is never extended or deleted by the first). The cache's single flight across
//! replicas (`cache/fleet.rs`) holds one per key going upstream.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Down, Redis, PREFIX};

/// `ARGV[1]` the owner, `ARGV[2]` milliseconds: extends the lease `KEYS[1]` if the owner holds it.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// `ARGV[1]` the owner: deletes the lease `KEYS[1]` if the owner holds it.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

fn lease_key(name: &str) -> String {
    format!("{PREFIX}lease:{name}")
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Redis {
    /// Takes the lease `name` for `owner` for `ttl`, unless someone holds it.
    pub fn lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, Down> {
        self.run(|c| {
            redis::cmd("SET")
                .arg(lease_key(name))
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query::<Option<String>>(c)
        })
        .map(|set| set.is_some())
    }

    /// Extends the lease `name` to `ttl` from now if `owner` still holds it.
    pub fn renew_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, Down> {
        self.run(|c| {
            RENEW
                .key(lease_key(name))
                .arg(owner)
                .arg(millis(ttl))
                .invoke::<i64>(c)
        })
        .map(|n| n == 1)
    }

    /// Ends the lease `name` if `owner` holds it.
    pub fn release_lease(&self, name: &str, owner: &str) -> Result<(), Down> {
        self.run(|c| RELEASE.key(lease_key(name)).arg(owner).invoke::<i64>(c))
            .map(drop)
    }

    /// Whether anyone holds the lease `name`.
    pub fn leased(&self, name: &str) -> Result<bool, Down> {
        self.run(|c| redis::cmd("EXISTS").arg(lease_key(name)).query::<i64>(c))
            .map(|n| n > 0)
    }
}
