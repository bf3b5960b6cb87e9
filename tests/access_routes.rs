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

/// `method path` with the client key `key` (as Bearer) and an optional JSON body.
fn call(relay: &Relay, key: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    admin_call(relay, key, method, path, body)
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
    // one model's metadata only for models on the list, as the list shows only those
    call(&relay, LIMITED, "GET", "/v1/models/dall-e-3", None)
        .assert_error(403, "model_not_allowed");
    let r = call(&relay, LIMITED, "GET", "/v1/models/gpt-4o-mini", None);
    assert_ne!(r.status, 403, "{}", r.body);
    assert_eq!(up.requests().last().unwrap().path, "/v1/models/gpt-4o-mini");
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
    // (the list: a file id the key did not create is answered by the relay, see access_objects)
    let r = call(&relay, FILES, "GET", "/v1/files", None);
    assert_eq!(r.status, 404, "the fixture's 404: {}", r.body);
    assert_eq!(up.requests().last().unwrap().path, "/v1/files");
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
    // a key without either: every route, as before (the list here: a batch naming a file the
    // key did not create is answered by the relay, see access_objects)
    let r = call(&relay, OPEN, "GET", "/v1/batches", None);
    assert_eq!(r.status, 404, "the fixture's 404: {}", r.body);
    assert_eq!(up.requests().last().unwrap().path, "/v1/batches");
    let r = call(&relay, OPEN, "POST", "/v1/batches", Some(batch));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["message"], "No such File object: file-1");
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

const MEDIA: &str = "sk-routes-media-0123456789";

fn media_relay(up: &Upstream) -> Relay {
    let cfg = json!({"auth": {"keys": [
        {"key": LIMITED, "models": ["gpt-4o-mini*"]},
        {"key": MEDIA, "models": ["gpt-4o-mini*"], "routes": [
            "POST /v1/images/generations", "POST /v1/moderations", "* /v1/audio/*",
            "POST /v1/fine_tuning/jobs",
        ]},
        {"key": OPEN},
    ]}});
    Relay::start(&config_json(&up.base_url(), cfg))
}

#[test]
fn the_model_of_a_json_pass_through_body_is_checked_against_the_allow_list() {
    let up = Upstream::openai();
    let relay = media_relay(&up);
    for (path, body) in [
        (
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "a cat"}),
        ),
        (
            "/v1/moderations",
            json!({"model": "omni-moderation-latest", "input": "x"}),
        ),
        (
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "x", "voice": "alloy"}),
        ),
        (
            "/v1/fine_tuning/jobs",
            // (no `training_file`: a file the key did not create is refused before the
            // model is looked at, see access_objects)
            json!({"model": "gpt-4.1", "suffix": "x"}),
        ),
    ] {
        let r = call(&relay, MEDIA, "POST", path, Some(body.clone()));
        let msg = r.assert_error(403, "model_not_allowed");
        assert!(
            msg.contains(body["model"].as_str().unwrap()),
            "{path}: {msg}"
        );
        // a model on the list goes through, the body unchanged
        let mut ok = body.clone();
        ok["model"] = json!("gpt-4o-mini-x");
        let r = call(&relay, MEDIA, "POST", path, Some(ok.clone()));
        assert_eq!(r.status, 404, "the fixture's 404 for {path}: {}", r.body);
        let seen = up.requests().last().cloned().unwrap();
        assert_eq!((seen.path.as_str(), seen.json()), (path, ok), "{path}");
    }
    // no model, nothing to check; a model that is no string is refused
    let r = call(
        &relay,
        MEDIA,
        "POST",
        "/v1/moderations",
        Some(json!({"input": "x"})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    call(
        &relay,
        MEDIA,
        "POST",
        "/v1/moderations",
        Some(json!({"model": 3, "input": "x"})),
    )
    .assert_error(400, "invalid_request");
    // a key without an allow-list is not read: any model
    let r = call(
        &relay,
        OPEN,
        "POST",
        "/v1/images/generations",
        Some(json!({"model": "dall-e-3"})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // count_tokens (a default route of a key with `models`), in Anthropic's shape
    let r = call(
        &relay,
        LIMITED,
        "POST",
        "/v1/messages/count_tokens",
        Some(json!({"model": "claude-opus-4", "messages": []})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    // what reached the upstream: the allowed models, the body without one, the open key's
    let reached: Vec<Value> = up
        .requests()
        .iter()
        .map(|r| r.json()["model"].clone())
        .collect();
    let ok = json!("gpt-4o-mini-x");
    let want = [
        ok.clone(),
        ok.clone(),
        ok.clone(),
        ok,
        Value::Null,
        json!("dall-e-3"),
    ];
    assert_eq!(reached, want);
}

/// A multipart upload (`file` first, then `model`) as the OpenAI SDKs send a transcription.
fn transcription(model: &str, file_bytes: usize) -> (String, Vec<u8>) {
    let boundary = "----relay-test-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..file_bytes).map(|i| (i % 251) as u8));
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
             --{boundary}--\r\n"
        )
        .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn a_multipart_upload_naming_a_refused_model_is_aborted_upstream() {
    let up = Upstream::openai();
    let relay = media_relay(&up);
    let auth = format!("Bearer {MEDIA}");
    let url = relay.url("/v1/audio/transcriptions");
    let (ct, body) = transcription("whisper-1", 512 * 1024);
    let r = request(
        "POST",
        &url,
        &[("Authorization", &auth), ("Content-Type", &ct)],
        Some(&body),
    );
    let msg = r.assert_error(403, "model_not_allowed");
    assert!(msg.contains("whisper-1"), "{msg}");
    wait_until(
        std::time::Duration::from_secs(30),
        "the upstream to see the upload aborted",
        || !up.aborted().is_empty(),
    );
    let cut = &up.aborted()[0];
    assert_eq!(cut.path, "/v1/audio/transcriptions");
    assert!(
        cut.body.len() < body.len(),
        "{} of {}",
        cut.body.len(),
        body.len()
    );
    assert!(
        up.requests().is_empty(),
        "an upload completed: {:?}",
        up.requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    // a model on the list: the upload goes through whole, byte for byte
    let (ct, body) = transcription("gpt-4o-mini-transcribe", 512 * 1024);
    let r = request(
        "POST",
        &url,
        &[("Authorization", &auth), ("Content-Type", &ct)],
        Some(&body),
    );
    assert_eq!(r.status, 404, "the fixture's 404: {}", r.body);
    let seen = up.only_request();
    assert_eq!(seen.body, body);
    assert_eq!(up.aborted().len(), 1);
}
