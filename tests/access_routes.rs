//! What a key can reach (issue 20): one route policy in front of everything (paths an upstream
//! could resolve elsewhere are a 400 `invalid_path`, other spellings of named routes a 404,
//! neither reaches an upstream), per-key `routes` from every place a key is defined, and the
//! `model` of pass-through bodies checked against the key's allow-list.

use serde_json::{json, Value};

use crate::common::*;

const ADMIN: &str = "sk-routes-admin-0123456789";
const LIMITED: &str = "sk-routes-limited-0123456789";
const FILES: &str = "sk-routes-files-0123456789";
const OPEN: &str = "sk-routes-open-0123456789";

/// Sends `method path` over raw TCP (no client normalises the path) and returns the status and
/// the body.
fn raw(relay: &Relay, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    let r = raw_exchange(
        relay.addr(),
        &[head.as_bytes()],
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(30),
    );
    let body = r.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (r.status.unwrap_or(0), body.to_string())
}

#[test]
fn paths_an_upstream_could_resolve_elsewhere_never_reach_it() {
    let up = Upstream::openai();
    // as in the issue: the upstream is one tenant's prefix on a shared server
    let base = format!("http://{}/tenant-a/v1", up.addr());
    let relay = Relay::start(&config_json(&base, json!({})));
    let refused = [
        "/v1/../../tenant-b/v1/files",
        "/v1/%2e%2e/%2e%2e/tenant-b/v1/files",
        "/v1/%2E%2E/tenant-b/v1/files",
        "/v1/./chat/completions",
        "/v1//chat/completions",
        "/v1/files/..;/..;/tenant-b/v1/files",
        "/v1/files%2f..%2f..%2ftenant-b",
        "/v1/files\\..\\..\\tenant-b",
        "/v1/files%5c..%5ctenant-b",
        "/v1/files/%252e%252e/x",
    ];
    for path in refused {
        let (status, body) = raw(&relay, "GET", path, &[]);
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_path", "{path}: {v}");
    }
    // in the shape of the route's API
    let (status, body) = raw(&relay, "POST", "/v1/messages/./count_tokens", &[]);
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dot segment"),
        "{v}"
    );
    // another spelling of a named route is a 404, not a pass-through
    for (method, path) in [
        ("POST", "/v1/Chat/completions"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/EMBEDDINGS"),
        ("GET", "/v1/models/"),
        ("GET", "/v1/Admin/keys"),
    ] {
        let (status, body) = raw(&relay, method, path, &[]);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body.contains("not_found"), "{method} {path}: {body}");
    }
    assert!(
        up.requests().is_empty(),
        "reached the upstream: {:?}",
        up.requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    // and the fixture does see what passes
    let (status, _) = raw(&relay, "GET", "/v1/files/file-1", &[]);
    assert_eq!(status, 404, "the fixture's own 404");
    assert_eq!(up.only_request().path, "/tenant-a/v1/files/file-1");
}

fn keyed_relay(up: &Upstream, dir: &TempDir) -> Relay {
    let cfg = json!({"auth": {
        "keys": [
            {"key": LIMITED, "name": "limited", "models": ["gpt-4o-mini*"]},
            {"key": FILES, "name": "files", "models": ["gpt-4o-mini*"],
             "routes": ["* /v1/files*", "POST /v1/chat/completions"]},
            {"key": OPEN, "name": "open"},
        ],
        "admin_key": ADMIN,
        "keys_file": dir.path().join("keys.json"),
    }});
    Relay::start(&config_json(&up.base_url(), cfg))
}

fn call(relay: &Relay, key: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {key}");
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    request(
        method,
        &relay.url(path),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        bytes.as_deref(),
    )
}

#[test]
fn a_key_reaches_only_its_routes() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = keyed_relay(&up, &dir);
    let image = json!({"model": "gpt-4o-mini", "prompt": "a cat"});
    let batch = json!({"input_file_id": "file-1", "endpoint": "/v1/chat/completions",
                       "completion_window": "24h"});
    // a key with `models` and no `routes`: the API routes that name a model, and the model list
    let r = call(
        &relay,
        LIMITED,
        "POST",
        "/v1/images/generations",
        Some(image.clone()),
    );
    let msg = r.assert_error(403, "route_not_allowed");
    assert!(msg.contains("POST /v1/images/generations"), "{msg}");
    call(&relay, LIMITED, "POST", "/v1/batches", Some(batch.clone()))
        .assert_error(403, "route_not_allowed");
    call(&relay, LIMITED, "GET", "/v1/files", None).assert_error(403, "route_not_allowed");
    call(&relay, LIMITED, "GET", "/v1/responses/resp_1", None)
        .assert_error(403, "route_not_allowed");
    let before = up.requests().len();
    assert_eq!(before, 0, "{:?}", up.requests());
    let ok = call(
        &relay,
        LIMITED,
        "POST",
        "/v1/chat/completions",
        Some(chat_body("gpt-4o-mini")),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(call(&relay, LIMITED, "GET", "/v1/models", None).status, 200);
    // the Anthropic route answers in its own shape
    let r = call(
        &relay,
        LIMITED,
        "POST",
        "/v1/messages/batches",
        Some(json!({})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    // its own `routes`
    let r = call(&relay, FILES, "GET", "/v1/files/file-1", None);
    assert_eq!(r.status, 404, "the fixture's 404: {}", r.body);
    assert_eq!(up.requests().last().unwrap().path, "/v1/files/file-1");
    call(&relay, FILES, "POST", "/v1/batches", Some(batch.clone()))
        .assert_error(403, "route_not_allowed");
    call(
        &relay,
        FILES,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "gpt-4o-mini", "input": "x"})),
    )
    .assert_error(403, "route_not_allowed");
    // a key without either: every route, as before
    let r = call(&relay, OPEN, "POST", "/v1/batches", Some(batch));
    assert_eq!(r.status, 404, "the fixture's 404: {}", r.body);
    assert_eq!(up.requests().last().unwrap().path, "/v1/batches");
}

#[test]
fn routes_are_taken_and_checked_wherever_a_key_is_defined() {
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = keyed_relay(&up, &dir);
    // the admin API: created with routes, changed, cleared, refused when invalid
    let body = json!({"name": "c", "routes": ["POST /v1/chat/completions"]});
    let r = admin_call(&relay, ADMIN, "POST", "/admin/keys", Some(body));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["routes"], json!(["POST /v1/chat/completions"]));
    let (id, secret) = (
        r.json()["id"].as_str().unwrap().to_string(),
        r.json()["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        call(
            &relay,
            &secret,
            "POST",
            "/v1/chat/completions",
            Some(chat_body("m"))
        )
        .status,
        200
    );
    call(&relay, &secret, "GET", "/v1/models", None).assert_error(403, "route_not_allowed");
    let path = format!("/admin/keys/{id}");
    let r = admin_call(
        &relay,
        ADMIN,
        "PATCH",
        &path,
        Some(json!({"routes": ["get /v1/models*"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["routes"], json!(["GET /v1/models*"]));
    assert_eq!(call(&relay, &secret, "GET", "/v1/models", None).status, 200);
    call(
        &relay,
        &secret,
        "POST",
        "/v1/chat/completions",
        Some(chat_body("m")),
    )
    .assert_error(403, "route_not_allowed");
    for (bad, says) in [
        (json!(["FETCH /v1/files"]), "is not a method"),
        (json!(["GET /files"]), "must start with /v1/"),
        (json!(["GET /v1/../x"]), "dot segment"),
        (json!([]), "is empty"),
        (json!("GET /v1/files"), "not valid"),
    ] {
        let r = admin_call(&relay, ADMIN, "PATCH", &path, Some(json!({"routes": bad})));
        let msg = r.assert_error(400, "invalid_request");
        assert!(msg.contains(says), "{bad}: {msg}");
        let r = admin_call(
            &relay,
            ADMIN,
            "POST",
            "/admin/keys",
            Some(json!({"name": "x", "routes": bad})),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = admin_call(&relay, ADMIN, "PATCH", &path, Some(json!({"routes": null})));
    assert_eq!(r.json()["routes"], Value::Null, "{}", r.body);
    assert_eq!(
        call(&relay, &secret, "POST", "/v1/batches", Some(json!({}))).status,
        404
    );
    drop(relay);

    // keys_file: an invalid entry stops the start and `--check`, naming file, line and column
    let file = dir.path().join("keys.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["keys"][0]["routes"] = json!(["POST /v1/chat/completions", "GET files"]);
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let cfg = json!({"auth": {"keys_file": file, "admin_key": ADMIN}});
    let config = dir.write("c.jsonc", &config_json(&up.base_url(), cfg));
    for args in [&["--config"][..], &["--check", "--config"][..]] {
        let mut args = args.to_vec();
        args.push(config.to_str().unwrap());
        let out = run_relay(&args, &[]);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("keys.json: line ")
                && out.stderr.contains("column")
                && out.stderr.contains("must start with /v1/"),
            "{args:?}: {}",
            out.stderr
        );
    }

    // the config file: refused at load with the entry's place
    let cfg = json!({"auth": {"keys": [{"key": LIMITED, "routes": ["POST /v1/chat/completions", "* v1/files"]}]}});
    let config = dir.write("d.jsonc", &config_json(&up.base_url(), cfg));
    let out = run_relay(&["--check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("auth.keys[0].routes[1]")
            && out.stderr.contains("must start with /v1/"),
        "{}",
        out.stderr
    );
}
