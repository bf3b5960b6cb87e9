//! Helpers for the cache tests: configs with a `cache` section, request bodies, and a
//! deterministic upstream whose answer is a function of the request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::openai::{chat_chunk, sse_done, usage_chunk, wants_usage};
use super::relay::{config_json, Relay};
use super::upstream::{RecordedRequest, Reply};

/// A config for `upstream` with the cache on in `dir`; keys of `cache` (an object) are added
/// to the `cache` section, keys of `extra` to the top level.
pub fn cache_config(upstream: &str, dir: &Path, cache: Value, extra: Value) -> String {
    let mut section = json!({"enabled": true, "dir": dir.to_str().unwrap()});
    if let Value::Object(m) = cache {
        for (k, v) in m {
            section[k] = v;
        }
    }
    let mut top = json!({"cache": section});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            top[k] = v;
        }
    }
    config_json(upstream, top)
}

/// A relay in front of `up` with the cache on (defaults) in a fresh temp dir; keep the dir alive.
pub fn cached_relay(
    up: &super::upstream::Upstream,
) -> (super::relay::TempDir, super::relay::Relay) {
    let dir = super::relay::TempDir::new();
    let relay = super::relay::Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({}),
    ));
    (dir, relay)
}

/// A chat request asking `content`.
pub fn ask(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

/// The same, streamed.
pub fn ask_stream(content: &str) -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": content}]})
}

/// The answer text the [`echo_reply`] upstream gives for `content`.
pub fn echo_text(content: &str) -> String {
    format!("echo[{content}]")
}

/// An upstream answering every chat request with [`echo_text`] of its last message, as JSON
/// or (for `stream: true`) as SSE chunks ending with `[DONE]`, after `delay`.
pub fn echo_reply(req: &RecordedRequest, delay: Duration) -> Reply {
    echo_reply_padded(req, delay, 0)
}

/// [`echo_reply`] with `pad` bytes of filler in `system_fingerprint` (still a deterministic
/// function of the request), so writing an answer to disk takes a while.
pub fn echo_reply_padded(req: &RecordedRequest, delay: Duration, pad: usize) -> Reply {
    let fingerprint = "f".repeat(pad);
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let content = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let text = echo_text(&content);
    let reply = if body["stream"] == json!(true) {
        let half = text.len() / 2;
        let usage =
            wants_usage(req).then(|| (Duration::ZERO, usage_chunk("m", "chat.completion.chunk")));
        let mut first = json!({
            "id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                         "finish_reason": null}],
        });
        if pad > 0 {
            first["system_fingerprint"] = json!(fingerprint);
        }
        Reply::sse(
            [
                (Duration::ZERO, format!("data: {first}\n\n")),
                (
                    Duration::ZERO,
                    chat_chunk("m", json!({"content": &text[..half]}), None),
                ),
                (
                    Duration::ZERO,
                    chat_chunk("m", json!({"content": &text[half..]}), None),
                ),
                (Duration::ZERO, chat_chunk("m", json!({}), Some("stop"))),
            ]
            .into_iter()
            .chain(usage)
            .chain([(Duration::ZERO, sse_done())])
            .collect(),
        )
    } else {
        let mut answer = json!({
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 1_700_000_000,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        });
        if pad > 0 {
            answer["system_fingerprint"] = json!(fingerprint);
        }
        Reply::json(200, answer)
    };
    Reply::delay(delay, reply)
}

/// The text of a chat answer: a `chat.completion` body, or the joined deltas of SSE text.
pub fn answer_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    let mut text = String::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    text
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Writes a cache entry the way the relay does (key, metadata with scope and checksum,
/// canonical request line, response) for `canonical` (the request as the relay keys it: sorted
/// keys, compact, the effective model) on `route`: the answer as `<key>.<sha256>.txt`, then the
/// `.request` that refers to it by that checksum. Returns the key.
pub fn write_entry(dir: &Path, route: &str, canonical: &str, response: &str) -> String {
    write_entry_as(dir, route, canonical, response, true)
}

/// [`write_entry`] in the layout of relays before the fleet issue (#22): the answer as
/// `<key>.txt`, which relays still read (and `cache scan` renames).
pub fn write_old_entry(dir: &Path, route: &str, canonical: &str, response: &str) -> String {
    write_entry_as(dir, route, canonical, response, false)
}

fn write_entry_as(dir: &Path, route: &str, canonical: &str, response: &str, new: bool) -> String {
    let key = super::sha256_hex(&format!("llm-relay cache 2\n{route}\n\n{canonical}"));
    let sha = super::sha256_hex(response);
    let meta = json!({"route": route, "version": 1, "created": 1_800_000_000.0, "scope": "",
                      "sha256": sha});
    let sub = dir.join(&key[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    let answer = if new {
        format!("{key}.{sha}.txt")
    } else {
        format!("{key}.txt")
    };
    std::fs::write(sub.join(answer), response).unwrap();
    std::fs::write(
        sub.join(format!("{key}.request")),
        format!("{meta}\n{canonical}\n"),
    )
    .unwrap();
    key
}

/// The `.request` file of `key` under the cache directory `dir`, and the answer file it refers
/// to (`<key>.<sha256>.txt`, by the checksum in its metadata line).
pub fn entry_files(dir: &Path, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let sub = dir.join(&key[..2]);
    let request = sub.join(format!("{key}.request"));
    let text = std::fs::read_to_string(&request).unwrap_or_default();
    let meta: Value = serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or_default();
    let sha = meta["sha256"].as_str().unwrap_or("").to_string();
    (request, sub.join(format!("{key}.{sha}.txt")))
}

/// POSTs without panicking on transport errors (the relay may be killed mid-request), with
/// `Cache-Control: no-cache` if `refresh`. Returns (X-Cache, body) for a 200.
pub fn try_post_with(url: &str, body: &Value, refresh: bool) -> Option<(String, String)> {
    let mut req = super::agent()
        .post(url)
        .header("Content-Type", "application/json");
    if refresh {
        req = req.header("Cache-Control", "no-cache");
    }
    let mut r = req.send(serde_json::to_vec(body).unwrap()).ok()?;
    if r.status() != 200 {
        return None;
    }
    let x = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let text = r.body_mut().read_to_string().ok()?;
    Some((x, text))
}

/// Runs `llm-relay cache COMMAND --config CONFIG` (`scan`, `stats`) to success; its stdout.
pub fn cache_cli(command: &str, config: &Path) -> String {
    let out = super::run_relay(
        &["cache", command, "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
}

/// An upstream that echoes every question, but holds its answer to "same" until the returned
/// gate opens.
pub fn upstream_holding_same() -> (super::upstream::Upstream, std::sync::Arc<AtomicBool>) {
    let gate = std::sync::Arc::new(AtomicBool::new(false));
    let held = std::sync::Arc::clone(&gate);
    let up = super::upstream::Upstream::start(move |r| {
        if r.json()["messages"][0]["content"] == "same" {
            return Reply::hold(&held, echo_reply(r, Duration::ZERO));
        }
        echo_reply(r, Duration::ZERO)
    });
    (up, gate)
}

/// A follower of a single flight waits without holding a worker: "same" to `leading` reaches
/// `up` (from [`upstream_holding_same`]) and is held; "same" to `following` is the follower
/// (in flight once `following`'s gauge reaches `in_flight`, which counts the `/metrics` request
/// too); "other" to `following` is then answered while both wait (`following` has one worker
/// to spare); once `gate` opens the leader answers MISS, the follower the leader's HIT, and the
/// upstream saw two calls.
pub fn check_follower_holds_no_worker(
    up: &super::upstream::Upstream,
    gate: &AtomicBool,
    leading: &Relay,
    following: &Relay,
    in_flight: f64,
) {
    let send = |relay: &Relay, text: &'static str| {
        let url = relay.url("/v1/chat/completions");
        std::thread::spawn(move || super::client::post_json(&url, &ask(text)))
    };
    let wait = Duration::from_secs(20);
    let leader = send(leading, "same");
    super::wait_until(wait, "the leader's upstream call", || {
        !up.requests().is_empty()
    });
    let follower = send(following, "same");
    super::wait_until(wait, "the follower in flight", || {
        super::metric(following, "llm_relay_in_flight_requests").unwrap_or(0.0) >= in_flight
    });
    let other = send(following, "other");
    super::wait_until(
        wait,
        "another request (the follower held the worker it needed)",
        || other.is_finished(),
    );
    let other = other.join().unwrap();
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(!leader.is_finished() && !follower.is_finished());
    gate.store(true, Ordering::SeqCst);
    let (leader, follower) = (leader.join().unwrap(), follower.join().unwrap());
    assert_eq!(leader.header("x-cache"), Some("MISS"), "{}", leader.body);
    assert_eq!(follower.header("x-cache"), Some("HIT"), "{}", follower.body);
    assert_eq!(answer_text(&follower.body), echo_text("same"));
    assert_eq!(up.requests().len(), 2, "the leader's call and the other's");
}
