//! Several replicas, one truth (#14): two relay processes sharing a real `redis-server`
//! (`state.redis`). Rate limits and budgets are exact across both under concurrency, usage
//! read on either is the sum, keys created on one work on the other, and a Redis outage gives
//! the documented `on_unavailable` behaviour, then recovers.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "sk-redis-client-0000000001";
const ADMIN: &str = "sk-redis-admin-00000000002";

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

/// Two relays in front of `up` sharing `redis`; `extra` keys are added to the config.
fn replicas(up: &Upstream, redis: &RedisServer, state: Value, extra: Value) -> [Relay; 2] {
    let mut cfg = json!({
        "workers": 16,
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "state": {"redis": redis.url()},
    });
    if let Value::Object(m) = state {
        for (k, v) in m {
            cfg["state"][k] = v;
        }
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    let text = config_json(&up.base_url(), cfg);
    [Relay::start(&text), Relay::start(&text)]
}

/// Polls `f` until it is true (a change made on one replica reaching the other).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn per_minute_across_two_replicas_admits_exactly_n_under_50_clients() {
    let up = Upstream::openai();
    let redis = RedisServer::start();
    let limit = 20;
    let relays = Arc::new(replicas(
        &up,
        &redis,
        json!({}),
        json!({"rate_limit": {"per_minute": limit}}),
    ));
    let statuses = from_clients(50, 2, move |c, i| {
        chat_as(&relays[(c + i) % 2], KEY, &chat()).status
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (limit, 100 - limit), "{statuses:?}");
    assert_eq!(up.requests().len(), limit);
}

#[test]
fn usage_is_the_sum_on_either_replica_and_keys_made_on_one_work_on_both() {
    let up = Upstream::openai();
    let redis = RedisServer::start();
    let [a, b] = replicas(&up, &redis, json!({}), json!({}));
    let (id, key) = new_key(&a, ADMIN, json!({"name": "shared"}));
    // created on A, used at once on B
    assert_eq!(chat_as(&b, &key, &chat()).status, 200);
    for _ in 0..2 {
        assert_eq!(chat_as(&a, &key, &chat()).status, 200);
    }
    assert_eq!(chat_as(&b, &key, &chat()).status, 200);
    for relay in [&a, &b] {
        let u = key_usage(relay, ADMIN, &id);
        assert_eq!(u["total"]["requests"], 4, "{u}");
        assert_eq!(u["total"]["prompt_tokens"], 20, "{u}");
        assert_eq!(u["today"]["completion_tokens"], 16, "{u}");
        let stats = admin_call(relay, ADMIN, "GET", "/admin/stats", None).json();
        let mine = stats["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap();
        assert_eq!(mine["requests"], 4, "{stats}");
    }
    // a change on B reaches A; a revocation on B too
    let r = admin_call(
        &b,
        ADMIN,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"models": ["x"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the allow-list set on B applies on A", || {
        chat_as(&a, &key, &chat()).status == 403
    });
    let r = admin_call(&b, ADMIN, "DELETE", &format!("/admin/keys/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the key revoked on B is refused on A", || {
        chat_as(&a, &key, &chat()).status == 401
    });
}

#[test]
fn budgets_are_exact_across_replicas() {
    let up = Upstream::openai();
    let redis = RedisServer::start();
    let [a, b] = replicas(
        &up,
        &redis,
        json!({}),
        json!({"budget": {"tokens_per_day": 30}}),
    );
    // 9 tokens a call: 0, 9, 18, 27 are under 30, whichever replica serves them
    for relay in [&a, &b, &a, &b] {
        assert_eq!(chat_as(relay, KEY, &chat()).status, 200);
    }
    for relay in [&a, &b] {
        let r = chat_as(relay, KEY, &chat());
        r.assert_error(429, "budget_exceeded");
    }
    assert_eq!(up.requests().len(), 4);
}

/// Metric `name`'s value in `/metrics` of `relay`.
fn metric(relay: &Relay, name: &str) -> Option<f64> {
    let text = get(&relay.url("/metrics")).body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn redis_down_mid_load_refuses_with_503_then_recovers() {
    let up = Upstream::openai();
    let mut redis = RedisServer::start();
    let relays = Arc::new(replicas(
        &up,
        &redis,
        json!({"on_unavailable": "refuse"}),
        json!({"rate_limit": {"per_minute": 100000}}),
    ));
    let (a, b) = (&relays[0], &relays[1]);
    assert_eq!(get(&a.url("/ready")).json()["state"]["available"], true);
    // load from 8 clients while Redis dies and comes back
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (relays, stop) = (Arc::clone(&relays), Arc::clone(&stop));
            thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    seen.push(chat_as(&relays[i % 2], KEY, &chat()).status);
                }
                seen
            })
        })
        .collect();
    eventually("load reaches the upstream", || up.requests().len() >= 8);
    redis.kill();
    for relay in [a, b] {
        eventually("a request is refused with 503 state_unavailable", || {
            let r = chat_as(relay, KEY, &chat());
            r.status == 503 && r.json()["error"]["code"] == "state_unavailable"
        });
        let ready = get(&relay.url("/ready"));
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_eq!(ready.json()["state"]["available"], false);
        assert_eq!(metric(relay, "llm_relay_state_available"), Some(0.0));
        assert!(relay
            .wait_for_log_line(Duration::from_secs(10), |l| l.contains("cannot be reached"))
            .is_some());
    }
    redis.restart();
    for relay in [a, b] {
        eventually("requests are served again", || {
            chat_as(relay, KEY, &chat()).status == 200
        });
        assert_eq!(get(&relay.url("/ready")).status, 200);
        assert_eq!(metric(relay, "llm_relay_state_available"), Some(1.0));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses: Vec<u16> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "only served or refused, never another error: {statuses:?}"
    );
}

#[test]
fn redis_down_with_allow_serves_without_limits_then_limits_again() {
    let up = Upstream::openai();
    let mut redis = RedisServer::start();
    let [a, _b] = replicas(
        &up,
        &redis,
        json!({"on_unavailable": "allow"}),
        json!({"rate_limit": {"per_minute": 2}}),
    );
    assert_eq!(chat_as(&a, KEY, &chat()).status, 200);
    redis.kill();
    for _ in 0..4 {
        assert_eq!(
            chat_as(&a, KEY, &chat()).status,
            200,
            "allowed past the limit"
        );
    }
    let ready = get(&a.url("/ready"));
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["state"]["on_unavailable"], "allow");
    assert_eq!(ready.json()["state"]["available"], false);
    let text = get(&a.url("/metrics")).body;
    assert!(
        text.contains("llm_relay_state_unavailable_requests_total{action=\"allow\"} 4"),
        "{text}"
    );
    assert!(a
        .wait_for_log_line(Duration::from_secs(10), |l| l.contains("WARN")
            || l.contains("warn"))
        .is_some_and(|l| l.contains("Redis")));
    redis.restart(); // empty: the window starts again
                     // the breaker lets one probe through after its back-off; /ready's ping can be it
    eventually("the relay sees Redis again", || {
        get(&a.url("/ready")).json()["state"]["available"] == true
    });
    assert_eq!(chat_as(&a, KEY, &chat()).status, 200);
    assert_eq!(chat_as(&a, KEY, &chat()).status, 200);
    chat_as(&a, KEY, &chat()).assert_error(429, "rate_limit_exceeded");
}

/// The id, total requests and prompt tokens of `KEY` on `relay`, and the sum of its per-day
/// requests; `None` while the admin API cannot read Redis.
fn usage_of_key(relay: &Relay) -> Option<(String, u64, u64, u64)> {
    let stats = admin_call(relay, ADMIN, "GET", "/admin/stats", None);
    if stats.status != 200 {
        return None;
    }
    let stats = stats.json();
    let data = stats["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{stats}");
    let id = data[0]["id"].as_str().unwrap().to_string();
    let r = admin_call(
        relay,
        ADMIN,
        "GET",
        &format!("/admin/keys/{id}/usage"),
        None,
    );
    if r.status != 200 {
        return None;
    }
    let u = r.json();
    let days: u64 = u["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["requests"].as_u64().unwrap())
        .sum();
    let total = &u["total"];
    Some((
        id,
        total["requests"].as_u64().unwrap(),
        total["prompt_tokens"].as_u64().unwrap(),
        days,
    ))
}

/// Waits until neither relay holds usage for Redis, then checks both see `n` requests of 5
/// prompt tokens each, in the total and in the per-day figures.
fn both_see_exactly(relays: &[Relay; 2], n: u64) {
    for relay in relays {
        eventually("the pending usage reaches Redis", || {
            metric(relay, "llm_relay_state_pending_usage_requests") == Some(0.0)
                && usage_of_key(relay).is_some()
        });
    }
    for relay in relays {
        let (_, requests, prompt, days) = usage_of_key(relay).unwrap();
        assert_eq!(
            (requests, prompt, days),
            (n, 5 * n, n),
            "requests, tokens, per day"
        );
        let stats = admin_call(relay, ADMIN, "GET", "/admin/stats", None).json();
        assert_eq!(stats["pending_usage_requests"], 0, "{stats}");
    }
}

#[test]
fn usage_served_while_redis_is_down_is_added_once_when_it_is_back() {
    let up = Upstream::openai();
    let mut redis = RedisServer::start();
    let relays = replicas(&up, &redis, json!({"on_unavailable": "allow"}), json!({}));
    let (n, m) = (3, 4);
    for i in 0..n {
        assert_eq!(chat_as(&relays[i % 2], KEY, &chat()).status, 200);
    }
    both_see_exactly(&relays, n as u64);
    redis.save(); // the restarted server has the first N, as a real one with persistence
    redis.kill();
    for i in 0..m {
        assert_eq!(chat_as(&relays[i % 2], KEY, &chat()).status, 200);
    }
    for relay in &relays {
        eventually("each relay holds its share of the usage", || {
            metric(relay, "llm_relay_state_pending_usage_requests") == Some((m / 2) as f64)
        });
    }
    redis.restart();
    both_see_exactly(&relays, (n + m) as u64);
    // a second outage: its flush adds only the new request, never the first batch again
    redis.save();
    redis.kill();
    assert_eq!(chat_as(&relays[0], KEY, &chat()).status, 200);
    eventually("the request waits for Redis", || {
        metric(&relays[0], "llm_relay_state_pending_usage_requests") == Some(1.0)
    });
    redis.restart();
    both_see_exactly(&relays, (n + m + 1) as u64);
}

#[test]
fn a_relay_stopped_with_usage_pending_flushes_it_or_says_it_is_lost() {
    let up = Upstream::openai();
    let mut redis = RedisServer::start();
    let [mut a, b] = replicas(&up, &redis, json!({"on_unavailable": "allow"}), json!({}));
    let [mut c, _d] = replicas(&up, &redis, json!({"on_unavailable": "allow"}), json!({}));
    redis.kill();
    for relay in [&a, &c] {
        assert_eq!(chat_as(relay, KEY, &chat()).status, 200);
        eventually("the request waits for Redis", || {
            metric(relay, "llm_relay_state_pending_usage_requests") == Some(1.0)
        });
    }
    // Redis still down at SIGTERM: the loss is logged
    c.signal("TERM");
    assert!(c.wait_exit(Duration::from_secs(20)).is_some(), "c exits");
    assert!(
        c.stderr_text()
            .contains("exiting with the usage of 1 requests not added to Redis"),
        "{}",
        c.stderr_text()
    );
    // Redis back at SIGTERM: the last flush (or the retry thread before it) adds it
    redis.restart();
    a.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(20)).is_some(), "a exits");
    assert!(!a.stderr_text().contains("not added to Redis"));
    eventually("b reads Redis again", || usage_of_key(&b).is_some());
    assert_eq!(usage_of_key(&b).unwrap().1, 1, "a's request, once");
}

/// Per-key `routes` (issue 20) live in the Redis key record like every other field: set on one
/// replica, they hold on the other; a record whose routes are invalid (written past the admin
/// API) is skipped with an error, never read as a key without routes.
#[test]
fn key_routes_set_on_one_replica_hold_on_the_other() {
    let up = Upstream::openai();
    let redis = RedisServer::start();
    let [a, b] = replicas(&up, &redis, json!({}), json!({}));
    let body = json!({"name": "routed", "routes": ["POST /v1/chat/completions"]});
    let (id, key) = new_key(&a, ADMIN, body);
    assert_eq!(chat_as(&b, &key, &chat()).status, 200);
    let auth = [("X-API-Key", key.as_str())];
    let models = request("GET", &b.url("/v1/models"), &auth, None);
    models.assert_error(403, "route_not_allowed");
    let r = admin_call(
        &b,
        ADMIN,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"routes": ["GET /v1/models*"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the routes set on B apply on A", || {
        chat_as(&a, &key, &chat()).status == 403
            && request("GET", &a.url("/v1/models"), &auth, None).status == 200
    });
    // a record with an invalid route: skipped, so its key is unknown rather than unlimited
    let record = json!({"id": "key_bad", "name": "bad", "created_at": 1,
        "sha256": "a".repeat(64), "routes": ["GET files"]});
    let set = redis.command(&["HSET", "llm-relay:keys", "key_bad", &record.to_string()]);
    assert_eq!(set, ":1");
    eventually("the bad record is reported", || {
        admin_call(&a, ADMIN, "GET", "/admin/keys", None).json()["data"]
            .as_array()
            .is_some_and(|keys| keys.iter().all(|k| k["id"] != "key_bad"))
            && a.stderr_text()
                .contains("a key record in Redis is unreadable")
    });
}

/// A "Redis" that accepts connections and never answers (a stalled server, a black-holed
/// route): each connection it accepted is counted and held open.
struct StalledRedis {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl StalledRedis {
    fn start() -> StalledRedis {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(conn);
            }
        });
        StalledRedis { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_stalled_redis_is_probed_once_per_back_off_and_requests_do_not_wait_for_it() {
    let up = Upstream::openai();
    let stalled = StalledRedis::start();
    let cfg = config_json(
        &up.base_url(),
        json!({
            "auth": {"keys": [KEY], "admin_key": ADMIN},
            "state": {"redis": format!("redis://127.0.0.1:{}/0", stalled.port),
                      "on_unavailable": "allow"},
            "rate_limit": {"per_minute": 1000},
            "budget": {"tokens_per_day": 1_000_000},
        }),
    );
    let relay = Relay::start(&cfg);
    // each request asks Redis three times (budget, rate limit, usage): without a breaker each
    // call would connect and wait for the I/O timeout
    let n = 20;
    for _ in 0..n {
        assert_eq!(chat_as(&relay, KEY, &chat()).status, 200);
    }
    let probes = metric(&relay, "llm_relay_state_probes_total").unwrap();
    let fast = metric(&relay, "llm_relay_state_fast_failures_total").unwrap();
    // the start's check, then only probes ever connect
    assert!(
        stalled.accepted() <= 1 + probes as usize,
        "{} connections for {probes} probes",
        stalled.accepted()
    );
    assert!(probes < n as f64, "{probes} probes for {n} requests");
    assert!(fast >= (2 * n) as f64 - probes, "{fast} calls failed fast");
    // served without limits, as `on_unavailable: allow` says (budget and limit, each request)
    assert_eq!(
        metric(
            &relay,
            "llm_relay_state_unavailable_requests_total{action=\"allow\"}"
        ),
        Some(2.0 * n as f64)
    );
    assert_eq!(up.requests().len(), n);
}

#[test]
fn a_redis_cluster_node_is_refused_at_start() {
    let dir = TempDir::new();
    // answering PING: the relay's start-up check meets a server that is up, whatever the load
    let mut server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let cfg = config_json(
        "http://127.0.0.1:9/v1",
        json!({
            "auth": {"keys": [KEY]},
            "state": {"redis": server.url()},
        }),
    );
    let path = dir.write("config.jsonc", &cfg);
    let out = run_relay(&["--config", path.to_str().unwrap()], &[]);
    server.kill();
    assert!(!out.timed_out, "the relay must refuse to start, not serve");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("Redis Cluster") && out.stderr.contains("standalone"),
        "{}",
        out.stderr
    );
}
