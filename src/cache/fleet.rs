//! Single flight across replicas, with `state.redis`: one upstream call per key for the fleet.
//!
//! The request that leads a key's single flight on its replica (`flight.rs`) also takes the
//! key's lease in Redis (`SET NX PX`, [`LEASE`] long, renewed every [`RENEW_EVERY`] by one
//! thread while held, released when the leader is done). If another replica holds it, this
//! one waits for the entry to appear in the shared directory (polling it, 20 ms at first, then
//! up to every 200 ms) or for the lease to end (then it tries to take it), at most the
//! first-byte timeout, and then goes upstream itself. A request that finds the lease held
//! where it was received waits there ([`Fleet::follow_elsewhere`]), holding no worker. A leader that crashes stops renewing:
//! its lease expires within [`LEASE`] and a waiting replica takes over. Redis down means no
//! fleet flight: each replica leads its own (the store logs the outage).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Entry;
use crate::store::Redis;

/// How long a lease lives without renewal (how long a crashed leader holds up the fleet).
pub const LEASE: Duration = Duration::from_secs(10);
/// How often the leases this process holds are renewed.
const RENEW_EVERY: Duration = Duration::from_secs(3);
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// The fleet's leases as this process sees them.
pub struct Fleet {
    redis: Arc<Redis>,
    /// Leases this process holds: name → owner token.
    held: Mutex<HashMap<String, String>>,
}

/// A lease held in Redis; released when dropped.
pub struct FleetLease {
    fleet: Arc<Fleet>,
    name: String,
    owner: String,
}

/// What waiting on the fleet gave.
pub enum Outcome {
    /// Go upstream (holding the lease, or without one when Redis is down or the wait ran out).
    Lead(Option<FleetLease>),
    /// Another replica stored the answer.
    Hit(Arc<Entry>),
}

fn held(m: &Mutex<HashMap<String, String>>) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fleet {
    /// The fleet on `redis`, with the thread that renews held leases.
    pub fn start(redis: Arc<Redis>) -> Arc<Fleet> {
        let fleet = Arc::new(Fleet {
            redis,
            held: Mutex::default(),
        });
        let renewer = Arc::clone(&fleet);
        let spawned = std::thread::Builder::new()
            .name("cache-fleet".to_string())
            .spawn(move || loop {
                std::thread::sleep(RENEW_EVERY);
                let leases: Vec<(String, String)> = held(&renewer.held)
                    .iter()
                    .map(|(n, o)| (n.clone(), o.clone()))
                    .collect();
                for (name, owner) in leases {
                    let _ = renewer.redis.renew_lease(&name, &owner, LEASE);
                }
            });
        if let Err(e) = spawned {
            crate::log::error(&format!("cannot start the cache fleet thread: {e}"));
        }
        fleet
    }

    /// Takes the lease `name`; `Ok(None)` while another holds it, `Err` when Redis is down.
    fn take(self: &Arc<Self>, name: &str) -> Result<Option<FleetLease>, crate::store::Down> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let owner = format!(
            "{} {} {}",
            crate::util::process_tag(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        if !self.redis.lease(name, &owner, LEASE)? {
            return Ok(None);
        }
        held(&self.held).insert(name.to_string(), owner.clone());
        Ok(Some(FleetLease {
            fleet: Arc::clone(self),
            name: name.to_string(),
            owner,
        }))
    }

    /// Leads the key `name` for the fleet, or waits (at most `limit`) for the replica that
    /// does: `look` finds the entry in the shared directory.
    pub fn lead_or_wait(
        self: &Arc<Self>,
        name: &str,
        limit: Duration,
        look: impl Fn() -> Option<Arc<Entry>>,
    ) -> Outcome {
        let deadline = Instant::now() + limit;
        let mut pause = FIRST_PAUSE;
        loop {
            match self.take(name) {
                // a leader that was done just before may have stored the answer
                Ok(Some(lease)) => {
                    return match look() {
                        Some(entry) => Outcome::Hit(entry),
                        None => Outcome::Lead(Some(lease)),
                    }
                }
                Err(_) => return Outcome::Lead(None),
                Ok(None) => {}
            }
            // another replica leads: wait for its entry, or for its lease to end
            match self.wait_out(name, deadline, &mut pause, &look) {
                Waited::Hit(entry) => return Outcome::Hit(entry),
                Waited::LeaseGone => {}
                Waited::GiveUp => return Outcome::Lead(None),
            }
        }
    }

    /// Where the request was received (its connection's thread, no worker held): when another
    /// replica leads `name`, waits (at most `limit`) for its entry (`look`) or for its lease to
    /// end. `None`: no other replica leads it (or this process does), the lease ended without
    /// an entry, the wait ran out or Redis is down — the request goes on to a worker (and
    /// [`Fleet::lead_or_wait`]) as any miss.
    pub fn follow_elsewhere(
        &self,
        name: &str,
        limit: Duration,
        look: impl Fn() -> Option<Arc<Entry>>,
    ) -> Option<Arc<Entry>> {
        if held(&self.held).contains_key(name) || !matches!(self.redis.leased(name), Ok(true)) {
            return None;
        }
        let mut pause = FIRST_PAUSE;
        match self.wait_out(name, Instant::now() + limit, &mut pause, &look) {
            Waited::Hit(entry) => Some(entry),
            Waited::LeaseGone | Waited::GiveUp => None,
        }
    }

    /// Polls (pausing `pause`, doubled each time up to [`MAX_PAUSE`]) until `look` finds the
    /// entry of the lease `name` another replica holds, the lease ends, or `deadline` passes.
    fn wait_out(
        &self,
        name: &str,
        deadline: Instant,
        pause: &mut Duration,
        look: &impl Fn() -> Option<Arc<Entry>>,
    ) -> Waited {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::GiveUp;
            }
            std::thread::sleep((*pause).min(left));
            *pause = (*pause * 2).min(MAX_PAUSE);
            if let Some(entry) = look() {
                return Waited::Hit(entry);
            }
            match self.redis.leased(name) {
                Ok(true) => continue,
                Ok(false) => return Waited::LeaseGone,
                Err(_) => return Waited::GiveUp,
            }
        }
    }
}

/// How waiting on another replica's lease ended.
enum Waited {
    /// Its entry appeared.
    Hit(Arc<Entry>),
    /// Its lease ended without one (the leader failed, or stored nothing).
    LeaseGone,
    /// The deadline passed, or Redis is down.
    GiveUp,
}

impl Drop for FleetLease {
    fn drop(&mut self) {
        held(&self.fleet.held).remove(&self.name);
        let _ = self.fleet.redis.release_lease(&self.name, &self.owner);
    }
}
