//! End to end with the official SDKs on the Responses and Messages APIs (issue 12): runs
//! `tests/e2e/apis_sdk.py` — openai-python Responses (plain, stream, function tools, cross-mode
//! cache hits through the SDK's accumulator), an `openai-agents` agent calling a tool, and the
//! `anthropic` SDK (plain, stream, a tool-use round trip, count_tokens, its error class) —
//! against a relay with auth and the cache on, in front of fixtures that speak both APIs.
//! Needs `pip install -r tests/requirements.txt`; fails (not skips) without it.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The relay of these tests: auth and the cache on, both APIs' endpoints on the fixture `up`.
fn sdk_relay(up: &Upstream, dir: &TempDir) -> Relay {
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [
            {"name": "openai", "url": up.base_url(), "api": "responses", "api_key": "sk-upstream"},
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ],
        "auth": {"keys": ["relay-client-key"]},
        "cache": {"enabled": true, "dir": dir.path().to_str().unwrap()},
        "model_rules": [{"match_model": "relay-alias", "set": {"model": "fixture-model-a"}}],
    });
    Relay::start(&cfg.to_string())
}

#[test]
fn official_sdks_speak_responses_and_messages_through_the_relay() {
    for module in ["openai", "anthropic", "agents"] {
        require_python_module(module);
    }
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = sdk_relay(&up, &dir);
    let root = format!("http://{}", relay.addr());
    let out = run_e2e_script("apis_sdk.py", &[&root], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "apis_sdk.py failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- relay ---\n{}",
        out.status,
        relay.stderr_text()
    );
    assert!(
        stdout.contains("all Responses and Messages SDK checks passed"),
        "{stdout}"
    );
    let seen = up.requests();
    assert!(
        seen.iter()
            .all(|r| !format!("{r:?}").contains("relay-client-key")),
        "client key went upstream"
    );
    assert!(seen
        .iter()
        .any(|r| r.path == "/v1/responses" && r.json()["model"] == "fixture-model-a"));
}

#[test]
fn openai_node_sdk_speaks_responses_through_the_relay() {
    let e2e = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");
    assert!(
        std::path::Path::new(e2e).join("node_modules/openai").exists(),
        "the openai Node SDK is missing: run `bash scripts/test-deps.sh` (npm install in tests/e2e)"
    );
    let up = Upstream::apis();
    let dir = TempDir::new();
    let relay = sdk_relay(&up, &dir);
    let root = format!("http://{}", relay.addr());
    let mut cmd = std::process::Command::new("node");
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .current_dir(e2e)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .args(["responses_node.mjs", &root])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run node (install Node.js 20)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "responses_node.mjs failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all Node Responses checks passed"),
        "{stdout}"
    );
}
