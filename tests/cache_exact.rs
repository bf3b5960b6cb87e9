//! Cache exactness (issue #11): every hit is exactly what the client asked for. The usage
//! chunk arrives exactly when asked, a plain answer from a stream has `usage`, logprobs are
//! merged in order, a request sent right after `[DONE]` is a hit, entries are bound to their
//! key, an answer of one effective model never serves another, and hit bookkeeping has
//! bounded memory.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::common::*;

const CHAT: &str = "/v1/chat/completions";

fn with_usage(mut body: Value) -> Value {
    body["stream_options"] = json!({"include_usage": true});
    body
}

/// The parsed `data:` payloads of a stream (without `[DONE]`).
fn chunks(s: &StreamResp) -> Vec<Value> {
    s.event_texts()
        .iter()
        .filter_map(|t| t.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

fn usage_chunks(s: &StreamResp) -> usize {
    chunks(s)
        .iter()
        .filter(|c| c["choices"] == json!([]) && !c["usage"].is_null())
        .count()
}

#[test]
fn cache_usage_chunk_arrives_exactly_when_asked_and_plain_hits_have_usage() {
    // recorded without include_usage, then asked with it, without it, and plain
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    let first = stream_events(relay.addr(), CHAT, &ask_stream("u1"));
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(usage_chunks(&first), 0, "{:?}", first.event_texts());
    assert_eq!(
        up.only_request().json()["stream_options"]["include_usage"],
        true,
        "a stream the cache keeps is asked for its usage"
    );
    let asked = stream_events(relay.addr(), CHAT, &with_usage(ask_stream("u1")));
    assert_eq!(asked.header("x-cache"), Some("HIT"));
    assert_eq!(usage_chunks(&asked), 1, "{:?}", asked.event_texts());
    assert_eq!(chunks(&asked).last().unwrap()["usage"]["total_tokens"], 9);
    let again = stream_events(relay.addr(), CHAT, &ask_stream("u1"));
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.event_texts(), first.event_texts());
    assert!(
        chunks(&again)
            .iter()
            .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())),
        "chunk.choices[0] must work on every chunk: {:?}",
        again.event_texts()
    );
    let plain = post_json(&relay.url(CHAT), &ask("u1"));
    assert_eq!(plain.header("x-cache"), Some("HIT"));
    assert_eq!(plain.json()["usage"]["total_tokens"], 9, "{}", plain.body);
    assert_eq!(
        plain.json()["choices"][0]["message"]["content"],
        FIXTURE_TEXT
    );
    assert_eq!(up.requests().len(), 1);

    // recorded with include_usage, asked without it
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    let first = stream_events(relay.addr(), CHAT, &with_usage(ask_stream("u2")));
    assert_eq!(usage_chunks(&first), 1);
    let without = stream_events(relay.addr(), CHAT, &ask_stream("u2"));
    assert_eq!(without.header("x-cache"), Some("HIT"));
    assert_eq!(usage_chunks(&without), 0, "{:?}", without.event_texts());
    assert_eq!(without.event_texts().last().copied(), Some("data: [DONE]"));
    assert_eq!(up.requests().len(), 1);
}

/// An OpenAI-compatible server that refuses `stream_options` with a 400 naming it.
fn refuses_stream_options(req: &RecordedRequest) -> Reply {
    if req.json().get("stream_options").is_some() {
        return Reply::json(
            400,
            json!({"error": {"message": "Unrecognized request argument supplied: stream_options",
                             "type": "invalid_request_error", "code": null}}),
        );
    }
    openai_reply(req)
}

#[test]
fn cache_provider_refusing_stream_options_still_streams_and_is_never_served_wrong() {
    let up = Upstream::start(refuses_stream_options);
    let (_dir, relay) = cached_relay(&up);
    let s = stream_events(relay.addr(), CHAT, &ask_stream("r"));
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.header("x-cache"), Some("MISS"));
    assert_eq!(answer_text(&s.body), FIXTURE_TEXT);
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        2,
        "asked with stream_options, then as the client sent it"
    );
    assert!(seen[1].json().get("stream_options").is_none());

    let again = stream_events(relay.addr(), CHAT, &ask_stream("r"));
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.event_texts(), s.event_texts());
    // the stream has no usage, so it cannot answer a plain request: that goes upstream
    let plain = post_json(&relay.url(CHAT), &ask("r"));
    assert_eq!(plain.header("x-cache"), Some("MISS"), "{}", plain.body);
    assert_eq!(plain.json()["usage"]["total_tokens"], 9);
    assert_eq!(up.requests().len(), 3);
    // a client that asks for stream_options itself gets the provider's refusal, unchanged
    let own = stream_events(relay.addr(), CHAT, &with_usage(ask_stream("r2")));
    assert_eq!(own.status, 400, "{}", own.body);
    assert!(
        own.body.contains("Unrecognized request argument"),
        "{}",
        own.body
    );
    assert_eq!(
        up.requests().len(),
        4,
        "the client's own options are not retried"
    );
}

#[test]
fn cache_plain_answer_from_a_stream_merges_every_logprobs_entry() {
    let tok = |t: &str| json!({"token": t, "logprob": -0.25, "bytes": [], "top_logprobs": []});
    let up = Upstream::start(move |r| {
        let body = r.json();
        let usage = wants_usage(r).then(|| usage_chunk("m", "chat.completion.chunk"));
        let mut events = vec![sse_data(
            &json!({"id": "c1", "object": "chat.completion.chunk",
            "created": 1, "model": "m", "choices": [{"index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": {"content": [], "refusal": null}, "finish_reason": null}]}),
        )];
        for (t, fin) in [("Hel", None), ("lo", None), ("!", Some("stop"))] {
            events.push(sse_data(
                &json!({"id": "c1", "object": "chat.completion.chunk",
                "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": t},
                "logprobs": {"content": [tok(t)], "refusal": null}, "finish_reason": fin}]}),
            ));
        }
        events.extend(usage);
        events.push(sse_done());
        assert_eq!(body["logprobs"], true);
        Reply::sse(events.into_iter().map(|e| (Duration::ZERO, e)).collect())
    });
    let (_dir, relay) = cached_relay(&up);
    let mut body = ask_stream("lp");
    body["logprobs"] = json!(true);
    stream_events(relay.addr(), CHAT, &body);
    body["stream"] = json!(false);
    let r = post_json(&relay.url(CHAT), &body);
    assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(
        v["choices"][0]["logprobs"]["content"],
        json!([tok("Hel"), tok("lo"), tok("!")]),
        "{v}"
    );

    // legacy completions: every token, in order
    let up = Upstream::start(|r| {
        let mut events = Vec::new();
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            events.push(sse_data(
                &json!({"id": "x", "object": "text_completion", "created": 1,
                "model": "m", "choices": [{"index": 0, "text": t,
                "logprobs": {"tokens": [t], "token_logprobs": [-0.5], "top_logprobs": [{*t: -0.5}],
                             "text_offset": [i]},
                "finish_reason": if i == 2 { json!("stop") } else { Value::Null }}]}),
            ));
        }
        if wants_usage(r) {
            events.push(usage_chunk("m", "text_completion"));
        }
        events.push(sse_done());
        Reply::sse(events.into_iter().map(|e| (Duration::ZERO, e)).collect())
    });
    let (_dir, relay) = cached_relay(&up);
    let req = json!({"model": "m", "prompt": "p", "logprobs": 1, "stream": true});
    stream_events(relay.addr(), "/v1/completions", &req);
    let r = post_json(
        &relay.url("/v1/completions"),
        &json!({"model": "m", "prompt": "p", "logprobs": 1}),
    );
    assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.body);
    let lp = &r.json()["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["a", "b", "c"]), "{lp}");
    assert_eq!(lp["text_offset"], json!([0, 1, 2]));
    assert_eq!(r.json()["usage"]["total_tokens"], 9);
}

/// Streams `body` over raw TCP and returns as soon as the `data: [DONE]` line has arrived, as
/// the OpenAI SDKs do (they stop reading there).
fn stream_until_done(addr: &str, body: &Value) {
    let payload = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )
    .unwrap();
    s.write_all(&payload).unwrap();
    let mut r = BufReader::new(s);
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended without [DONE]");
        let from = seen.len().saturating_sub(12);
        seen.extend_from_slice(&buf[..n]);
        if seen[from..].windows(12).any(|w| w == b"data: [DONE]") {
            return;
        }
    }
}

/// A relay with the cache on and a single worker, so upstream calls queue behind each other.
fn one_worker_relay(up: &Upstream) -> (TempDir, Relay) {
    let dir = TempDir::new();
    let cfg = cache_config(&up.base_url(), dir.path(), json!({}), json!({"workers": 1}));
    (dir, Relay::start(&cfg))
}

#[test]
fn cache_request_sent_right_after_done_is_always_a_hit() {
    // An 8 MiB answer takes a while to check and write. Before the fix the entry was stored
    // only after [DONE] had reached the client, so the next request missed on the front thread
    // and, with the one worker still busy storing, queued behind it and went upstream again.
    let up = Upstream::start(|r| echo_reply_padded(r, Duration::ZERO, 8 << 20));
    let (_dir, relay) = one_worker_relay(&up);
    for i in 0..3 {
        let q = format!("after-done-{i}");
        stream_until_done(relay.addr(), &ask_stream(&q));
        let r = post_json(&relay.url(CHAT), &ask(&q));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-cache"), Some("HIT"), "request {i}");
        assert_eq!(answer_text(&r.body), echo_text(&q));
    }
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn cache_new_single_flight_leader_looks_again_before_going_upstream() {
    // one worker: the second request misses on the front thread while the first is upstream,
    // waits in the queue, and becomes the leader of a new flight once the first has stored
    let up = Upstream::start(|r| echo_reply(r, Duration::from_millis(1500)));
    let (_dir, relay) = one_worker_relay(&up);
    let url = relay.url(CHAT);
    let first = std::thread::spawn(move || post_json(&url, &ask("leader")));
    while up.requests().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = post_json(&relay.url(CHAT), &ask("leader"));
    let first = first.join().unwrap();
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(
        second.header("x-cache"),
        Some("HIT"),
        "{:?}",
        second.headers
    );
    assert_eq!(second.body, first.body);
    assert_eq!(up.requests().len(), 1);
}

fn entry_paths(dir: &Path, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    entry_files(dir, key)
}

fn age(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
}

#[test]
fn cache_swapped_truncated_or_foreign_files_are_never_served_and_are_quarantined() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({"memory_items": 0}),
        json!({}),
    );
    let keys: Vec<String> = {
        let relay = Relay::start(&cfg);
        ["one", "two", "three"]
            .iter()
            .map(|q| {
                let r = post_json(&relay.url(CHAT), &ask(q));
                r.header("x-cache-key").unwrap().to_string()
            })
            .collect()
    };
    let d = dir.path();
    // swap the answers of "one" and "two"
    let (one, two) = (entry_paths(d, &keys[0]).1, entry_paths(d, &keys[1]).1);
    let (a, b) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    std::fs::write(&one, &b).unwrap();
    std::fs::write(&two, &a).unwrap();
    // truncate "three" to a shorter answer that still parses
    let three = entry_paths(d, &keys[2]).1;
    let text = String::from_utf8(std::fs::read(&three).unwrap()).unwrap();
    std::fs::write(&three, text.replace("echo[three]", "echo[thr]")).unwrap();
    for k in &keys {
        let (req, txt) = entry_paths(d, k);
        age(&req);
        age(&txt);
    }
    let relay = Relay::start(&cfg);
    for (i, q) in ["one", "two", "three"].iter().enumerate() {
        let r = post_json(&relay.url(CHAT), &ask(q));
        assert_eq!(r.header("x-cache"), Some("MISS"), "{q}: {}", r.body);
        assert_eq!(answer_text(&r.body), echo_text(q), "{q} got another answer");
        assert_eq!(r.header("x-cache-key"), Some(keys[i].as_str()));
    }
    let quarantined = files_ending(&d.join("quarantine"), ".txt");
    assert_eq!(quarantined.len(), 3, "{quarantined:?}");
    // the fresh answers are stored and bound again
    for q in ["one", "two", "three"] {
        let r = post_json(&relay.url(CHAT), &ask(q));
        assert_eq!(r.header("x-cache"), Some("HIT"), "{q}");
        assert_eq!(answer_text(&r.body), echo_text(q));
    }
    drop(relay);

    // the scan finds the same: a foreign pair under another key, and a swapped answer
    let (req1, txt1) = entry_paths(d, &keys[0]);
    let foreign = "ab".repeat(32);
    let freq = entry_paths(d, &foreign).0;
    std::fs::create_dir_all(freq.parent().unwrap()).unwrap();
    std::fs::copy(&req1, &freq).unwrap();
    let ftxt = entry_paths(d, &foreign).1;
    std::fs::copy(&txt1, &ftxt).unwrap();
    let txt2 = entry_paths(d, &keys[1]).1;
    std::fs::copy(&txt2, &txt1).unwrap();
    let cfg_dir = TempDir::new();
    let config = cfg_dir.write("c.jsonc", &cfg);
    let out = run_relay(
        &["cache", "scan", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for reason in [
        "request does not match its key: 2",
        "response does not match its checksum: 2",
    ] {
        assert!(
            out.stdout.contains(reason),
            "{reason} missing in {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("2 entries"), "{}", out.stdout);
}

/// A config with the `upstreams` list `endpoints` and the cache on in `dir`.
fn cached_upstreams(endpoints: Value, dir: &TempDir) -> String {
    let mut c: Value = serde_json::from_str(&upstreams_config(endpoints, json!({}))).unwrap();
    c["cache"] = json!({"dir": dir.path().to_str().unwrap()});
    c.to_string()
}

#[test]
fn cache_answer_of_one_effective_model_never_serves_another() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let cfg = |model: &str| {
        cached_upstreams(
            json!([{"name": "main", "url": up.base_url(), "model": model}]),
            &dir,
        )
    };
    // (X-Cache, the answer's model) of the same request
    let which = |relay: &Relay| {
        let r = post_json(&relay.url(CHAT), &ask("which model?"));
        let x = r.header("x-cache").unwrap_or("-").to_string();
        (x, r.json()["model"].as_str().unwrap_or("").to_string())
    };
    let pair = |x: &str, m: &str| (x.to_string(), m.to_string());
    let big = Relay::start(&cfg("big"));
    assert_eq!(which(&big), pair("MISS", "big"));
    drop(big);
    // the same request, now sent to another model by the per-endpoint override
    let small = Relay::start(&cfg("small"));
    assert_eq!(which(&small), pair("MISS", "small"));
    assert_eq!(up.requests().last().unwrap().json()["model"], "small");
    assert_eq!(which(&small), pair("HIT", "small"));
    drop(small);
    let big = Relay::start(&cfg("big"));
    assert_eq!(which(&big), pair("HIT", "big"));
    assert_eq!(up.requests().len(), 2);

    // a standby with another model: its answer is stored under its own model and does not
    // serve the request the weighted endpoint takes once it is back
    let (primary, standby) = (Upstream::openai(), Upstream::openai());
    let dir = TempDir::new();
    let cfg = |url: String| {
        cached_upstreams(
            json!([{"name": "primary", "url": url, "weight": 1, "model": "big"},
                   {"name": "standby", "url": standby.base_url(), "weight": 0, "model": "small"}]),
            &dir,
        )
    };
    let down = Relay::start(&cfg(closed_port_url()));
    let r = post_json(&down.url(CHAT), &ask("failover"));
    assert_eq!(r.json()["model"], "small", "{}", r.body);
    drop(down);
    let back = Relay::start(&cfg(primary.base_url()));
    let r = post_json(&back.url(CHAT), &ask("failover"));
    assert_eq!(r.header("x-cache"), Some("MISS"), "{}", r.body);
    assert_eq!(r.json()["model"], "big");
    assert_eq!(primary.requests().len(), 1);
}

#[test]
fn cache_hit_bookkeeping_memory_is_bounded() {
    // 300,000 keys with recorded hits: kept per key, they cost ~45 MB; bounded, ~2 MB
    let big = TempDir::new();
    let mut log = String::with_capacity(300_000 * 80);
    for i in 0..300_000u64 {
        log.push_str(&format!("{} 3 1800000000\n", sha256_hex(&i.to_string())));
    }
    std::fs::write(big.path().join("hits.log"), log).unwrap();
    let empty = TempDir::new();
    let up = Upstream::openai();
    let cfg = |d: &TempDir| cache_config(&up.base_url(), d.path(), json!({}), json!({}));
    let config = big.write("c.jsonc", &cfg(&big));
    let stats = run_relay(
        &["cache", "stats", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(stats.stdout.contains("hits 900000"), "{}", stats.stdout);
    let baseline = Relay::start(&cfg(&empty));
    let loaded = Relay::start(&cfg(&big));
    let (a, b) = (baseline.memory_kb("VmRSS"), loaded.memory_kb("VmRSS"));
    assert!(
        b < a + 12 * 1024,
        "hit counts of 300,000 keys grew the relay from {a} kB to {b} kB"
    );
}
