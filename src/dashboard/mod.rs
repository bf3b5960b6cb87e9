//! The dashboard's data (`ui` section): what the relay remembers of its own traffic for `/ui`
//! — per-minute aggregates ([`minutes`]), the last requests bounded by bytes ([`recent`]),
//! per-upstream latency over the last hour, rate-limit and budget refusals per key, and the
//! replica it runs on. Filled by an [`Observer`] each finished API request passes through;
//! with `ui.enabled` off there is no [`Dashboard`] and no observer, so it costs nothing.
//! The HTTP side (page and `/admin/ui/*` routes) is `ui.rs`; the page's files are `page/`.

pub mod minutes;
pub mod recent;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Client;
use crate::budget::{self, Price};
use crate::exchange::Observer;
use crate::log::{Access, CacheResult};
use crate::usage::Outcome;

/// The page, its script and its style sheet, built into the binary.
pub const PAGE_HTML: &str = include_str!("page/index.html");
pub const PAGE_JS: &str = include_str!("page/app.js");
pub const PAGE_CSS: &str = include_str!("page/app.css");

const DEFAULT_RECENT_BYTES: u64 = 4 * 1024 * 1024;
const MIN_RECENT_BYTES: u64 = 64 * 1024;
const MAX_RECENT_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_INDEX_BYTES: u64 = 16 * 1024 * 1024;
/// Minutes of overall figures kept: a day.
const DAY_MINUTES: usize = 1440;
/// Minutes of per-upstream figures kept: an hour.
const HOUR_MINUTES: usize = 60;

/// The `ui` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    #[serde(default)]
    enabled: bool,
    recent_bytes: Option<u64>,
    cache_index_bytes: Option<u64>,
}

/// The checked `ui` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UiConfig {
    pub enabled: bool,
    /// Memory the ring of last requests may take.
    pub recent_bytes: u64,
    /// Memory the cache page's search index of recorded requests may take.
    pub cache_index_bytes: u64,
}

impl UiConfig {
    /// Checks the section; the dashboard needs the admin key (`admin_key`: one is configured),
    /// since every data call it makes is an admin call.
    pub fn from_raw(raw: Option<RawUi>, admin_key: bool) -> Result<UiConfig, String> {
        let raw = raw.unwrap_or_default();
        let recent_bytes = raw.recent_bytes.unwrap_or(DEFAULT_RECENT_BYTES);
        if !(MIN_RECENT_BYTES..=MAX_RECENT_BYTES).contains(&recent_bytes) {
            return Err(format!(
                "`ui.recent_bytes` must be between {MIN_RECENT_BYTES} and {MAX_RECENT_BYTES}, got \
                 {recent_bytes}"
            ));
        }
        let cache_index_bytes = raw.cache_index_bytes.unwrap_or(DEFAULT_INDEX_BYTES);
        if !(MIN_RECENT_BYTES..=MAX_RECENT_BYTES).contains(&cache_index_bytes) {
            return Err(format!(
                "`ui.cache_index_bytes` must be between {MIN_RECENT_BYTES} and \
                 {MAX_RECENT_BYTES}, got {cache_index_bytes}"
            ));
        }
        if raw.enabled && !admin_key {
            return Err(
                "`ui.enabled` needs `auth.admin_key` (or `admin_key_env`): every data \
                        call of the dashboard is an admin call"
                    .to_string(),
            );
        }
        Ok(UiConfig {
            enabled: raw.enabled,
            recent_bytes,
            cache_index_bytes,
        })
    }
}

/// Refusals of one key on this replica since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refusals {
    pub rate_limited: u64,
    pub budget_exceeded: u64,
}

/// The machine the relay runs on, as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct Replica {
    pub hostname: String,
    /// Random per process start: tells two relays on one host (or one restarted) apart.
    pub instance_id: String,
    pub pid: u32,
    pub started_at: u64,
}

impl Replica {
    fn detect() -> Replica {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".to_string());
        let instance_id = crate::auth::random_bytes::<6>()
            .map(|b| crate::util::hex(&b))
            .unwrap_or_default();
        Replica {
            hostname,
            instance_id,
            pid: std::process::id(),
            started_at: crate::util::now_secs(),
        }
    }

    pub fn describe(&self) -> Value {
        json!({
            "hostname": self.hostname,
            "instance_id": self.instance_id,
            "pid": self.pid,
            "started_at": self.started_at,
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// What the dashboard remembers. Shared by the states a reload swaps in.
#[derive(Debug)]
pub struct Dashboard {
    pub replica: Replica,
    /// Everything a request adds, behind one lock (one acquisition per request).
    figures: Mutex<Figures>,
}

#[derive(Debug)]
struct Figures {
    minutes: minutes::Ring,
    /// Per upstream base URL (bounded: they come from the config).
    upstreams: BTreeMap<String, minutes::Ring>,
    recent: recent::Recent,
    /// Per key id (bounded by the keys there are).
    refusals: HashMap<String, Refusals>,
}

impl Dashboard {
    /// The dashboard for `config`, or `None` when it is off. A reload keeps `previous`'s
    /// figures (a changed `recent_bytes` takes effect after a restart).
    pub fn open(config: UiConfig, previous: Option<&Arc<Dashboard>>) -> Option<Arc<Dashboard>> {
        if !config.enabled {
            return None;
        }
        if let Some(p) = previous {
            return Some(Arc::clone(p));
        }
        Some(Arc::new(Dashboard {
            replica: Replica::detect(),
            figures: Mutex::new(Figures {
                minutes: minutes::Ring::new(DAY_MINUTES),
                upstreams: BTreeMap::new(),
                recent: recent::Recent::new(config.recent_bytes),
                refusals: HashMap::new(),
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Figures> {
        // plain counters: still usable after a panic elsewhere
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The observer for one request: records it when it is finished, its cost by `prices`.
    pub fn observer(self: &Arc<Self>, prices: &Arc<[Price]>) -> Observer {
        let (dash, prices) = (Arc::clone(self), Arc::clone(prices));
        Box::new(move |access: &Access, client: Option<&Client>| {
            dash.record(access, client, &prices);
        })
    }

    fn record(&self, a: &Access, client: Option<&Client>, prices: &[Price]) {
        if !is_api(&a.path) {
            return; // probes, metrics, the admin API and the dashboard's own polling
        }
        let now = crate::util::now_secs();
        let error = (a.status >= 400 || a.status == 0).then(|| match a.error_code {
            Some(code) => code.to_string(),
            None => format!("http_{}", a.status),
        });
        let sample = minutes::Sample {
            duration_ms: a.duration.as_secs_f64() * 1000.0,
            outcome: Outcome {
                status: a.status,
                usage: a.usage,
                cache_hit: a.cache == Some(CacheResult::Hit),
                cost_micro_usd: budget::cost_micros(prices, a.priced_model(), &a.usage),
            },
            missed: matches!(a.cache, Some(CacheResult::Miss | CacheResult::Refresh)),
            error: error.clone(),
        };
        let upstream_sample = minutes::Sample {
            duration_ms: a.upstream_time.as_secs_f64() * 1000.0,
            ..sample.clone()
        };
        let refusal = match (client, a.error_code) {
            (Some(c), Some(code @ ("rate_limit_exceeded" | "budget_exceeded"))) => {
                Some((c.key_id.as_str(), code == "rate_limit_exceeded"))
            }
            _ => None,
        };
        let item = recent::Item {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_millis() as f64 / 1000.0),
            method: a.method.clone(),
            path: a.path.chars().take(256).collect(),
            key_id: client.map(|c| c.key_id.clone()),
            key_name: client.map(|c| c.name.clone()),
            model: a.model.chars().take(256).collect(),
            upstream: a.upstream.to_string(),
            status: a.status,
            cache: a.cache.map(CacheResult::label),
            duration_ms: sample.duration_ms,
            usage: a.usage,
            error,
            body_log_at: a.body_log_at.clone(),
            cache_key: a.cache_key.clone(),
            ..recent::Item::default()
        };
        let mut f = self.lock();
        f.minutes.add(now, &sample);
        if !a.upstream.is_empty() {
            match f.upstreams.get_mut(&*a.upstream) {
                Some(ring) => ring.add(now, &upstream_sample),
                None => {
                    let mut ring = minutes::Ring::new(HOUR_MINUTES);
                    ring.add(now, &upstream_sample);
                    f.upstreams.insert(a.upstream.to_string(), ring);
                }
            }
        }
        if let Some((key_id, rate_limited)) = refusal {
            let e = f.refusals.entry(key_id.to_string()).or_default();
            if rate_limited {
                e.rate_limited += 1;
            } else {
                e.budget_exceeded += 1;
            }
        }
        f.recent.push(item);
    }

    /// The overview of the last hour (`day`: false; a point a minute) or day (a point every
    /// 15 minutes).
    pub fn overview(&self, day: bool) -> Value {
        let now = crate::util::now_secs();
        let (minutes, step) = if day { (1440, 15) } else { (60, 1) };
        let (total, series) = self.lock().minutes.window(now, minutes, step);
        let secs = (minutes * 60) as f64;
        let mut t = total.describe();
        if let Some(o) = t.as_object_mut() {
            o.insert(
                "requests_per_s".into(),
                json!(total.requests() as f64 / secs),
            );
        }
        let points: Vec<Value> = series
            .iter()
            .map(|(at, b)| {
                let mut v = b.describe();
                if let Some(o) = v.as_object_mut() {
                    o.insert("t".into(), json!(at));
                    o.insert(
                        "requests_per_s".into(),
                        json!(b.requests() as f64 / (step * 60) as f64),
                    );
                }
                v
            })
            .collect();
        json!({
            "window": if day { "day" } else { "hour" },
            "step_s": step * 60,
            "now": now,
            "total": t,
            "series": points,
        })
    }

    /// Per upstream base URL: requests, errors and latency (time to the answer's end) over the
    /// last hour.
    pub fn upstream_figures(&self) -> BTreeMap<String, Value> {
        let now = crate::util::now_secs();
        self.lock()
            .upstreams
            .iter()
            .map(|(url, ring)| {
                let (t, _) = ring.window(now, 60, 60);
                let v = json!({
                    "requests": t.requests(),
                    "errors": t.error_count(),
                    "errors_by_kind": t.errors,
                    "p50_ms": t.quantile_ms(0.5),
                    "p99_ms": t.quantile_ms(0.99),
                });
                (url.clone(), v)
            })
            .collect()
    }

    pub fn refusals(&self, key_id: &str) -> Refusals {
        self.lock()
            .refusals
            .get(key_id)
            .copied()
            .unwrap_or_default()
    }

    /// Up to `limit` of the last requests older than `before`, newest first, and the ring's use.
    pub fn requests(&self, limit: usize, before: Option<u64>) -> Value {
        let f = self.lock();
        let recent = &f.recent;
        let data: Vec<Value> = recent
            .list(limit, before)
            .iter()
            .map(|i| i.describe())
            .collect();
        let (items, bytes, max_bytes) = recent.usage();
        json!({
            "object": "list",
            "data": data,
            "held": items,
            "bytes": bytes,
            "max_bytes": max_bytes,
        })
    }

    /// One request of the ring.
    pub fn request(&self, id: u64) -> Option<recent::Item> {
        self.lock().recent.get(id).cloned()
    }
}

/// True for the API calls the dashboard counts: `/v1/*` and the API routes without `/v1`.
fn is_api(path: &str) -> bool {
    let route = crate::util::api_route(path);
    path.starts_with("/v1/")
        || matches!(
            route,
            "/chat/completions" | "/completions" | "/embeddings" | "/responses" | "/messages"
        )
}
