//! The real agents through the relay to an upstream that speaks only Chat Completions:
//! Claude Code (`claude -p`, Anthropic Messages) and Codex CLI (`codex exec`, Responses) each
//! complete a prompt that needs one tool call (they read a file the fixture cannot know), and a
//! second run of the same prompt is answered from the cache without reaching the upstream.
//!
//! Installed from npm by `scripts/test-deps.sh` (tests/e2e/package.json); fails, not skips,
//! without them. They run offline: their home and config live in a temp dir, telemetry,
//! auto-update and non-essential traffic are off, and their only base URL is the relay on
//! 127.0.0.1.
//!
//! Determinism for the cache: Claude Code puts a per-session id into `metadata.user_id`
//! (→ chat `user`), so the config's rule for `claude-*` unsets `user`; with it a repeated
//! session, tool call included, is answered wholly from the cache. Codex's per-session fields
//! (`prompt_cache_key`, `client_metadata`, input item ids) are dropped by the translation
//! itself, so a repeated prompt hits; but its `exec_command` output carries a fresh
//! "Chunk ID" and "Wall time" each run, so the request after a shell call is new each time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const SECRET: &str = "PINEAPPLE-42";

fn agent_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/node_modules/.bin")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/test-deps.sh` (installs tests/e2e/package.json)",
        bin.display()
    );
    bin
}

/// A relay with the cache on in front of the chat-only model fixture.
fn relay_for(up: &Upstream, dir: &Path) -> Relay {
    let rules = json!({"model_rules": [
        {"match_model": "claude-*", "unset": ["user"], "set": {"model": "deepseek-chat"}},
    ]});
    Relay::start(&cache_config(
        &up.base_url(),
        &dir.join("cache"),
        json!({}),
        rules,
    ))
}

/// Runs the agent on a prompt that needs one tool call: the fixture asks for the call, the
/// agent runs the tool, the fixture answers from its output. Returns the upstream calls made.
fn tool_round(up: &Upstream, agent: &impl Fn(&str) -> Output, prompt: &str) -> usize {
    let before = up.requests().len();
    let out = agent(prompt);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TOOL SAID:") && stdout.contains(SECRET),
        "the answer quotes the file the tool read: {}",
        show(&out)
    );
    assert!(up
        .requests()
        .iter()
        .all(|r| r.path == "/v1/chat/completions"));
    up.requests().len() - before
}

/// Runs the agent twice on a prompt without tools: the second run never reaches the upstream.
fn hello_twice(up: &Upstream, agent: &impl Fn(&str) -> Output) {
    for round in ["first", "second"] {
        let before = up.requests().len();
        let out = agent("Say hello");
        assert!(out.status.success(), "{round} run: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(FIXTURE_TEXT),
            "{round} run: {}",
            show(&out)
        );
        let calls = up.requests().len() - before;
        let want = if round == "first" { 1 } else { 0 };
        assert_eq!(
            calls, want,
            "{round} run: upstream calls (the second is a cache hit)"
        );
    }
}

#[test]
fn claude_code_calls_a_tool_through_a_chat_only_upstream_then_hits_the_cache() {
    let claude = agent_bin("claude");
    let dir = TempDir::new();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("note.txt"), format!("the secret is {SECRET}\n")).unwrap();
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    let prompt = format!(
        "What does note.txt say?\nCALL Read {}",
        json!({"file_path": work.join("note.txt")})
    );
    let agent = |prompt: &str| {
        let mut cmd = Command::new(&claude);
        cmd.current_dir(&work)
            .args([
                "-p",
                prompt,
                "--model",
                "claude-sonnet-4-5",
                "--allowedTools",
                "Read",
            ])
            .env("HOME", dir.path().join("home"))
            .env("ANTHROPIC_BASE_URL", relay.url(""))
            .env("ANTHROPIC_API_KEY", "sk-test")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env_remove("ANTHROPIC_AUTH_TOKEN");
        run_to_end(cmd, Duration::from_secs(180))
    };
    let first = tool_round(&up, &agent, &prompt);
    assert_eq!(first, 2, "the tool call, then the answer from its result");
    // Read's output is the same each time, so the whole repeated session is answered by the cache
    assert_eq!(
        tool_round(&up, &agent, &prompt),
        0,
        "the repeated session hits the cache"
    );
    hello_twice(&up, &agent);
}

#[test]
fn codex_calls_a_tool_through_a_chat_only_upstream_then_hits_the_cache() {
    let codex = agent_bin("codex");
    let dir = TempDir::new();
    let work = dir.path().join("work");
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(work.join("note.txt"), format!("the secret is {SECRET}\n")).unwrap();
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    // Hosted web search and the multi-agent tools have no Chat Completions equivalent.
    let config = format!(
        "model = \"deepseek-chat\"\nmodel_provider = \"relay\"\ncheck_for_update_on_startup = false\n\
         web_search = \"disabled\"\n\
         [features]\nmulti_agent = false\ngoals = false\n\
         [analytics]\nenabled = false\n\
         [model_providers.relay]\nname = \"relay\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         env_key = \"RELAY_KEY\"\n",
        relay.base_url()
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let prompt = "What does note.txt say?\nCALL exec_command {\"cmd\":\"cat note.txt\"}";
    let agent = |prompt: &str| {
        let mut cmd = Command::new(&codex);
        cmd.current_dir(&work)
            .args(["exec", "--skip-git-repo-check", prompt])
            .env("HOME", dir.path().join("home"))
            .env("CODEX_HOME", &home)
            .env("RELAY_KEY", "sk-test")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL");
        run_to_end(cmd, Duration::from_secs(180))
    };
    assert_eq!(
        tool_round(&up, &agent, prompt),
        2,
        "the tool call, then the answer"
    );
    // A repeat asks the same first question (a hit), but exec_command's output carries a fresh
    // "Chunk ID" and "Wall time", so the request after the tool is a new one (a miss).
    assert_eq!(
        tool_round(&up, &agent, prompt),
        1,
        "only the request after the tool misses"
    );
    hello_twice(&up, &agent);
}
