//! End-to-end with the official `openai` Python SDK: runs
//! `tests/e2e/openai_sdk.py` (interpreter from `$LLM_RELAY_PYTHON`, default
//! `python3`) against a relay in front of the OpenAI-like fixture. Needs
//! `pip install -r tests/requirements.txt`; fails (not skips) without it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[test]
fn openai_python_sdk_round_trip() {
    require_python_module("openai");

    let up = Upstream::openai();
    let rules = json!({"model_rules": [
        {"match_model": "relay-alias", "set": {"model": "fixture-model-a"}},
    ]});
    let relay = Relay::start(&config_json(&up.base_url(), rules));
    let stdout = run_script("openai_sdk.py", &relay);
    assert!(stdout.contains("all OpenAI SDK checks passed"), "{stdout}");
    // The chat call used the alias; the upstream must have seen the real model.
    let chat = up
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("chat reached upstream");
    assert_eq!(chat.json()["model"], "fixture-model-a");
}

/// Issue 11 with the SDK: the usage chunk exactly when asked (`chunk.choices[0]` works on a
/// hit of a stream recorded with usage), `usage` in a plain hit, and a replay miss as an
/// `openai.NotFoundError` with code `cache_miss` naming the changed field.
#[test]
fn openai_python_sdk_sees_cache_hits_in_the_shape_it_asked_for() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({"mode_header": ["replay"]}),
        json!({}),
    ));
    let stdout = run_script("openai_sdk_cache.py", &relay);
    assert!(stdout.contains("all cache SDK checks passed"), "{stdout}");
    assert_eq!(
        up.requests().len(),
        1,
        "one upstream call, everything else hits"
    );
}

/// Runs `tests/e2e/SCRIPT RELAY_BASE_URL` and returns its stdout; fails with both outputs.
fn run_script(script: &str, relay: &Relay) -> String {
    let script = format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = python_command()
        .arg(&script)
        .arg(relay.base_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("python output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout.into_owned()
}
