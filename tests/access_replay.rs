//! A replay miss never quotes another key's prompt (issue 20): the `cache_miss` of `replay`
//! mode names the differing field paths to every key, but shows recorded values only to the
//! key that recorded the entry (`recorded_by` in its `.request` metadata); an entry recorded
//! before that field existed shows no values to any key.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY_A: &str = "sk-replay-team-a-0000001";
const KEY_B: &str = "sk-replay-team-b-0000002";
const CHAT: &str = "/v1/chat/completions";
const SECRET: &str = "my password is hunter2";

/// A relay with keys A and B, the cache (shared scope) in `dir`, `replay` chosen per request.
fn relay_in(up: &Upstream, dir: &TempDir) -> Relay {
    Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"mode_header": ["replay"]}),
        json!({"auth": {"keys": [KEY_A, KEY_B]}}),
    ))
}

fn prompt(content: &str) -> Value {
    json!({"model": "m", "temperature": 0.5, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
}

/// `body` in replay mode with `key`: the `cache_miss` message and its `closest.differs`.
fn replay_miss(relay: &Relay, key: &str, body: &Value) -> (String, Value) {
    let r = post_json_with(
        &relay.url(CHAT),
        body,
        &[("X-API-Key", key), ("X-Relay-Cache-Mode", "replay")],
    );
    let msg = r.assert_error(404, "cache_miss");
    (msg, r.json()["error"]["closest"]["differs"].clone())
}

#[test]
fn a_replay_miss_names_paths_to_every_key_but_values_only_to_the_recorder() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let asked = prompt("my password is swordfish");
    {
        let relay = relay_in(&up, &dir);
        let recorded = post_json_with(&relay.url(CHAT), &prompt(SECRET), &[("X-API-Key", KEY_A)]);
        assert_eq!(recorded.status, 200, "{}", recorded.body);
        assert_eq!(recorded.header("x-cache"), Some("MISS"));

        let (msg, differs) = replay_miss(&relay, KEY_B, &asked);
        assert_eq!(differs, json!(["messages[1].content"]), "{msg}");
        assert!(msg.contains("messages[1].content"), "{msg}");
        assert!(!msg.contains("hunter2"), "B sees A's prompt: {msg}");
        assert!(!msg.contains("swordfish"), "{msg}");

        let (msg, _) = replay_miss(&relay, KEY_A, &asked);
        assert!(msg.contains(&format!("recorded \"{SECRET}\"")), "{msg}");
    }
    // the entry is indexed at start from the scan: the same after a restart
    let relay = relay_in(&up, &dir);
    let (msg, _) = replay_miss(&relay, KEY_B, &asked);
    assert!(
        msg.contains("messages[1].content") && !msg.contains("hunter2"),
        "{msg}"
    );
    let (msg, _) = replay_miss(&relay, KEY_A, &asked);
    assert!(msg.contains("hunter2"), "{msg}");
    drop(relay);

    // an entry from before `recorded_by` shows no values, not even to its recorder
    let files = files_ending(dir.path(), ".request");
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let (meta, rest) = text.split_once('\n').unwrap();
    let mut meta: Value = serde_json::from_str(meta).unwrap();
    assert!(
        meta["recorded_by"]
            .as_str()
            .is_some_and(|id| id.starts_with("cfg_")),
        "{meta}"
    );
    meta.as_object_mut().unwrap().remove("recorded_by");
    std::fs::write(&files[0], format!("{meta}\n{rest}")).unwrap();
    let relay = relay_in(&up, &dir);
    let (msg, differs) = replay_miss(&relay, KEY_A, &asked);
    assert_eq!(differs, json!(["messages[1].content"]), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn a_replay_miss_searches_the_index_built_at_start_not_the_directory() {
    let up = Upstream::start(|r| echo_reply(r, Duration::ZERO));
    let dir = TempDir::new();
    let recorded = prompt("what is in the index");
    // the echo upstream's answer, as a stored entry (written as the relay writes entries)
    let canonical = serde_json::to_string(&recorded).unwrap();
    let answer = {
        let relay = relay_in(&up, &dir);
        let r = post_json_with(&relay.url(CHAT), &recorded, &[("X-API-Key", KEY_A)]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    for f in files_ending(dir.path(), ".request")
        .into_iter()
        .chain(files_ending(dir.path(), ".txt"))
    {
        std::fs::remove_file(f).unwrap();
    }
    let relay = relay_in(&up, &dir);
    let scanned = relay.wait_for_log_line(Duration::from_secs(30), |l| l.contains("cache index:"));
    assert!(scanned.is_some(), "no index line");
    // an entry that appears in the directory behind the relay's back is not searched per miss
    write_entry(dir.path(), "/chat/completions", &canonical, &answer);
    let asked = prompt("what is in the directory");
    let (msg, _) = replay_miss(&relay, KEY_A, &asked);
    assert!(msg.contains("Nothing was recorded"), "{msg}");
    drop(relay);
    // the start-up scan indexes it
    let relay = relay_in(&up, &dir);
    let scanned = relay.wait_for_log_line(Duration::from_secs(30), |l| l.contains("cache index:"));
    assert!(scanned.is_some(), "no index line");
    let (msg, differs) = replay_miss(&relay, KEY_A, &asked);
    assert_eq!(differs, json!(["messages[1].content"]), "{msg}");
}
