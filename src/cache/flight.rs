//! Single-flight: concurrent identical misses make one upstream call.
//!
//! The first request for a key becomes the leader and goes upstream; later ones for the same
//! key wait until the leader is done (its [`Leader`] guard dropped, whatever happened), then
//! look the cache up again: a hit if the leader stored an answer, else they go upstream
//! themselves. A new leader looks the cache up once more too (`Cache::join`, here): its first
//! lookup may have come just before a previous leader stored the answer. With `state.redis`
//! the leader also leads for the fleet (`fleet.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{fleet, Entry, Plan};

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

#[derive(Default)]
pub struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

/// Holding this makes the current request the one that goes upstream for its key.
pub struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    /// The key's lease in Redis when the flight spans the fleet (`fleet.rs`), released with
    /// this guard.
    fleet: Option<super::fleet::FleetLease>,
}

impl Leader<'_> {
    /// Holds the fleet's lease of the key until this leader is done.
    pub fn hold(&mut self, lease: Option<super::fleet::FleetLease>) {
        self.fleet = lease;
    }
}

pub enum Role<'a> {
    Leader(Leader<'a>),
    Follower(Arc<Flight>),
    /// A leader that found the answer stored after all.
    Hit(Arc<super::Entry>),
}

impl Flights {
    /// The flight a leader of this replica has under way for `key`, without joining it.
    pub fn under_way(&self, key: &str) -> Option<Arc<Flight>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    pub fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(key) {
            return Role::Follower(Arc::clone(f));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.to_string(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: self,
            key: key.to_string(),
            flight,
            fleet: None,
        })
    }
}

impl Flight {
    /// Waits until the leader is done, at most `limit`.
    pub fn wait(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            done = match self.cv.wait_timeout(done, left) {
                Ok((d, _)) => d,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        drop(map);
        *self.flight.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.flight.cv.notify_all();
        // the entry (if any) is on disk: the fleet may go on
        self.fleet.take();
    }
}

/// The cache's single-flight entry points (local flights here, fleet leases in `fleet.rs`).
impl super::Cache {
    /// Where the request was received (its connection's thread, no worker held): when a leader
    /// of this replica is already fetching the plan's key, waits for it (at most `limit`) and
    /// returns the entry it stored; else, with `state.redis`, when another replica leads the
    /// key, waits for its entry the same way. `None`: no flight under way, or it stored
    /// nothing — the request goes on to a worker (and `join`) as any miss.
    pub fn follow_here(&self, plan: &Plan, limit: Duration) -> Option<Arc<Entry>> {
        if !plan.stores() {
            return None;
        }
        if let Some(flight) = self.flights.under_way(&plan.key) {
            flight.wait(limit);
            return self.lookup(plan).ok();
        }
        let fleet = self.fleet.as_ref()?;
        fleet.follow_elsewhere(&plan.key, limit, || self.lookup(plan).ok())
    }

    /// Joins the single flight for the plan's key: lead the upstream call (after looking the
    /// cache up once more: a previous leader may have stored the answer since this request
    /// missed), or wait for the leader. With `state.redis` a leader here also leads for the
    /// fleet, or waits up to `limit` (the first-byte timeout) for the replica that does.
    pub fn join(&self, plan: &Plan, limit: Duration) -> Role<'_> {
        match self.flights.join(&plan.key) {
            Role::Leader(mut guard) => {
                if let Ok(entry) = self.lookup(plan) {
                    return Role::Hit(entry);
                }
                if let Some(fleet) = &self.fleet {
                    match fleet.lead_or_wait(&plan.key, limit, || self.lookup(plan).ok()) {
                        fleet::Outcome::Hit(entry) => return Role::Hit(entry),
                        fleet::Outcome::Lead(lease) => guard.hold(lease),
                    }
                }
                Role::Leader(guard)
            }
            other => other,
        }
    }
}
