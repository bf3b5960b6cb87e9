//! Logs and config environment (issue #6): `log_format: json` gives one JSON object per line,
//! `log_level` filters, `body_log` records bodies with keys redacted, and `${VAR}` /
//! `${VAR:-default}` in config strings come from the environment.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn json_log_format_writes_one_parseable_object_per_line() {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({"log_format": "json"})));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m\nx")).status,
        200
    );
    let access = relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains("\"access\""))
        .expect("an access line");
    let lines = relay.stderr_text();
    assert!(
        lines.lines().count() >= 2,
        "start-up line and access line: {lines}"
    );
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        assert!(v["level"].is_string(), "{line}");
    }
    let a: Value = serde_json::from_str(&access).unwrap();
    assert_eq!(a["kind"], "access");
    assert_eq!(a["method"], "POST");
    assert_eq!(a["path"], "/v1/chat/completions");
    assert_eq!(a["status"], 200);
    assert_eq!(
        a["model"], "m\nx",
        "client strings stay data inside the JSON string"
    );
    assert_eq!(a["upstream"], up.base_url());
    assert!(
        a["duration_ms"].is_number() && a["bytes"].as_u64() > Some(0),
        "{a}"
    );
}

#[test]
fn log_level_warn_drops_access_lines() {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({"log_level": "warn"})));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    assert_eq!(get(&relay.url("/health")).status, 200);
    // metrics count /health just after its access line would be written; a warn-level line
    // (a reload that fails) written after that marks where the log has been read up to
    wait_until(Duration::from_secs(30), "/health counted", || {
        metric(
            &relay,
            "llm_relay_requests_total{route=\"/health\",status=\"200\"}",
        ) == Some(1.0)
    });
    std::fs::write(relay.config_path(), "{ not json").unwrap();
    relay.signal("HUP");
    relay
        .wait_for_log_line(Duration::from_secs(30), |l| {
            l.contains("config reload failed")
        })
        .expect("the failed reload is logged at warn level");
    let text = relay.stderr_text();
    assert!(!text.contains(" access "), "{text}");
    assert!(!text.contains(" info "), "{text}");
}

#[test]
fn bad_log_format_is_a_config_error_with_its_line() {
    let cfg = "{\n  \"log_format\": \"xml\"\n}\n";
    let dir = TempDir::new();
    let path = dir.write("c.jsonc", cfg);
    let out = run_relay(&["--check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(
        out.stderr.contains("json"),
        "names the choices: {}",
        out.stderr
    );
}

#[test]
fn body_log_records_request_and_response_bodies_with_keys_redacted() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let log_path = dir.path().join("bodies.jsonl");
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"body_log": log_path.to_str().unwrap(), "api_key": "sk-upstream-secret"}),
    ));
    let mut body = chat("m");
    body["user_api_key"] = json!("hunter2");
    body["messages"][0]["content"] = json!("my key is sk-abc123");
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &body,
        &[("Authorization", "Bearer sk-client-secret")],
    );
    assert_eq!(r.status, 200);
    let stream = json!({"model": "m", "stream": true, "messages": []});
    assert_eq!(
        stream_events(relay.addr(), "/v1/chat/completions", &stream).status,
        200
    );
    // the stream's line is written when the stream ends, just after the client saw it end
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for secret in [
        "hunter2",
        "sk-abc123",
        "sk-client-secret",
        "sk-upstream-secret",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the body log:\n{text}"
        );
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("body log line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["path"], "/v1/chat/completions");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["request"]["user_api_key"], "[redacted]");
    assert_eq!(lines[0]["request"]["model"], "m");
    assert_eq!(lines[0]["response"]["object"], "chat.completion");
    let streamed = lines[1]["response"].as_str().expect("stream kept as text");
    assert!(streamed.contains("data: [DONE]"), "{streamed}");
}

#[test]
fn no_body_log_unless_configured() {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let dir = relay.config_path().parent().unwrap().to_path_buf();
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert_eq!(files.len(), 1, "only the config file: {files:?}");
}

#[test]
fn env_vars_in_config_strings_are_expanded_with_defaults() {
    let up = Upstream::openai();
    let cfg = r#"{
  // the address and key come from the environment
  "listen": "${RELAY_TEST_LISTEN:-127.0.0.1:0}",
  "upstream": "http://${RELAY_TEST_UP_ADDR}/v1",
  "api_key": "${RELAY_TEST_KEY}",
}"#;
    let addr = up.addr();
    let relay = Relay::start_with(
        cfg,
        &[
            ("RELAY_TEST_UP_ADDR", &addr),
            ("RELAY_TEST_KEY", "k-from-env"),
        ],
        &[],
    );
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    let req = up.only_request();
    assert_eq!(req.header("authorization"), Some("Bearer k-from-env"));
}

#[test]
fn missing_env_var_is_a_load_error_naming_it_and_its_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "c.jsonc",
        "{\n  \"listen\": \"127.0.0.1:0\",\n  \"api_key\": \"${RELAY_TEST_SURELY_UNSET}\"\n}\n",
    );
    let out = run_relay(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("RELAY_TEST_SURELY_UNSET"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("c.jsonc: line 3, column 15"),
        "{}",
        out.stderr
    );
}

/// Issue 10: what tiny_http and ureq log through the `log` crate reaches the relay's log, under
/// its level filter (no logger was installed, so tiny_http's accept errors vanished).
#[test]
fn library_messages_reach_the_log_at_its_level_and_keys_stay_out() {
    let up = Upstream::openai();
    let key = "sk-bridge-secret-0123456789";
    let extra = json!({"log_level": "debug", "api_key": key});
    let relay = Relay::start(&config_json(&up.base_url(), extra));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    relay
        .wait_for_log_line(Duration::from_secs(5), |l| {
            l.contains(" debug tiny_http") && l.contains("listening")
        })
        .expect("tiny_http's debug message in the relay's log");
    relay
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains(" debug ureq"))
        .expect("ureq's debug messages in the relay's log");
    let text = relay.stderr_text();
    assert!(
        !text.contains(key),
        "the upstream key reached the log: {text}"
    );

    let quiet = Relay::start(&config_json(&up.base_url(), json!({})));
    assert_eq!(
        post_json(&quiet.url("/v1/chat/completions"), &chat("m")).status,
        200
    );
    quiet
        .wait_for_log_line(Duration::from_secs(5), |l| l.contains(" access "))
        .expect("an access line");
    let text = quiet.stderr_text();
    assert!(
        !text.contains("tiny_http") && !text.contains("ureq"),
        "debug messages below log_level info: {text}"
    );
}

#[test]
fn access_lines_mark_cache_hits_in_text_and_json() {
    let up = Upstream::openai();
    let (_dir, relay) = cached_relay(&up);
    for _ in 0..2 {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let hit = relay
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains(" cache=hit"))
        .expect("the second request's access line says cache=hit");
    assert!(
        hit.contains(" access POST /v1/chat/completions 200 "),
        "{hit}"
    );
    assert!(
        relay.stderr_text().contains(" cache=miss"),
        "the first one missed"
    );

    let dir = TempDir::new();
    let cfg = cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"log_format": "json"}),
    );
    let relay = Relay::start(&cfg);
    for _ in 0..2 {
        assert_eq!(
            post_json(&relay.url("/v1/chat/completions"), &chat("m")).status,
            200
        );
    }
    let hit = relay
        .wait_for_log_line(Duration::from_secs(30), |l| l.contains("\"cache\":\"hit\""))
        .expect("a JSON access line with \"cache\": \"hit\"");
    let v: Value = serde_json::from_str(&hit).unwrap();
    assert_eq!(v["kind"], "access");
    assert_eq!(v["cache"], "hit");
}
