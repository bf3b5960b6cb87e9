//! The response cache: pay once per identical request, answer every repeat from disk or memory.
//!
//! Owns the cache directory (no other module touches it). [`Cache::plan`] derives the keys of
//! a request (SHA-256 over route, scope and canonical body with the effective model, one per
//! model the config may send it to, see `key.rs`), its mode and `Cache-Control`;
//! [`Cache::lookup`] finds an entry that can answer in the shape asked for (memory tier, then
//! the verified file pair); [`Cache::store`] keeps a complete success; `serve.rs` answers a hit
//! in either mode. Around that: single-flight (`flight.rs`; across replicas with `state.redis`,
//! `fleet.rs`), the start-up scan (`scan.rs`, one replica of a shared directory at a time,
//! `lease.rs`) and upkeep (`upkeep.rs`) on one background thread, counters for `GET /cache/stats`, the field
//! diff of a miss (`why.rs`), portable cassettes (`cassette.rs`) and the dashboard's index,
//! entry view and export of a selection (`browse.rs`).

mod apis;
pub mod browse;
mod cassette;
mod collect;
mod config;
mod fleet;
mod flight;
mod index;
mod key;
mod lease;
mod memory;
mod replay;
mod scan;
mod serve;
mod store;
mod upkeep;
mod why;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::answer::Usage;
use crate::error::ApiError;
use crate::log;
pub use apis::plain_body as plain_answer;
pub use apis::{asks_usage, complete_chat};
pub use cassette::{export_command, export_keys, import_command, parse_since, ExportFilter};
pub use config::{CacheConfig, Mode, RawCache, Scope};
pub use flight::Role;
pub use replay::Delivery;
pub use serve::{respond_hit, StreamTap};

/// The request header that chooses a cache mode, where `cache.mode_header` allows it.
pub const MODE_HEADER: &str = "x-relay-cache-mode";

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
}

/// A request's `Cache-Control` (standard request directives).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Go upstream and replace the entry.
    pub no_cache: bool,
    /// Neither read nor write the cache.
    pub no_store: bool,
    /// Only entries younger than this many seconds count.
    pub max_age: Option<u64>,
}

impl Control {
    pub fn parse(header: Option<&str>) -> Control {
        let mut c = Control::default();
        for d in header.unwrap_or("").split(',') {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('=') {
                Some(("max-age", n)) => c.max_age = n.trim().trim_matches('"').parse().ok(),
                _ if d == "no-cache" => c.no_cache = true,
                _ if d == "no-store" => c.no_store = true,
                _ => {}
            }
        }
        c
    }
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

/// The cache's view of one request.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The key for the first effective model: `X-Cache-Key` of a miss, the single flight.
    pub key: String,
    route: String,
    scope: String,
    /// One per effective model an endpoint serving the request would send.
    candidates: Vec<Candidate>,
    pub control: Control,
    pub mode: Mode,
    pub delivery: Delivery,
    /// The client key id the request came with (`None` with auth off): written as the
    /// entry's `recorded_by`, and the only key a `cache_miss` shows recorded values to.
    recorder: Option<String>,
}

#[derive(Debug, Clone)]
struct Candidate {
    model: String,
    key: String,
    canonical: Vec<u8>,
    /// Sent by a weighted endpoint (the config's first choice): only these are looked up, so
    /// a standby's answer under another model never serves a request the primaries would take.
    primary: bool,
}

impl Plan {
    /// The plan of a request of the client key `key_id` (`None`: auth is off).
    pub fn by_client(self, key_id: Option<&str>) -> Plan {
        Plan {
            recorder: key_id.map(str::to_string),
            ..self
        }
    }

    /// The effective model whose candidate key is `key` (the model a hit on it was sent as).
    pub fn model_of(&self, key: &str) -> Option<&str> {
        self.candidates
            .iter()
            .find(|c| c.key == key)
            .map(|c| c.model.as_str())
    }

    /// Whether an answer from upstream is stored.
    pub fn stores(&self) -> bool {
        self.mode.stores() && !self.control.no_store
    }

    /// Whether this request must ask a streaming upstream for usage
    /// (`stream_options.include_usage`), which the relay then drops for a client that did not.
    pub fn asks_usage(&self) -> bool {
        self.stores() && self.delivery.stream && apis::asks_usage(&self.route)
    }

    /// The canonical request as the first weighted endpoint would get it, as JSON (what
    /// `why` compares with the recorded requests).
    fn canonical_json(&self) -> Value {
        self.candidates
            .iter()
            .find(|c| c.primary)
            .and_then(|c| serde_json::from_slice::<Value>(&c.canonical).ok())
            .unwrap_or(Value::Null)
    }

    /// The keys, mode and cache control of a request. `headers` are the client's (for the
    /// cache's own headers); `principal` is whose answers it may share with `scope: "key"`, as
    /// the gate decided it (`auth::principal`: the authenticated key's id, else the
    /// credentials it carries, `""` for none); `models` are the effective models of the
    /// endpoints that serve the request's model, each with whether a weighted (non-standby)
    /// endpoint sends it (empty: the body's own model).
    pub fn new(
        config: &CacheConfig,
        route: &str,
        body: &Map<String, Value>,
        (headers, principal): (&[(String, String)], &str),
        models: &[(String, bool)],
    ) -> Result<Plan, ApiError> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let mode = match header(MODE_HEADER) {
            None => config.mode,
            Some(v) => header_mode(config, v.trim())?,
        };
        let scope = match config.scope {
            Scope::Shared => String::new(),
            Scope::Key => key::credential_scope(principal),
        };
        let own = body.get("model").and_then(Value::as_str).unwrap_or("");
        let fallback = [(own.to_string(), true)];
        let models = if models.is_empty() {
            &fallback[..]
        } else {
            models
        };
        let any_primary = models.iter().any(|(_, p)| *p);
        let mut candidates: Vec<Candidate> = Vec::with_capacity(models.len());
        for (model, primary) in models {
            if candidates.iter().any(|c| &c.model == model) {
                continue;
            }
            let canonical = key::canonical_request(body, model, &config.ignore_fields);
            candidates.push(Candidate {
                key: key::entry_key(route, &scope, &canonical),
                model: model.clone(),
                canonical,
                primary: *primary || !any_primary,
            });
        }
        let key = candidates
            .iter()
            .find(|c| c.primary)
            .map(|c| c.key.clone())
            .unwrap_or_default();
        Ok(Plan {
            key,
            route: route.to_string(),
            scope,
            candidates,
            control: Control::parse(header("cache-control")),
            mode,
            delivery: Delivery::of(body),
            recorder: None,
        })
    }
}

/// The mode a request chooses with `X-Relay-Cache-Mode`, if the config allows it.
fn header_mode(config: &CacheConfig, value: &str) -> Result<Mode, ApiError> {
    let allowed: Vec<&str> = config.header_modes.iter().map(|m| m.name()).collect();
    match Mode::parse(value) {
        Some(m) if config.header_modes.contains(&m) => Ok(m),
        _ if allowed.is_empty() => Err(ApiError::invalid(
            "cache_mode_not_allowed",
            format!(
                "this relay does not let a request choose its cache mode (X-Relay-Cache-Mode: \
                 {value}); drop the header, or list the mode in `cache.mode_header`"
            ),
        )),
        _ => Err(ApiError::invalid(
            "cache_mode_not_allowed",
            format!(
                "X-Relay-Cache-Mode: {value} is not allowed here; this relay allows {} \
                 (`cache.mode_header`)",
                allowed.join(", ")
            ),
        )),
    }
}

/// Running totals since start (entries and bytes: of the directory, from the start-up scan on).
#[derive(Debug, Default)]
pub struct Counters {
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub tokens_saved: AtomicU64,
}

pub struct Cache {
    pub config: CacheConfig,
    memory: memory::Memory,
    flights: flight::Flights,
    /// Single flight across replicas, with `state.redis`.
    fleet: Option<Arc<fleet::Fleet>>,
    hits: upkeep::HitBook,
    /// Recorded requests by route, scope and model, for the closest entry of a replay miss.
    index: index::Index,
    /// Answers this process's writes replaced, deleted by the upkeep thread after a grace period.
    replaced: collect::Replaced,
    pub counters: Counters,
    /// The dashboard's index of recorded requests, once `ui.enabled` asked for it.
    browse: std::sync::OnceLock<Arc<browse::Index>>,
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
    /// `redis` (`state.redis`), single flight spans every replica using it.
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
        Ok(Some(Arc::new(Cache {
            memory: memory::Memory::new(config.memory_items, config.memory_bytes),
            flights: flight::Flights::default(),
            fleet: redis.map(fleet::Fleet::start),
            hits: upkeep::HitBook::load(&config.dir),
            index: index::Index::default(),
            replaced: collect::Replaced::default(),
            counters: Counters::default(),
            browse: std::sync::OnceLock::new(),
            config: config.clone(),
        })))
    }

    /// The keys, mode and cache control of a request (see [`Plan::new`]).
    pub fn plan(
        &self,
        route: &str,
        body: &Map<String, Value>,
        client: (&[(String, String)], &str),
        models: &[(String, bool)],
    ) -> Result<Plan, ApiError> {
        Plan::new(&self.config, route, body, client, models)
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
        for c in plan.candidates.iter().filter(|c| c.primary) {
            let Some(entry) = self.find(&c.key) else {
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
            if store::stamp(dir, key) == Some(stamp) {
                return Some(e);
            }
            self.memory.remove(key);
        }
        let (meta, pair) = match store::load(dir, key) {
            store::Loaded::Absent => return None,
            store::Loaded::Found(meta, pair) => match apis::check(&meta.route, &pair.response) {
                Ok(_) => (meta, pair),
                Err(why) => {
                    let judged = store::Judged {
                        stamp: pair.stamp,
                        answer: pair.answer,
                    };
                    self.reject(key, why, &judged);
                    return None;
                }
            },
            store::Loaded::Bad(why, judged) => {
                self.reject(key, why, &judged);
                return None;
            }
        };
        let response = pair.response;
        let entry = Arc::new(Entry {
            key: key.to_string(),
            usage: apis::usage(&meta.route, &response),
            route: meta.route,
            response,
            created: meta.created,
            version: meta.version,
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

    /// Counts a served hit.
    pub fn served(&self, entry: &Entry) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .tokens_saved
            .fetch_add(entry.usage.unwrap_or_default().total(), Ordering::Relaxed);
        self.hits.record(&entry.key, crate::util::now_secs());
    }

    pub fn missed(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// The error a miss gets in `replay` mode: `cache_miss`, the key, and the fields in which
    /// the closest recorded request of the same route (and scope) differs (with the recorded
    /// values only for the key that recorded it). The closest is found in the index: the few
    /// nearest by fingerprint are read, never the directory; only until the start-up scan has
    /// filled the index does a miss search the directory (at most `MAX_SEARCHED_ONLINE` files).
    pub fn replay_miss(&self, plan: &Plan) -> ApiError {
        let asked = plan.canonical_json();
        let viewer = plan.recorder.as_deref();
        let report = if self.index.ready() {
            let (keys, compared) = self.index.nearest(&plan.route, &plan.scope, &asked);
            why::closest_of(
                &self.config.dir,
                &plan.route,
                &keys,
                &asked,
                viewer,
                compared,
            )
        } else {
            why::closest(
                &self.config.dir,
                &plan.route,
                Some(&plan.scope),
                &asked,
                (1, why::MAX_SEARCHED_ONLINE),
                viewer,
            )
        };
        why::miss_error(&plan.key, &report)
    }

    /// True if an answer of `len` bytes is too large to store (`cache.max_entry_bytes`): it is
    /// relayed whole but not stored.
    pub fn too_large(&self, len: usize) -> bool {
        len as u64 > self.config.max_entry_bytes
    }

    /// Stores `response` for `plan`, as answered with the effective `model`, if the plan
    /// stores and it is a complete success within `max_entry_bytes`. Returns whether it did.
    pub fn store(&self, plan: &Plan, model: &str, response: &[u8]) -> bool {
        if !plan.stores()
            || self.too_large(response.len())
            || apis::check(&plan.route, response).is_err()
        {
            return false;
        }
        let Some(c) = plan.candidates.iter().find(|c| c.model == model) else {
            return false;
        };
        let meta = store::Meta {
            route: plan.route.clone(),
            version: self.config.version,
            created: now_precise(),
            scope: plan.scope.clone(),
            sha256: key::checksum(response),
            recorded_by: plan.recorder.clone(),
        };
        let existed = store::request_path(&self.config.dir, &c.key).exists();
        let before = store::referenced_answer(&self.config.dir, &c.key);
        let stamp = match store::save(&self.config.dir, &c.key, &meta, &c.canonical, response) {
            Ok(stamp) => stamp,
            Err(e) => {
                log::error(&format!(
                    "cannot write cache entry in {}: {e}",
                    self.config.dir.display()
                ));
                return false;
            }
        };
        let now = store::answer_path(&self.config.dir, &c.key, &meta.sha256);
        if let Some(before) = before.filter(|b| *b != now) {
            self.replaced.push(&c.key, before);
        }
        self.index
            .insert(&plan.route, &plan.scope, &c.key, &c.canonical);
        if !existed {
            self.counters.entries.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes.fetch_add(
                (response.len() + c.canonical.len()) as u64,
                Ordering::Relaxed,
            );
        }
        if let Some(index) = self.browse.get() {
            index.add(&c.key, &meta, &c.canonical, response.len() as u64);
        }
        self.memory.insert(
            &c.key,
            Arc::new(Entry {
                key: c.key.clone(),
                route: plan.route.clone(),
                usage: apis::usage(&plan.route, response),
                response: response.to_vec(),
                created: meta.created,
                version: meta.version,
            }),
            stamp,
        );
        true
    }

    /// The dashboard's index of recorded requests (`ui.cache_index_bytes`), made and filled
    /// from the directory (on its own thread) the first time it is asked for.
    pub fn index(self: &Arc<Cache>, max_bytes: u64) -> Arc<browse::Index> {
        let mut fresh = false;
        let index = self.browse.get_or_init(|| {
            fresh = true;
            Arc::new(browse::Index::new(max_bytes))
        });
        if fresh {
            let (filling, dir) = (Arc::clone(index), self.config.dir.clone());
            let spawned = std::thread::Builder::new()
                .name("cache-index".into())
                .spawn(move || filling.fill(&dir));
            if let Err(e) = spawned {
                log::error(&format!("cannot start the cache index thread: {e}"));
            }
        }
        Arc::clone(index)
    }

    /// `GET /cache/stats`.
    pub fn stats_json(&self) -> Vec<u8> {
        let c = &self.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        json!({
            "enabled": true,
            "entries": c.entries.load(Ordering::Relaxed),
            "bytes": c.bytes.load(Ordering::Relaxed),
            "hits": hits,
            "misses": misses,
            "hit_ratio": ratio,
            "tokens_saved": c.tokens_saved.load(Ordering::Relaxed),
            "memory_entries": self.memory.usage().0,
            "memory_bytes": self.memory.usage().1,
        })
        .to_string()
        .into_bytes()
    }

    /// Starts the background thread: the start-up scan, maintenance, hit-count flushing.
    pub fn start_upkeep(self: &Arc<Cache>) {
        let cache = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("cache-upkeep".to_string())
            .spawn(move || cache.upkeep());
        if let Err(e) = spawned {
            log::error(&format!("cannot start the cache upkeep thread: {e}"));
        }
    }

    fn upkeep(&self) {
        let dir = &self.config.dir;
        let started = SystemTime::now();
        // one replica scans a shared directory; the others count its files, and scan after
        // all if no scan finished by the time the holder's lease would have run out
        let mut scan_due = None;
        let report = match scan::leased(&self.config.dir) {
            Some(report) => report,
            None => {
                scan_due = Some(Instant::now() + lease::LEASE);
                scan::count(dir)
            }
        };
        self.counters
            .entries
            .store(report.entries, Ordering::Relaxed);
        self.counters.bytes.store(report.bytes, Ordering::Relaxed);
        let indexed = self.index.fill(dir);
        log::info(&format!(
            "cache index: {indexed} recorded requests read for the closest entry of a replay miss"
        ));
        if self.hits.needs_compacting(report.entries) {
            if let Err(e) = self.hits.compact(dir, crate::util::now_secs()) {
                log::error(&format!("cannot compact {}: {e}", upkeep::HITS_FILE));
            }
        }
        let mut next_maintenance = self.config.maintenance.as_ref().map(|m| {
            if m.on_startup {
                Instant::now()
            } else {
                Instant::now() + m.interval
            }
        });
        loop {
            if scan_due.is_some_and(|at| Instant::now() >= at) {
                scan_due = if lease::last_scan(dir).is_some_and(|t| t >= started) {
                    None
                } else if let Some(report) = scan::leased(&self.config.dir) {
                    self.counters
                        .entries
                        .store(report.entries, Ordering::Relaxed);
                    self.counters.bytes.store(report.bytes, Ordering::Relaxed);
                    None
                } else {
                    Some(Instant::now() + lease::LEASE)
                };
            }
            if let (Some(m), Some(at)) = (&self.config.maintenance, next_maintenance) {
                if Instant::now() >= at {
                    self.maintain(m);
                    next_maintenance = Some(Instant::now() + m.interval);
                }
            }
            self.replaced.collect(dir, scan::GRACE);
            if let Err(e) = self.hits.flush(dir) {
                log::error(&format!(
                    "cannot write cache hit counts in {}: {e}",
                    dir.display()
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn maintain(&self, m: &config::Maintenance) {
        let removed = upkeep::maintain(
            &self.config.dir,
            &self.hits,
            now_precise(),
            m.retention.as_secs_f64(),
            m.min_hit_count,
        );
        for key in &removed.keys {
            self.memory.remove(key);
        }
        self.index.remove(&removed.keys);
        let c = &self.counters;
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&c.entries, removed.entries);
        sub(&c.bytes, removed.bytes);
        log::info(&format!(
            "cache maintenance: removed {} entries ({} bytes) older than {:.2} days with fewer \
             than {} hits",
            removed.entries,
            removed.bytes,
            m.retention.as_secs_f64() / 86_400.0,
            m.min_hit_count
        ));
    }
}

/// `llm-relay cache scan`: scans and quarantines, returns the report line.
pub fn scan_command(config: &CacheConfig) -> String {
    scan::command(&config.dir)
}

/// How many recorded requests a `why` reads at most: the command's bound, or the smaller one of
/// a request the relay answers (the dashboard's `why`, like the `cache_miss` error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhyBound {
    Command,
    Online,
}

/// `llm-relay cache why`: the keys of a request body (after rules and shaping) on `route`,
/// whether each is recorded, and the closest recorded requests with their differing fields.
pub fn why_command(
    config: &CacheConfig,
    route: &str,
    body: &Map<String, Value>,
    models: &[(String, bool)],
    bound: WhyBound,
) -> Result<String, String> {
    let plan = Plan::new(config, route, body, (&[], ""), models).map_err(|e| e.message)?;
    let keys: Vec<(String, String, bool)> = plan
        .candidates
        .iter()
        .filter(|c| c.primary)
        .map(|c| {
            let found = matches!(store::load(&config.dir, &c.key), store::Loaded::Found(..));
            (c.model.clone(), c.key.clone(), found)
        })
        .collect();
    let asked = plan.canonical_json();
    let max_searched = match bound {
        WhyBound::Command => why::MAX_SEARCHED,
        WhyBound::Online => why::MAX_SEARCHED_ONLINE,
    };
    let mut out = why::explain(&config.dir, route, &keys, &asked, max_searched);
    if config.scope == Scope::Key {
        out.push_str(
            "note: `cache.scope` is \"key\": the keys above are those of a request without a \
             credential; the closest requests are searched among every credential's entries\n",
        );
    }
    Ok(out)
}

/// `llm-relay cache stats`: counts entries, bytes and recorded hits without changing anything.
pub fn stats_command(config: &CacheConfig) -> String {
    let dir: &Path = &config.dir;
    let report = scan::scan(dir, false, None);
    let hits = upkeep::HitBook::load(dir).total();
    format!(
        "cache {}: entries {}, bytes {}, hits {}, unservable files {}\n",
        dir.display(),
        report.entries,
        report.bytes,
        hits,
        report.quarantined_total()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        let cases: &[(Option<&str>, Control)] = &[
            (None, Control::default()),
            (
                Some("No-Cache"),
                Control {
                    no_cache: true,
                    ..Control::default()
                },
            ),
            (
                Some("max-age=60, no-store"),
                Control {
                    no_store: true,
                    max_age: Some(60),
                    ..Control::default()
                },
            ),
            (
                Some("max-age=\"5\""),
                Control {
                    max_age: Some(5),
                    ..Control::default()
                },
            ),
            (Some("max-age=soon, private"), Control::default()),
        ];
        for (header, expected) in cases {
            assert_eq!(Control::parse(*header), *expected, "{header:?}");
        }
    }
}
