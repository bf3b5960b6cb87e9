//! Objects stay with the key that made them (issue 20): files, batches and stored responses
//! created through the relay are recorded with their owner; another key gets the upstream's
//! own 404 for an unknown id (and nothing reaches the upstream), lists are filtered across
//! pages, the admin key sees everything, and ownership survives a restart (`state.dir`) and is
//! shared by replicas (`state.redis`). The upstream is a fixture that keeps objects as OpenAI's
//! API does ([`ObjectsApi`]).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY_A: &str = "sk-objects-team-a-000001";
const KEY_B: &str = "sk-objects-team-b-000002";
const ADMIN: &str = "sk-objects-admin-0000003";

/// A relay with keys A and B and the admin key in front of `up`, with `state`.
fn relay_for(up: &Upstream, state: Value) -> Relay {
    let config = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}],
        "auth": {"keys": [{"key": KEY_A, "name": "a"}, {"key": KEY_B, "name": "b"}],
                 "admin_key": ADMIN},
        "state": state,
    });
    Relay::start(&config.to_string())
}

/// `method path` on `relay` with `key`.
fn call(relay: &Relay, key: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
    keyed_call(method, &relay.url(path), key, body)
}

/// Uploads a file as OpenAI's SDKs do (multipart) with `key`; its id.
fn upload(relay: &Relay, key: &str) -> String {
    upload_to(&relay.url("/v1/files"), key)
}

/// Uploads a file to `url` (the relay's, or the upstream's own) with `key`; its id.
fn upload_to(url: &str, key: &str) -> String {
    let boundary = "relay-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{{\"custom_id\":\"1\"}}\r\n--{boundary}--\r\n"
    );
    let auth = format!("Bearer {key}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = request(
        "POST",
        url,
        &[("Authorization", &auth), ("Content-Type", &ct)],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

/// Every file id `key` lists, following `after` with `limit` per page.
fn list_all(relay: &Relay, key: &str, collection: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..50 {
        let path = match &after {
            Some(a) => format!("/v1/{collection}?limit={limit}&after={a}"),
            None => format!("/v1/{collection}?limit={limit}"),
        };
        let r = call(relay, key, "GET", &path, None);
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit, "a page holds at most `limit`: {page}");
        ids.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        if page["has_more"] != true {
            return ids;
        }
        after = Some(page["last_id"].as_str().unwrap().to_string());
    }
    panic!("the list never ended");
}

/// The answer `relay` gives the admin key for an id the upstream never had (passed through,
/// so it is the upstream's own), with `missing` replaced by `id`.
fn upstream_unknown(relay: &Relay, path: &str, missing: &str, id: &str) -> Value {
    let r = call(relay, ADMIN, "GET", &path.replace(id, missing), None);
    assert_eq!(r.status, 404, "{}", r.body);
    serde_json::from_str(&r.body.replace(missing, id)).unwrap()
}

/// `file` (the only file) is A's on `relay`: A reads and lists it, B gets a 404 and an empty
/// list.
fn only_a_reaches(relay: &Relay, file: &str) {
    let path = format!("/v1/files/{file}");
    assert_eq!(call(relay, KEY_A, "GET", &path, None).status, 200);
    assert_eq!(call(relay, KEY_B, "GET", &path, None).status, 404);
    assert_eq!(list_all(relay, KEY_A, "files", 10), vec![file.to_string()]);
    assert_eq!(list_all(relay, KEY_B, "files", 10), Vec::<String>::new());
}

#[test]
fn a_keys_files_and_batches_are_invisible_to_another_key_and_the_admin_sees_all() {
    let up = ObjectsApi::start();
    let relay = relay_for(&up, json!({}));
    let warned = relay.wait_for_log_line(Duration::from_secs(10), |l| {
        l.contains("kept in memory only") && l.contains("state.dir")
    });
    assert!(
        warned.is_some(),
        "no warning that owners live in memory only"
    );
    // interleaved, so B's list must skip A's files on every page
    let mut a_files = Vec::new();
    let mut b_files = Vec::new();
    for _ in 0..3 {
        a_files.push(upload(&relay, KEY_A));
        b_files.push(upload(&relay, KEY_B));
        a_files.push(upload(&relay, KEY_A));
    }
    let a_file = a_files[0].clone();

    // B: exactly the upstream's 404 for an unknown id, and nothing reaches the upstream
    let before = up.requests().len();
    for (method, path) in [
        ("GET", format!("/v1/files/{a_file}")),
        ("GET", format!("/v1/files/{a_file}/content")),
        ("DELETE", format!("/v1/files/{a_file}")),
    ] {
        let r = call(&relay, KEY_B, method, &path, None);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        let expected = upstream_unknown(
            &relay,
            &format!("/v1/files/{a_file}"),
            "file-never",
            &a_file,
        );
        assert_eq!(r.json(), expected, "{method} {path}");
    }
    let reached: Vec<_> = up.requests()[before..]
        .iter()
        .filter(|r| r.path.contains(&a_file))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        reached.is_empty(),
        "B's requests reached the upstream: {reached:?}"
    );

    // lists are filtered across pages, whatever the page size
    for limit in [1, 2, 100] {
        assert_eq!(
            list_all(&relay, KEY_B, "files", limit),
            b_files,
            "B, limit {limit}"
        );
        assert_eq!(
            list_all(&relay, KEY_A, "files", limit),
            a_files,
            "A, limit {limit}"
        );
    }
    // the admin key sees every object, and reads any of them
    assert_eq!(list_all(&relay, ADMIN, "files", 100).len(), 9);
    assert_eq!(
        call(&relay, ADMIN, "GET", &format!("/v1/files/{a_file}"), None).status,
        200
    );
    // the owner reads its own file
    let own = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/files/{a_file}/content"),
        None,
    );
    assert_eq!(
        (own.status, own.body.as_str()),
        (200, format!("content of {a_file}").as_str())
    );

    // a batch may only use the key's own file; B's attempt never reaches the upstream
    let batch = |key: &str, file: &str| {
        let body = json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"});
        call(&relay, key, "POST", "/v1/batches", Some(&body))
    };
    let before = up.requests().len();
    let refused = batch(KEY_B, &a_file);
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(
        refused.json()["error"]["message"],
        format!("No such File object: {a_file}")
    );
    assert_eq!(
        up.requests().len(),
        before,
        "B's batch reached the upstream"
    );
    let made = batch(KEY_A, &a_file);
    assert_eq!(made.status, 200, "{}", made.body);
    let batch_id = made.json()["id"].as_str().unwrap().to_string();
    // the batch's output file, made by the upstream, belongs to the batch's owner
    let output = made.json()["output_file_id"].as_str().unwrap().to_string();
    let b_sees = call(
        &relay,
        KEY_B,
        "GET",
        &format!("/v1/batches/{batch_id}"),
        None,
    );
    assert_eq!(
        b_sees.json(),
        upstream_unknown(
            &relay,
            &format!("/v1/batches/{batch_id}"),
            "batch_never",
            &batch_id
        )
    );
    assert_eq!(list_all(&relay, KEY_B, "batches", 10), Vec::<String>::new());
    assert_eq!(
        list_all(&relay, KEY_A, "batches", 10),
        vec![batch_id.clone()]
    );
    let a_sees = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/batches/{batch_id}"),
        None,
    );
    assert_eq!(a_sees.status, 200, "{}", a_sees.body);
    let out = call(
        &relay,
        KEY_A,
        "GET",
        &format!("/v1/files/{output}/content"),
        None,
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        call(
            &relay,
            KEY_B,
            "GET",
            &format!("/v1/files/{output}/content"),
            None
        )
        .status,
        404
    );

    // an object made at the provider directly has no owner: the admin's only
    let direct = upload_to(&format!("{}/files", up.base_url()), "upstream-key");
    assert_eq!(
        call(&relay, KEY_A, "GET", &format!("/v1/files/{direct}"), None).status,
        404
    );
    assert_eq!(
        call(&relay, ADMIN, "GET", &format!("/v1/files/{direct}"), None).status,
        200
    );
    // a deleted object is forgotten
    let gone = call(
        &relay,
        KEY_A,
        "DELETE",
        &format!("/v1/files/{a_file}"),
        None,
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert!(!list_all(&relay, KEY_A, "files", 100).contains(&a_file));
}

#[test]
fn a_stored_response_and_previous_response_id_belong_to_their_key() {
    let up = ObjectsApi::start();
    let relay = relay_for(&up, json!({}));
    let ask = |key: &str, previous: Option<&str>| {
        let mut body = json!({"model": "m", "input": "hi"});
        if let Some(p) = previous {
            body["previous_response_id"] = json!(p);
        }
        call(&relay, key, "POST", "/v1/responses", Some(&body))
    };
    let first = ask(KEY_A, None);
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_string();
    // B can neither read it nor continue from it: the upstream's answers for an unknown id
    let read = call(&relay, KEY_B, "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(
        read.json(),
        upstream_unknown(&relay, &format!("/v1/responses/{id}"), "resp_never", &id)
    );
    let before = up.requests().len();
    let cont = ask(KEY_B, Some(&id));
    assert_eq!(cont.status, 400, "{}", cont.body);
    assert_eq!(cont.json()["error"]["code"], "previous_response_not_found");
    assert_eq!(
        up.requests().len(),
        before,
        "B's request reached the upstream"
    );
    // A can
    assert_eq!(
        call(&relay, KEY_A, "GET", &format!("/v1/responses/{id}"), None).status,
        200
    );
    assert_eq!(ask(KEY_A, Some(&id)).status, 200);
    // so are its output items, which an `item_reference` names
    let item = first.json()["output"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reference = json!({"model": "m", "input": [{"type": "item_reference", "id": item}]});
    let before = up.requests().len();
    let r = call(&relay, KEY_B, "POST", "/v1/responses", Some(&reference));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["param"], "input");
    assert!(
        r.body.contains(&format!("Item with id '{item}' not found")),
        "{}",
        r.body
    );
    assert_eq!(
        up.requests().len(),
        before,
        "B's request reached the upstream"
    );
    let r = call(&relay, KEY_A, "POST", "/v1/responses", Some(&reference));
    assert_eq!(r.status, 200, "{}", r.body);
    // a streamed response is A's as well, recorded before its stream's last bytes
    let body = json!({"model": "m", "input": "hi", "stream": true});
    let streamed = call(&relay, KEY_A, "POST", "/v1/responses", Some(&body));
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(
        streamed.body.contains("response.completed"),
        "{}",
        streamed.body
    );
    let created = streamed.body.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l.strip_prefix("data: ")?).ok()?;
        Some(v["response"]["id"].as_str()?.to_string())
    });
    let streamed_id = created.expect("a response id in the stream");
    let path = format!("/v1/responses/{streamed_id}");
    assert_eq!(call(&relay, KEY_A, "GET", &path, None).status, 200);
    assert_eq!(call(&relay, KEY_B, "GET", &path, None).status, 404);
    // with `store: false` nothing is kept, so nothing is owned: the admin's only
    let body = json!({"model": "m", "input": "hi", "store": false});
    let unstored = call(&relay, KEY_A, "POST", "/v1/responses", Some(&body));
    let unstored_id = unstored.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{unstored_id}");
    assert_eq!(call(&relay, KEY_A, "GET", &path, None).status, 404);
}

#[test]
fn stored_chat_completions_and_conversations_belong_to_their_key() {
    let up = ObjectsApi::start();
    let relay = relay_for(&up, json!({}));
    // a chat completion the upstream stores (`store: true`), plain and streamed, is A's
    let mut ids = Vec::new();
    for stream in [false, true] {
        let body = json!({"model": "m", "store": true, "stream": stream,
            "messages": [{"role": "user", "content": format!("store me {stream}")}]});
        let r = call(&relay, KEY_A, "POST", "/v1/chat/completions", Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
        let id = if stream {
            r.body.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l.strip_prefix("data: ")?).ok()?;
                Some(v["id"].as_str()?.to_string())
            })
        } else {
            r.json()["id"].as_str().map(str::to_string)
        };
        ids.push(id.expect("a completion id"));
    }
    for id in &ids {
        let path = format!("/v1/chat/completions/{id}");
        assert_eq!(
            call(&relay, KEY_A, "GET", &path, None).status,
            200,
            "{path}"
        );
        let before = up.requests().len();
        let read = call(&relay, KEY_B, "GET", &path, None);
        assert_eq!(
            read.json(),
            upstream_unknown(&relay, &path, "chatcmpl-never", id),
            "B gets the upstream's answer for an unknown id"
        );
        assert_eq!(
            up.requests().len(),
            before + 1,
            "only the admin's probe went upstream"
        );
        assert_eq!(call(&relay, ADMIN, "GET", &path, None).status, 200);
    }
    // not stored: nothing is owned, the admin's only
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "keep nothing"}]});
    let r = call(&relay, KEY_A, "POST", "/v1/chat/completions", Some(&body));
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/chat/completions/{id}");
    assert_eq!(call(&relay, KEY_A, "GET", &path, None).status, 404);

    // a conversation: A's to read, list items of, name in a Responses request and delete
    let created = call(&relay, KEY_A, "POST", "/v1/conversations", Some(&json!({})));
    assert_eq!(created.status, 200, "{}", created.body);
    let conv = created.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/conversations/{conv}");
    let before = up.requests().len();
    for (method, p) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/items")),
        ("DELETE", path.clone()),
    ] {
        let r = call(&relay, KEY_B, method, &p, None);
        assert_eq!(r.status, 404, "{method} {p}: {}", r.body);
        assert!(
            r.body
                .contains(&format!("Conversation with id '{conv}' not found")),
            "{}",
            r.body
        );
    }
    for conversation in [json!(conv), json!({"id": conv})] {
        let body = json!({"model": "m", "input": "hi", "conversation": conversation});
        let r = call(&relay, KEY_B, "POST", "/v1/responses", Some(&body));
        assert_eq!(r.status, 404, "{}", r.body);
    }
    assert_eq!(
        up.requests().len(),
        before,
        "B's requests reached the upstream"
    );
    assert_eq!(call(&relay, KEY_A, "GET", &path, None).status, 200);
    assert_eq!(
        call(&relay, KEY_A, "GET", &format!("{path}/items"), None).status,
        200
    );
    let body = json!({"model": "m", "input": "hi", "conversation": conv});
    assert_eq!(
        call(&relay, KEY_A, "POST", "/v1/responses", Some(&body)).status,
        200
    );
    assert_eq!(call(&relay, KEY_A, "DELETE", &path, None).status, 200);
}

#[test]
fn uploads_and_vector_stores_belong_to_their_key() {
    let up = ObjectsApi::start();
    let relay = relay_for(&up, json!({}));
    // A uploads a file in parts: the upload, then the file it becomes, are A's
    let made = call(
        &relay,
        KEY_A,
        "POST",
        "/v1/uploads",
        Some(
            &json!({"filename": "big.jsonl", "purpose": "batch", "bytes": 10,
                     "mime_type": "application/jsonl"}),
        ),
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let upload_id = made.json()["id"].as_str().unwrap().to_string();
    let part_path = format!("/v1/uploads/{upload_id}/parts");
    let before = up.requests().len();
    let b_part = call(&relay, KEY_B, "POST", &part_path, Some(&json!({})));
    assert_eq!(b_part.status, 404, "{}", b_part.body);
    assert_eq!(
        b_part.json()["error"]["message"],
        format!("No such Upload object: {upload_id}")
    );
    assert_eq!(up.requests().len(), before, "B's part reached the upstream");
    assert_eq!(
        call(&relay, KEY_A, "POST", &part_path, Some(&json!({}))).status,
        200
    );
    let done = call(
        &relay,
        KEY_A,
        "POST",
        &format!("/v1/uploads/{upload_id}/complete"),
        Some(&json!({"part_ids": []})),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let file = done.json()["file"]["id"].as_str().unwrap().to_string();
    only_a_reaches(&relay, &file);

    // a vector store may only hold the key's files; it is then the key's
    let store = |key: &str| {
        call(
            &relay,
            key,
            "POST",
            "/v1/vector_stores",
            Some(&json!({"name": "docs", "file_ids": [file]})),
        )
    };
    let refused = store(KEY_B);
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(
        refused.json()["error"]["message"],
        format!("No such File object: {file}")
    );
    let made = store(KEY_A);
    assert_eq!(made.status, 200, "{}", made.body);
    let vs = made.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/vector_stores/{vs}");
    assert_eq!(
        call(&relay, KEY_B, "GET", &path, None).json(),
        upstream_unknown(&relay, &path, "vs_never", &vs)
    );
    let search = format!("{path}/search");
    assert_eq!(
        call(&relay, KEY_B, "POST", &search, Some(&json!({"query": "q"}))).status,
        404
    );
    assert_eq!(
        call(&relay, KEY_A, "POST", &search, Some(&json!({"query": "q"}))).status,
        200
    );
    assert_eq!(
        list_all(&relay, KEY_B, "vector_stores", 5),
        Vec::<String>::new()
    );
    assert_eq!(
        list_all(&relay, KEY_A, "vector_stores", 5),
        vec![vs.clone()]
    );
    // naming it in a Responses tool is refused for B before anything goes upstream
    let ask = json!({"model": "m", "input": "find it",
        "tools": [{"type": "file_search", "vector_store_ids": [vs]}]});
    let before = up.requests().len();
    let r = call(&relay, KEY_B, "POST", "/v1/responses", Some(&ask));
    assert_eq!(r.json(), upstream_unknown(&relay, &path, "vs_never", &vs));
    assert_eq!(
        up.requests().len(),
        before + 1,
        "only the admin's lookup reached the upstream"
    );
    assert_eq!(
        call(&relay, KEY_A, "POST", "/v1/responses", Some(&ask)).status,
        200
    );
}

#[test]
fn fine_tuning_jobs_and_their_result_files_belong_to_their_key() {
    let up = ObjectsApi::start();
    let relay = relay_for(&up, json!({}));
    let file = upload(&relay, KEY_A);
    let job = |key: &str| {
        let body = json!({"model": "gpt-4o-mini", "training_file": file});
        call(&relay, key, "POST", "/v1/fine_tuning/jobs", Some(&body))
    };
    let refused = job(KEY_B);
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(
        refused.json()["error"]["message"],
        format!("No such File object: {file}")
    );
    let made = job(KEY_A);
    assert_eq!(made.status, 200, "{}", made.body);
    let id = made.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/fine_tuning/jobs/{id}");
    assert_eq!(
        call(&relay, KEY_B, "GET", &path, None).json(),
        upstream_unknown(&relay, &path, "ftjob-never", &id)
    );
    assert_eq!(
        list_all(&relay, KEY_B, "fine_tuning/jobs", 5),
        Vec::<String>::new()
    );
    assert_eq!(
        list_all(&relay, KEY_A, "fine_tuning/jobs", 5),
        vec![id.clone()]
    );
    // the job's result file, made by the upstream, is A's once A has read the job
    let read = call(&relay, KEY_A, "GET", &path, None);
    let result = read.json()["result_files"][0].as_str().unwrap().to_string();
    let content = format!("/v1/files/{result}/content");
    assert_eq!(call(&relay, KEY_A, "GET", &content, None).status, 200);
    assert_eq!(call(&relay, KEY_B, "GET", &content, None).status, 404);
}

#[test]
fn with_auth_off_nothing_changes() {
    let up = ObjectsApi::start();
    let config = json!({"listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}]});
    let relay = Relay::start(&config.to_string());
    let file = upload(&relay, "any-client");
    let direct = upload_to(&format!("{}/files", up.base_url()), "upstream-key");
    for id in [&file, &direct] {
        let r = request("GET", &relay.url(&format!("/v1/files/{id}")), &[], None);
        assert_eq!(r.status, 200, "{id}: {}", r.body);
    }
    let r = request("GET", &relay.url("/v1/files"), &[], None);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{}", r.body);
    let warned = relay.stderr_text().contains("kept in memory only");
    assert!(!warned, "no ownership warning without auth");
}

#[test]
fn ownership_survives_a_restart_with_state_dir() {
    let up = ObjectsApi::start();
    let dir = TempDir::new();
    let state = json!({"dir": dir.path().to_str().unwrap()});
    let file = {
        let relay = relay_for(&up, state.clone());
        upload(&relay, KEY_A)
    };
    let relay = relay_for(&up, state);
    only_a_reaches(&relay, &file);
}

#[test]
fn two_relays_on_one_redis_share_ownership() {
    let up = ObjectsApi::start();
    let redis = RedisServer::start();
    let state = json!({"redis": redis.url()});
    let one = relay_for(&up, state.clone());
    let two = relay_for(&up, state);
    let file = upload(&one, KEY_A);
    only_a_reaches(&two, &file);
    // deleted on one replica: forgotten on the other
    assert_eq!(
        call(&two, KEY_A, "DELETE", &format!("/v1/files/{file}"), None).status,
        200
    );
    assert_eq!(
        call(&one, KEY_A, "GET", &format!("/v1/files/{file}"), None).status,
        404
    );
    // Redis down: ownership cannot be checked, so nothing is served (fails closed)
    let other = upload(&one, KEY_A);
    let mut redis = redis;
    redis.kill();
    let r = call(&one, KEY_A, "GET", &format!("/v1/files/{other}"), None);
    let msg = r.assert_error(503, "state_unavailable");
    assert!(msg.contains("owners"), "{msg}");
    // and nothing is created that could not be owned
    let before = up.requests().len();
    let auth = format!("Bearer {KEY_A}");
    let r = request(
        "POST",
        &one.url("/v1/files"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "multipart/form-data; boundary=b"),
        ],
        Some(b"--b--\r\n"),
    );
    r.assert_error(503, "state_unavailable");
    assert_eq!(
        up.requests().len(),
        before,
        "a creation reached the upstream"
    );
}
