//! Translation exact enough for agents, checked with the official Python SDKs
//! (`tests/e2e/translate_exact.py`) through the relay to the chat-only fixture
//! (`tests/common/chat_model.rs`): parallel tool calls streamed interleaved.
//! Needs `bash scripts/test-deps.sh`; fails (not skips) without it.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// Runs the script's `checks` against a relay in front of `up`; panics with its output on a
/// failure.
fn run_checks(relay: &Relay, checks: &[&str]) {
    require_python_module("anthropic");
    let mut args = vec![relay.url("")];
    args.extend(checks.iter().map(|c| c.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_e2e_script("translate_exact.py", &args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "translate_exact.py {checks:?} failed: {}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for c in checks {
        assert!(stdout.contains(&format!("check {c} passed")), "{stdout}");
    }
}

#[test]
fn interleaved_parallel_tool_calls_stream_whole_and_equal_the_plain_answer() {
    let up = Upstream::chat_model();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    run_checks(&relay, &["parallel"]);
    // one plain and one streamed request per API, all chat
    let requests = up.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.path == "/v1/chat/completions"));
}
