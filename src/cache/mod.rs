//! The response cache: pay once per identical request, answer every repeat from disk or memory.
//!
//! Owns the cache directory (no other module touches it). [`Cache::plan`] derives the key of a
//! request (SHA-256 over route, scope and canonical body, see `key.rs`) and reads its
//! `Cache-Control`; [`Cache::lookup`] finds a servable entry (memory tier, then the file pair);
//! [`Cache::store`] keeps a complete success; `serve.rs` answers a hit in either mode. Around
//! that: single-flight (`flight.rs`), the start-up scan (`scan.rs`) and upkeep (`upkeep.rs`)
//! on one background thread, and counters for `GET /cache/stats`.

mod apis;
mod config;
mod flight;
mod key;
mod memory;
mod replay;
mod scan;
mod serve;
mod store;
mod upkeep;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::log;
pub use config::{CacheConfig, RawCache, Scope};
pub use flight::Role;
pub use serve::respond_hit;

/// One servable entry.
#[derive(Debug)]
pub struct Entry {
    /// The stored response: a JSON body or SSE text.
    pub response: Vec<u8>,
    /// Unix time in seconds (millisecond precision) when it was written.
    pub created: f64,
    pub version: u32,
    /// `usage.total_tokens` of the answer (what a hit saves).
    pub tokens: u64,
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
    pub key: String,
    route: String,
    canonical: Vec<u8>,
    pub control: Control,
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
    hits: upkeep::HitBook,
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
    /// Opens (creating) the cache directory. Returns `None` when the cache is off.
    pub fn open(config: &CacheConfig) -> Result<Option<Arc<Cache>>, String> {
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
            hits: upkeep::HitBook::load(&config.dir),
            counters: Counters::default(),
            config: config.clone(),
        })))
    }

    /// The key and cache control of a request. `headers` are the client's.
    pub fn plan(
        &self,
        route: &str,
        body: &Map<String, Value>,
        headers: &[(String, String)],
    ) -> Plan {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let scope = match self.config.scope {
            Scope::Shared => String::new(),
            Scope::Key => {
                // the key the relay's auth reads (`auth::presented_key`): a Bearer token first,
                // else X-API-Key
                let credential = header("authorization")
                    .and_then(crate::util::bearer_token)
                    .or_else(|| header("x-api-key").map(str::trim))
                    .unwrap_or("");
                key::credential_scope(credential)
            }
        };
        let canonical = key::canonical_request(body);
        Plan {
            key: key::entry_key(route, &scope, &canonical),
            route: route.to_string(),
            canonical,
            control: Control::parse(header("cache-control")),
        }
    }

    /// A servable entry for `plan`, or what to say instead (`MISS`, `REFRESH`, `BYPASS`).
    pub fn lookup(&self, plan: &Plan) -> Result<Arc<Entry>, Status> {
        if plan.control.no_store {
            return Err(Status::Bypass);
        }
        if plan.control.no_cache {
            return Err(Status::Refresh);
        }
        let entry = match self.memory.get(&plan.key) {
            Some(e) => e,
            None => {
                let (meta, response) =
                    store::load(&self.config.dir, &plan.key).ok_or(Status::Miss)?;
                if apis::check(&plan.route, &response).is_err() {
                    return Err(Status::Miss);
                }
                let entry = Arc::new(Entry {
                    tokens: apis::total_tokens(&plan.route, &response),
                    response,
                    created: meta.created,
                    version: meta.version,
                });
                self.memory.insert(&plan.key, Arc::clone(&entry));
                entry
            }
        };
        let age = now_precise() - entry.created;
        if self.config.ttl.is_some_and(|ttl| age >= ttl.as_secs_f64()) {
            return Err(Status::Miss);
        }
        if plan.control.max_age.is_some_and(|max| age >= max as f64) {
            return Err(Status::Miss);
        }
        if self.config.override_old && entry.version < self.config.version {
            return Err(Status::Refresh);
        }
        Ok(entry)
    }

    /// Joins the single flight for a key: lead the upstream call, or wait for its leader.
    pub fn join(&self, key: &str) -> Role<'_> {
        self.flights.join(key)
    }

    /// Counts a served hit.
    pub fn served(&self, key: &str, entry: &Entry) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .tokens_saved
            .fetch_add(entry.tokens, Ordering::Relaxed);
        self.hits.record(key, crate::util::now_secs());
    }

    pub fn missed(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// True if an answer of `len` bytes is too large to store (`cache.max_entry_bytes`): it is
    /// relayed whole but not stored.
    pub fn too_large(&self, len: usize) -> bool {
        len as u64 > self.config.max_entry_bytes
    }

    /// Stores `response` for `plan` if it is a complete success within `max_entry_bytes`.
    /// Returns whether it did.
    pub fn store(&self, plan: &Plan, response: &[u8]) -> bool {
        if plan.control.no_store
            || self.too_large(response.len())
            || apis::check(&plan.route, response).is_err()
        {
            return false;
        }
        let meta = store::Meta {
            route: plan.route.clone(),
            version: self.config.version,
            created: now_precise(),
        };
        let existed = store::paths(&self.config.dir, &plan.key).0.exists();
        if let Err(e) = store::save(
            &self.config.dir,
            &plan.key,
            &meta,
            &plan.canonical,
            response,
        ) {
            log::error(&format!(
                "cannot write cache entry in {}: {e}",
                self.config.dir.display()
            ));
            return false;
        }
        if !existed {
            self.counters.entries.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes.fetch_add(
                (response.len() + plan.canonical.len()) as u64,
                Ordering::Relaxed,
            );
        }
        self.memory.insert(
            &plan.key,
            Arc::new(Entry {
                tokens: apis::total_tokens(&plan.route, response),
                response: response.to_vec(),
                created: meta.created,
                version: meta.version,
            }),
        );
        true
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
        let report = scan::scan(dir, true);
        self.counters
            .entries
            .store(report.entries, Ordering::Relaxed);
        self.counters.bytes.store(report.bytes, Ordering::Relaxed);
        log::info(&report.summary(dir));
        if self.hits.needs_compacting() {
            if let Err(e) = self.hits.compact(dir, |k| store::paths(dir, k).0.exists()) {
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
            if let (Some(m), Some(at)) = (&self.config.maintenance, next_maintenance) {
                if Instant::now() >= at {
                    self.maintain(m);
                    next_maintenance = Some(Instant::now() + m.interval);
                }
            }
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
    scan::scan(&config.dir, true).summary(&config.dir)
}

/// `llm-relay cache stats`: counts entries, bytes and recorded hits without changing anything.
pub fn stats_command(config: &CacheConfig) -> String {
    let dir: &Path = &config.dir;
    let report = scan::scan(dir, false);
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
