//! End-to-end translation with the official SDKs: `tests/e2e/translate_sdks.py` runs the
//! `anthropic` and `openai` Python SDKs (Messages and Responses: plain, streamed, a tool-use
//! round trip, a refused field) and `tests/e2e/translate_node.mjs` the `openai` Node SDK
//! (Responses: plain, streamed, function tools) through the relay to an upstream that speaks
//! only Chat Completions. Needs `bash scripts/test-deps.sh` (tests/requirements.txt,
//! tests/e2e/package.json); fails (not skips) without them.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[test]
fn anthropic_and_responses_sdks_through_a_chat_only_upstream() {
    let up = Upstream::chat_model();
    let rules = json!({"model_rules": [
        {"match_model": "claude-sonnet-*", "set": {"model": "deepseek-chat"}},
    ]});
    let relay = Relay::start(&config_json(&up.base_url(), rules));
    require_python_module("anthropic");
    let out = run_e2e_script(
        "translate_sdks.py",
        &[&relay.url("")],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "translate_sdks.py failed: {}",
        show(&out)
    );
    assert!(
        stdout.contains("all translation SDK checks passed"),
        "{stdout}"
    );
    // Only chat requests reached the upstream: five from the anthropic SDK, with the rule's
    // model for the Claude name, five from the Responses calls; the refused ones never left.
    let models: Vec<String> = up
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/v1/chat/completions");
            r.json()["model"].as_str().unwrap_or("").to_string()
        })
        .collect();
    let count = |m: &str| models.iter().filter(|x| *x == m).count();
    assert_eq!(
        (count("deepseek-chat"), count("gpt-5"), models.len()),
        (5, 5, 10),
        "{models:?}"
    );
}

#[test]
fn openai_node_sdk_responses_through_a_chat_only_upstream() {
    let e2e = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");
    assert!(
        std::path::Path::new(e2e)
            .join("node_modules/openai")
            .exists(),
        "tests/e2e/node_modules/openai is missing: run `bash scripts/test-deps.sh`"
    );
    let up = Upstream::chat_model();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let mut cmd = Command::new("node");
    for var in ["OPENAI_BASE_URL", "OPENAI_API_KEY"] {
        cmd.env_remove(var);
    }
    cmd.current_dir(e2e)
        .arg("translate_node.mjs")
        .arg(relay.url(""));
    let out = run_to_end(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "translate_node.mjs failed: {}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("all node translation checks passed"),
        "{stdout}"
    );
    assert_eq!(up.requests().len(), 5);
    assert!(up
        .requests()
        .iter()
        .all(|r| r.path == "/v1/chat/completions"));
}
