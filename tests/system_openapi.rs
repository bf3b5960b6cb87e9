//! The OpenAPI document (#5): served at `/openapi.json` byte for byte as kept in the repo, and
//! checked against the running relay by schemathesis (PyPI; `$LLM_RELAY_SCHEMATHESIS`, default
//! `python3 -m schemathesis.cli`), so the document and the server cannot drift apart and no
//! generated input makes the relay fail. Needs `pip install -r tests/requirements.txt`
//! (`scripts/test-deps.sh` does it); fails (not skips) without.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const DOC: &str = include_str!("../openapi.json");
const KEY: &str = "sk-openapi-client-and-admin-key";

/// The schemathesis command: `$LLM_RELAY_SCHEMATHESIS`, else `python3 -m schemathesis.cli` (which
/// works where pip put its scripts in a directory off `PATH`, as `pip install --user` does).
fn schemathesis() -> (String, Command) {
    match std::env::var("LLM_RELAY_SCHEMATHESIS") {
        Ok(bin) => (bin.clone(), Command::new(bin)),
        Err(_) => {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "schemathesis.cli"]);
            ("python3 -m schemathesis.cli".to_string(), cmd)
        }
    }
}

#[test]
fn openapi_document_is_served_without_a_key_and_lists_every_route() {
    let up = Upstream::openai();
    let cfg = json!({"auth": {"keys": [KEY]}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let r = get(&relay.url("/openapi.json"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, DOC, "served document differs from openapi.json");
    let doc: Value = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/admin/keys",
        "/admin/keys/{id}",
        "/admin/keys/{id}/usage",
        "/admin/stats",
        "/cache/stats",
        "/health",
        "/ready",
        "/metrics",
        "/ui",
        "/admin/ui/overview",
        "/admin/ui/keys",
        "/admin/ui/upstreams",
        "/admin/ui/requests",
        "/admin/ui/requests/{id}",
        "/admin/ui/cache",
        "/admin/ui/cache/entries/{key}",
        "/admin/ui/cache/why",
        "/admin/ui/cache/export",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
}

#[test]
fn schemathesis_finds_no_drift_and_no_server_error() {
    let (name, mut version) = schemathesis();
    match version.arg("--version").output() {
        Ok(o) if o.status.success() => {
            eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim())
        }
        other => panic!(
            "cannot run `{name} --version` ({other:?}); run `pip install -r tests/requirements.txt` \
             (schemathesis 4.x) or set LLM_RELAY_SCHEMATHESIS"
        ),
    }
    let _turn = crate::heavy_turn();
    let up = Upstream::openai();
    let dir = TempDir::new();
    // One key serves as client and admin key, so one header covers every route; the dashboard
    // is on so its routes answer too (its cache routes say the cache is off: 409).
    let cfg = json!({"auth": {"keys": [KEY], "admin_key": KEY,
        "keys_file": dir.path().join("keys.json")},
        "ui": {"enabled": true}});
    let relay = Relay::start(&config_json(&up.base_url(), cfg));
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let auth = format!("Authorization: Bearer {KEY}");
    let (_, mut cmd) = schemathesis();
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("SCHEMATHESIS_HOOKS", "")
        .args(["run", doc, "--url", &relay.url(""), "-H", &auth])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--seed",
            "5",
            // one worker: CPython 3.11 can fail with "AST constructor recursion depth mismatch"
            // when schemathesis builds strategies in two threads at once
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ])
        .stdin(Stdio::null())
        // files, not pipes: its report can outgrow a pipe buffer while nobody reads it
        .stdout(std::fs::File::create(dir.path().join("stdout.txt")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.txt")).unwrap());
    let mut child = cmd.spawn().expect("spawn schemathesis");
    // a hang guard, not a speed target (it takes about 30 s on an idle machine)
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().expect("schemathesis status");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout.txt"), read("stderr.txt"));
    assert!(
        status.success(),
        "schemathesis failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(
        up.requests().len() > 5,
        "schemathesis never got through to the upstream"
    );
    assert!(
        !relay.stderr_text().contains("panic"),
        "{}",
        relay.stderr_text()
    );
}
