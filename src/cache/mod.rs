//! The response cache: pay once per identical request, answer every repeat from disk or memory.
//!
//! Owns the cache directory (no other module touches it). [`Cache::plan`] derives the keys of
//! a request (SHA-256 over route, scope and canonical body with the effective model, one per
//! model the config may send it to, see `key.rs`), its mode and `Cache-Control`;
//! [`Cache::lookup`] finds an entry that can answer in the shape asked for (memory tier, then
//! the verified file pair); [`Cache::store`] (`record.rs`) keeps a complete success; `serve.rs` answers a hit
//! in either mode. Around that: single-flight (`flight.rs`; across replicas with `state.redis`,
//! `fleet.rs`), the start-up scan (`scan.rs`, one replica of a shared directory at a time,
//! `lease.rs`) and upkeep (`upkeep.rs`) on one background thread, counters for `GET /cache/stats` (`counters.rs`), the field
//! diff of a miss (`why.rs`), portable cassettes (`cassette.rs`, scanned for credentials by
//! `secrets.rs`, pruned by `prune.rs`) and the dashboard's index, entry view and export of a
//! selection (`browse.rs`, over the same index). For evals: the request headers `cache.client_controls` allows
//! (`controls.rs`: a sample index and a namespace, both part of the key; a replay pace),
//! `cache.repeat: "sequence"` (`sequence.rs`) and the replay miss report (`miss_log.rs`).

mod apis;
pub mod browse;
mod cassette;
mod collect;
mod commands;
mod config;
mod controls;
mod counters;
mod field_diff;
mod fleet;
mod flight;
mod index;
mod key;
mod layout;
mod lease;
mod memory;
mod miss_log;
mod plan;
mod prune;
mod record;
mod replay;
mod scan;
mod secrets;
mod sequence;
mod serve;
mod since;
mod sketch;
mod store;
mod upkeep;
mod why;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::answer::Usage;
use crate::error::ApiError;
use crate::log;
pub use apis::plain_body as plain_answer;
pub use apis::{asks_usage, complete_answer};
pub use cassette::{export_command, export_keys, import_command, ExportFilter, Secrets};
pub use commands::{misses_command, scan_command, stats_command, why_command, WhyBound};
pub use config::{CacheConfig, Mode, RawCache, Repeat, Scope};
pub use counters::Counters;
pub use flight::{Leader, Role};
pub use key::check_namespace;
pub use plan::Plan;
pub use prune::{prune_command, PruneFilter};
pub use replay::Delivery;
pub use serve::{hit_answer, hit_headers, HitAnswer, StreamTap};
pub use since::parse_since;

/// One servable entry.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    /// The API route it answers (from its metadata).
    pub route: String,
    /// The stored response: a JSON body or SSE text.
    pub response: Vec<u8>,
    /// The answer's `usage` (`None`: it reports none, as a chat stream recorded without
    /// `include_usage`); its total is what a hit saves.
    pub usage: Option<Usage>,
    /// Unix time in seconds (millisecond precision) when it was written.
    pub created: f64,
    pub version: u32,
    /// A recorded stream's milliseconds before each event (`X-Relay-Cache-Timing`).
    pub gaps_ms: Vec<u32>,
    /// Its `.request` file: a memory hit stats it (built once, not on every hit).
    pub request: PathBuf,
}

/// What the cache did for a request: the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Miss,
    /// Went upstream on purpose (`no-cache`, or an entry of an older version with `override`).
    Refresh,
    /// `no-store`: the cache was not used.
    Bypass,
}

impl Status {
    /// The result the access log and metrics record.
    pub fn result(self) -> crate::log::CacheResult {
        match self {
            Status::Miss => crate::log::CacheResult::Miss,
            Status::Refresh => crate::log::CacheResult::Refresh,
            Status::Bypass => crate::log::CacheResult::Bypass,
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Status::Miss => "MISS",
            Status::Refresh => "REFRESH",
            Status::Bypass => "BYPASS",
        }
    }
}

pub struct Cache {
    pub config: CacheConfig,
    memory: memory::Memory,
    flights: flight::Flights,
    /// Single flight across replicas, with `state.redis`.
    fleet: Option<Arc<fleet::Fleet>>,
    hits: upkeep::HitBook,
    sequences: sequence::Sequences,
    /// `cache.miss_log`, open.
    miss_log: Option<miss_log::MissLog>,
    /// The recorded requests in memory: the closest entry of a replay miss, the dashboard's
    /// listing and search.
    index: index::Index,
    /// Answers this process's writes replaced, deleted by the upkeep thread after a grace period.
    replaced: collect::Replaced,
    pub counters: Counters,
}

/// Unix time in seconds, to the millisecond (entry ages are compared against whole seconds,
/// so whole-second timestamps would make a fresh entry look up to a second old).
pub fn now_precise() -> f64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ms as f64 / 1000.0
}

impl Cache {
    /// Opens (creating) the cache directory. Returns `None` when the cache is off. With
    /// `redis` (`state.redis`), single flight spans every replica using it, and so do the
    /// `repeat: "sequence"` counts.
    pub fn open(
        config: &CacheConfig,
        redis: Option<Arc<crate::store::Redis>>,
    ) -> Result<Option<Arc<Cache>>, String> {
        if !config.enabled {
            return Ok(None);
        }
        std::fs::create_dir_all(&config.dir).map_err(|e| {
            format!(
                "cannot create cache directory {}: {e}; set `cache.dir` to a writable directory",
                config.dir.display()
            )
        })?;
        let miss_log = config
            .miss_log
            .as_deref()
            .map(miss_log::MissLog::open)
            .transpose()?;
        Ok(Some(Arc::new(Cache {
            miss_log,
            memory: memory::Memory::new(config.memory_items, config.memory_bytes),
            flights: flight::Flights::default(),
            sequences: sequence::Sequences::new(redis.clone()),
            fleet: redis.map(fleet::Fleet::start),
            hits: upkeep::HitBook::load(&config.dir),
            index: index::Index::default(),
            replaced: collect::Replaced::default(),
            counters: Counters::default(),
            config: config.clone(),
        })))
    }

    /// The keys, mode and cache control of a request (see [`Plan::new`]); with `cache.repeat:
    /// "sequence"`, a request that names no sample gets the next of its key.
    pub fn plan(
        &self,
        route: &str,
        body: &Map<String, Value>,
        client: (crate::client_headers::ClientHeaders<'_>, &str),
        models: &[(String, bool)],
    ) -> Result<Plan, ApiError> {
        let mut plan = Plan::new(&self.config, route, body, client, models)?;
        if self.config.repeat == Repeat::Sequence && !plan.named_sample && !plan.control.no_store {
            let name = format!("{}:{}", plan.mode.name(), plan.key);
            let n = self.sequences.next(&name, self.config.repeat_window);
            plan.set_sample(n);
        }
        Ok(plan)
    }

    /// An entry that answers `plan` in the shape it asks for, or what to say instead (`MISS`,
    /// `REFRESH`, `BYPASS`).
    pub fn lookup(&self, plan: &Plan) -> Result<Arc<Entry>, Status> {
        let offline = plan.mode == Mode::Replay;
        if !offline {
            if plan.mode == Mode::Record || plan.control.no_cache {
                return Err(Status::Refresh);
            }
            if plan.control.no_store {
                return Err(Status::Bypass);
            }
        }
        let mut status = Status::Miss;
        let primaries = plan.candidates.iter().filter(|c| c.primary);
        // the plan's own namespace first, then (with the fallback) the shared entries
        let keys = primaries
            .clone()
            .map(|c| &c.key)
            .chain(primaries.filter_map(|c| c.fallback.as_ref()));
        for key in keys {
            let Some(entry) = self.find(key) else {
                continue;
            };
            if !apis::serves(
                &entry.route,
                &entry.response,
                entry.usage.is_some(),
                plan.delivery,
            ) {
                continue;
            }
            if !offline {
                let age = now_precise() - entry.created;
                if self.config.ttl.is_some_and(|ttl| age >= ttl.as_secs_f64()) {
                    continue;
                }
                if plan.control.max_age.is_some_and(|max| age >= max as f64) {
                    continue;
                }
                if self.config.override_old && entry.version < self.config.version {
                    status = Status::Refresh;
                    continue;
                }
            }
            return Ok(entry);
        }
        Err(status)
    }

    /// The entry `key` from memory or disk. A memory hit is served only while the `.request`
    /// on disk is still the one it came from (one `stat`: a refresh on another replica, or a
    /// newer write here, replaces it). A pair on disk that fails its checks is never
    /// returned; once its files are older than the scan's grace period (so no writer can be
    /// at work on them) and a re-read finds the same `.request`, it is quarantined as well.
    fn find(&self, key: &str) -> Option<Arc<Entry>> {
        let dir = &self.config.dir;
        if let Some((e, stamp)) = self.memory.get(key) {
            if store::stamp_of(&e.request) == Some(stamp) {
                return Some(e);
            }
            self.memory.remove(key);
        }
        let (meta, pair, read) = match store::load(dir, key) {
            store::Loaded::Absent => return None,
            store::Loaded::Found(meta, pair) => {
                // read once: the check and the entry's usage share the parse
                let read = apis::read(&meta.route, &pair.response);
                match apis::check_read(&meta.route, &pair.response, &read) {
                    Ok(_) => (meta, pair, read),
                    Err(why) => {
                        let judged = store::Judged {
                            stamp: pair.stamp,
                            answer: pair.answer,
                        };
                        self.reject(key, why, &judged);
                        return None;
                    }
                }
            }
            store::Loaded::Bad(why, judged) => {
                self.reject(key, why, &judged);
                return None;
            }
        };
        let response = pair.response;
        let entry = Arc::new(Entry {
            key: key.to_string(),
            usage: read.usage,
            route: meta.route,
            response,
            created: meta.created,
            version: meta.version,
            gaps_ms: meta.gaps_ms,
            request: store::request_path(dir, key),
        });
        self.memory.insert(key, Arc::clone(&entry), pair.stamp);
        Some(entry)
    }

    fn reject(&self, key: &str, why: &str, judged: &store::Judged) {
        let dir = &self.config.dir;
        if judged.settled(scan::GRACE) && store::quarantine_judged(dir, key, judged) {
            self.index.remove(&[key.to_string()]);
            log::warn(&format!(
                "cache entry {key} quarantined ({why}); it is never served"
            ));
        }
    }

    /// Appends the hits not yet in `hits.log` (at shutdown: `cache prune --unused-since`
    /// reads the last-hit times there).
    pub fn flush_hits(&self) {
        if let Err(e) = self.hits.flush(&self.config.dir) {
            log::error(&format!(
                "cannot write cache hit counts in {}: {e}",
                self.config.dir.display()
            ));
        }
    }

    /// The error a miss gets in `replay` mode: `cache_miss`, the key, and the fields in which
    /// the closest recorded request of the same route (and scope) differs (with the recorded
    /// values only for the key that recorded it). The closest is found in the index: the few
    /// nearest by fingerprint are read, never the directory; only until the start-up scan has
    /// filled the index does a miss search the directory (at most `MAX_SEARCHED_ONLINE` files).
    /// The miss goes to `cache.miss_log` as well, with the id of the caller's key, never the key.
    pub fn replay_miss(&self, plan: &Plan) -> ApiError {
        let asked = plan.canonical_json();
        let viewer = plan.recorder.as_deref();
        let report = if self.index.ready() {
            let (keys, compared) = self.index.nearest(&plan.route, &plan.scope, &asked);
            why::closest_of(
                &self.config.dir,
                &plan.route,
                &keys,
                (&asked, &plan.variant),
                viewer,
                compared,
            )
        } else {
            why::closest(
                &self.config.dir,
                &plan.route,
                Some(&plan.scope),
                (&asked, &plan.variant),
                (1, why::MAX_SEARCHED_ONLINE),
                viewer,
            )
        };
        if let Some(log) = &self.miss_log {
            let model = plan
                .candidates
                .iter()
                .find(|c| c.primary)
                .map_or("", |c| c.model.as_str());
            log.record(
                &miss_log::Miss {
                    route: &plan.route,
                    model,
                    key: &plan.key,
                    variant: &plan.variant,
                    client: viewer,
                },
                &report,
            );
        }
        why::miss_error(&plan.key, &plan.variant, &report)
    }

    /// The index of recorded requests, with request texts kept for the dashboard's search
    /// (within `ui.cache_index_bytes`, the first call's bound) from the first call on. When
    /// that call comes after entries were indexed (a reload turned the dashboard on), their
    /// texts are read on a thread of their own.
    pub fn index(self: &Arc<Cache>, max_bytes: u64) -> &index::Index {
        if self.index.enable_search(max_bytes) {
            let cache = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("cache-index".into())
                .spawn(move || cache.index.add_texts(&cache.config.dir));
            if let Err(e) = spawned {
                log::error(&format!("cannot start the cache index thread: {e}"));
            }
        }
        &self.index
    }
}
