//! The real agents through the relay: Claude Code (`claude -p`, Anthropic Messages) and Codex
//! CLI (`codex exec`, Responses). Issue 12: each completes a prompt through an endpoint that
//! speaks its own API, and a second run of the same prompt is answered from the cache. Issue
//! 13: each completes a prompt that needs one tool call (they read a file the fixture cannot
//! know) through an upstream that speaks only Chat Completions, and repeats hit the cache.
//! Issue 21: each runs two parallel tool calls the chat upstream streams interleaved, and reads
//! an image file (the image reaches the chat model in a user message after the tool result).
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

/// A relay with the cache on in front of a fixture that speaks each agent's own API: an
/// `anthropic` endpoint for Claude names, a `responses` one for the rest. The rules leave out
/// the fields that carry a per-session id (Claude Code's `metadata.user_id`, Codex's
/// `prompt_cache_key` and `client_metadata`).
fn native_relay_for(up: &Upstream, dir: &Path) -> Relay {
    let extra = json!({
        "upstreams": [
            {"name": "anthropic-like", "url": up.base_url(), "api": "anthropic",
             "api_key": ANTHROPIC_KEY, "models": ["claude-*"]},
            {"name": "openai-like", "url": up.base_url(), "api": "responses", "models": ["gpt-*"]},
        ],
        "model_rules": [
            {"match_model": "claude-*", "unset": ["metadata"]},
            {"match_model": "gpt-*", "unset": ["prompt_cache_key", "client_metadata"]},
        ],
    });
    let mut config = json!({"listen": "127.0.0.1:0",
                            "cache": {"enabled": true, "dir": dir.join("cache")}});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Relay::start(&config.to_string())
}

/// `claude -p PROMPT` in `work`, against `relay`, offline.
fn claude(dir: &Path, work: &Path, relay: &Relay, prompt: &str) -> Output {
    let mut cmd = Command::new(agent_bin("claude"));
    cmd.current_dir(work)
        .args([
            "-p",
            prompt,
            "--model",
            "claude-sonnet-4-5",
            "--allowedTools",
            "Read",
        ])
        .env("HOME", dir.join("home"))
        .env("ANTHROPIC_BASE_URL", relay.url(""))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env_remove("ANTHROPIC_AUTH_TOKEN");
    run_to_end(cmd, Duration::from_secs(180))
}

/// Writes a Codex config (model `model`, the relay as its Responses provider) into `home`.
fn codex_home(home: &Path, relay: &Relay, model: &str) {
    std::fs::create_dir_all(home).unwrap();
    // Hosted web search and the multi-agent tools have no Chat Completions equivalent.
    let config = format!(
        "model = \"{model}\"\nmodel_provider = \"relay\"\ncheck_for_update_on_startup = false\n\
         web_search = \"disabled\"\n\
         [features]\nmulti_agent = false\ngoals = false\n\
         [analytics]\nenabled = false\n\
         [model_providers.relay]\nname = \"relay\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         env_key = \"RELAY_KEY\"\n",
        relay.base_url()
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
}

/// `codex exec PROMPT` in `work` with the config in `home`, offline.
fn codex(dir: &Path, work: &Path, home: &Path, prompt: &str) -> Output {
    let mut cmd = Command::new(agent_bin("codex"));
    cmd.current_dir(work)
        .args(["exec", "--skip-git-repo-check", prompt])
        .env("HOME", dir.join("home"))
        .env("CODEX_HOME", home)
        .env("RELAY_KEY", "sk-test")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    run_to_end(cmd, Duration::from_secs(180))
}

/// Runs `agent` twice on a prompt: both complete with `text`; the second never reaches `up`.
fn native_twice(up: &Upstream, agent: impl Fn() -> Output, text: &str) {
    for round in ["first", "second"] {
        let before = up.requests().len();
        let out = agent();
        assert!(out.status.success(), "{round} run: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(text), "{round} run: {}", show(&out));
        let calls = up.requests().len() - before;
        if round == "first" {
            assert!(calls >= 1, "the first run reaches the upstream");
        } else {
            let late: Vec<String> = up.requests()[before..]
                .iter()
                .map(|r| r.path.clone())
                .collect();
            assert_eq!(
                calls, 0,
                "the second run is answered from the cache: {late:?}"
            );
        }
    }
}

#[test]
fn claude_code_through_an_anthropic_endpoint_then_from_the_cache() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let up = Upstream::apis();
    let relay = native_relay_for(&up, dir.path());
    // the fixture offers a tool call first, then answers from the tool's result
    native_twice(
        &up,
        || claude(dir.path(), &work, &relay, "Say hello"),
        ANTHROPIC_TOOL_TEXT,
    );
    assert!(up
        .requests()
        .iter()
        .all(|r| r.path.starts_with("/v1/messages")));
}

#[test]
fn codex_through_a_responses_endpoint_then_from_the_cache() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let up = Upstream::apis();
    let relay = native_relay_for(&up, dir.path());
    let home = dir.path().join("codex-home");
    codex_home(&home, &relay, "gpt-5");
    native_twice(
        &up,
        || codex(dir.path(), &work, &home, "Say hello"),
        RESPONSES_TOOL_TEXT,
    );
    assert!(up.requests().iter().all(|r| r.path == "/v1/responses"));
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
    let agent = |prompt: &str| claude(dir.path(), &work, &relay, prompt);
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
    let dir = TempDir::new();
    let work = dir.path().join("work");
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("note.txt"), format!("the secret is {SECRET}\n")).unwrap();
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    codex_home(&home, &relay, "deepseek-chat");
    let prompt = "What does note.txt say?\nCALL exec_command {\"cmd\":\"cat note.txt\"}";
    let agent = |prompt: &str| codex(dir.path(), &work, &home, prompt);
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

/// Two files for two parallel tool calls, with a secret each.
fn two_notes(work: &Path) -> [String; 2] {
    let secrets = [SECRET.to_string(), "MANGO-7".to_string()];
    for (name, secret) in ["note.txt", "other.txt"].iter().zip(&secrets) {
        std::fs::write(work.join(name), format!("the secret is {secret}\n")).unwrap();
    }
    secrets
}

/// Runs the agent on a prompt the fixture answers with two tool calls streamed interleaved
/// (call 0's head, call 1's head, call 0's arguments, call 1's arguments); the agent must run
/// both with their whole arguments and send both results back.
fn parallel_round(
    up: &Upstream,
    agent: &impl Fn(&str) -> Output,
    prompt: &str,
    secrets: &[String],
) {
    let out = agent(prompt);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TOOL SAID:") && secrets.iter().all(|s| stdout.contains(s.as_str())),
        "the answer quotes both files the tools read: {}",
        show(&out)
    );
    let requests = up.requests();
    let last = requests.last().expect("requests").json();
    let results = last["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .count();
    assert_eq!(results, 2, "both results went back: {last}");
}

#[test]
fn claude_code_runs_two_interleaved_parallel_tool_calls_through_a_chat_only_upstream() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let secrets = two_notes(&work);
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    let prompt = format!(
        "What do note.txt and other.txt say?\nCALL Read {}\nCALL Read {}",
        json!({"file_path": work.join("note.txt")}),
        json!({"file_path": work.join("other.txt")})
    );
    let agent = |prompt: &str| claude(dir.path(), &work, &relay, prompt);
    parallel_round(&up, &agent, &prompt, &secrets);
}

#[test]
fn codex_runs_two_interleaved_parallel_tool_calls_through_a_chat_only_upstream() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&work).unwrap();
    let secrets = two_notes(&work);
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    codex_home(&home, &relay, "deepseek-chat");
    let prompt = "What do note.txt and other.txt say?\n\
                  CALL exec_command {\"cmd\":\"cat note.txt\"}\n\
                  CALL exec_command {\"cmd\":\"cat other.txt\"}";
    let agent = |prompt: &str| codex(dir.path(), &work, &home, prompt);
    parallel_round(&up, &agent, prompt, &secrets);
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0,
    0, 0, 31, 21, 196, 137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 252, 207, 192, 80, 15, 0, 4,
    133, 1, 128, 132, 169, 140, 33, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// Runs the agent on a prompt whose tool call reads an image file; the image must reach the
/// chat upstream (as a user message after the tool message) and the agent must finish.
fn image_round(up: &Upstream, agent: &impl Fn(&str) -> Output, prompt: &str) {
    let out = agent(prompt);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TOOL SAID:"),
        "{}",
        show(&out)
    );
    let requests = up.requests();
    let last = requests.last().expect("requests").json();
    let images: Vec<String> = last["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(images.len(), 1, "{last}");
    assert!(images[0].starts_with("data:image/"), "{}", images[0]);
}

fn write_png(path: &Path) {
    std::fs::write(path, PNG).unwrap();
}

#[test]
fn claude_code_reads_an_image_file_through_a_chat_only_upstream() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    write_png(&work.join("dot.png"));
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    let prompt = format!(
        "What is in dot.png?\nCALL Read {}",
        json!({"file_path": work.join("dot.png")})
    );
    image_round(
        &up,
        &|p: &str| claude(dir.path(), &work, &relay, p),
        &prompt,
    );
}

#[test]
fn codex_views_an_image_file_through_a_chat_only_upstream() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&work).unwrap();
    write_png(&work.join("dot.png"));
    let up = Upstream::chat_model();
    let relay = relay_for(&up, dir.path());
    codex_home(&home, &relay, "deepseek-chat");
    let prompt = format!(
        "What is in dot.png?\nCALL view_image {}",
        json!({"path": work.join("dot.png")})
    );
    image_round(&up, &|p: &str| codex(dir.path(), &work, &home, p), &prompt);
}
