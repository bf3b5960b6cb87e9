//! Pass-through calls billed by the tokens their answer reports (image generation,
//! transcription, Responses' compaction) count those tokens and their cost for the key, its
//! budget and `/metrics`, as the pipeline's routes do: a whole answer (with `Content-Length`
//! or chunked) and a streamed one, priced as the model the request named (in a JSON body
//! streamed upstream, a JSON body read for an allow-list, or a multipart upload's `model`
//! part), and charged before the answer's end reaches the client. Routes that report no bill
//! of their own count the request only. The official `openai` Python SDK makes the same calls
//! (`tests/e2e/passthrough_usage_sdk.py`: its own multipart upload, its own stream parser).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "sk-passthrough-usage-0000001";
const ADMIN: &str = "sk-passthrough-admin-0000002";

/// A base64 image as big as a real one's first megabyte, with text that looks like JSON.
fn image() -> String {
    let mut b64 = "iVBORw0KGgo".repeat(100_000);
    b64.push_str("\\\"usage\\\": {\\\"input_tokens\\\": 999999}");
    b64
}

/// An OpenAI upstream with the billed routes' answers (usage as the API reports it).
fn upstream() -> Upstream {
    let open = Arc::new(AtomicBool::new(true));
    Upstream::start(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let tick = Duration::from_millis(1);
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/images/generations") if body["stream"] == json!(true) => {
                let partial = json!({"type": "image_generation.partial_image",
                    "b64_json": "iVBORw0KGgo".repeat(20_000), "partial_image_index": 0});
                let done = json!({"type": "image_generation.completed", "b64_json": image(),
                    "usage": {"input_tokens": 20, "output_tokens": 1056, "total_tokens": 1076,
                              "input_tokens_details": {"text_tokens": 20, "image_tokens": 0}}});
                Reply::sse(vec![(tick, typed(&partial)), (tick, typed(&done))])
            }
            ("POST", "/v1/images/generations") => Reply::json(
                200,
                json!({"created": 1_700_000_000, "data": [{"b64_json": image()}],
                       "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
                                 "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}}),
            ),
            // chunked, its usage in the last chunk
            ("POST", "/v1/audio/transcriptions") => Reply::stall(
                Reply::json(
                    200,
                    json!({"text": "Hello there.", "usage": {"type": "tokens", "input_tokens": 14,
                        "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
                        "output_tokens": 45, "total_tokens": 59}}),
                ),
                10,
                true,
                &open,
            ),
            ("POST", "/v1/responses/compact") => Reply::json(
                200,
                json!({"id": "cmp_1", "object": "response.compaction", "output": [],
                       "usage": {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 600},
                                 "output_tokens": 80, "output_tokens_details": {"reasoning_tokens": 20},
                                 "total_tokens": 980}}),
            ),
            // a `usage` in an answer that is no bill of this call's own
            ("POST", "/v1/files") => Reply::json(
                200,
                json!({"id": "file-1", "object": "file", "usage": {"input_tokens": 7777}}),
            ),
            _ => Reply::json(404, json!({"error": {"message": "fixture: no route"}})),
        }
    })
}

/// `[prompt, cache_read, completion, reasoning, cost]` of `u` (a `KeyUsage` of the admin API).
fn figures(u: &Value) -> [u64; 5] {
    [
        "prompt_tokens",
        "cache_read_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cost_micro_usd",
    ]
    .map(|f| u[f].as_u64().unwrap_or_else(|| panic!("no `{f}` in {u}")))
}

/// `POST url` of a multipart upload (`Bnd`) with `auth`.
fn post_upload(url: &str, auth: &str, body: &[u8]) -> Resp {
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "multipart/form-data; boundary=Bnd"),
    ];
    request("POST", url, &headers, Some(body))
}

fn upload(model: &str) -> Vec<u8> {
    let mut body = format!(
        "--Bnd\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--Bnd\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..64 * 1024).map(|i| (i % 251) as u8));
    body.extend_from_slice(b"\r\n--Bnd--\r\n");
    body
}

#[test]
fn billed_pass_through_calls_count_their_tokens_cost_and_budget() {
    let up = upstream();
    // the four calls below are 4,210 + 1,076 + 59 + 980 tokens: the budget is used up by them
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}],
        "auth": {"keys": [{"key": KEY, "budget": {"tokens_per_day": 6_325}}], "admin_key": ADMIN},
        "prices": [
            {"match_model": "gpt-image-1", "input_per_million": 5, "output_per_million": 40},
            {"match_model": "gpt-4o-transcribe", "input_per_million": 2.5, "output_per_million": 10},
            {"match_model": "gpt-5-codex", "input_per_million": 1.25, "output_per_million": 10,
             "cache_read_per_million": 0.125},
        ],
    });
    let relay = Relay::start(&cfg.to_string());
    let keys = admin_call(&relay, ADMIN, "GET", "/admin/keys", None).json();
    let id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {KEY}");
    let usage_now = || key_usage(&relay, ADMIN, &id)["today"].clone();
    let post = |path: &str, body: &Value| {
        let r = post_json_with(&relay.url(path), body, &[("Authorization", &auth)]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r
    };

    // a whole JSON answer of a megabyte (Content-Length), its model in a body streamed upstream
    let r = post(
        "/v1/images/generations",
        &json!({"prompt": "a lighthouse", "model": "gpt-image-1", "size": "1024x1024"}),
    );
    assert_eq!(
        r.json()["data"][0]["b64_json"],
        image(),
        "the answer passes unchanged"
    );
    // 50 × 5 + 4,160 × 40 micro-dollars
    let images = 250 + 166_400;
    assert_eq!(figures(&usage_now()), [50, 0, 4160, 0, images]);

    // streamed: the usage of its completed event
    let r = post(
        "/v1/images/generations",
        &json!({"prompt": "a lighthouse", "model": "gpt-image-1", "stream": true}),
    );
    assert!(r.body.contains("image_generation.completed"), "{}", r.body);
    let streamed = 20 * 5 + 1056 * 40;
    assert_eq!(figures(&usage_now()), [70, 0, 5216, 0, images + streamed]);

    // a multipart upload (its model in a part), a chunked answer
    let r = post_upload(
        &relay.url("/v1/audio/transcriptions"),
        &auth,
        &upload("gpt-4o-transcribe"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["text"], "Hello there.");
    let heard = 35 + 450;
    assert_eq!(
        figures(&usage_now()),
        [84, 0, 5261, 0, images + streamed + heard]
    );

    // a usage in an answer that is not the call's own bill counts nothing
    let r = post_upload(&relay.url("/v1/files"), &auth, &upload("x"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(figures(&usage_now())[..4], [84, 0, 5261, 0]);

    // Codex's compaction: cached and reasoning tokens apart (a key's call, not an object)
    post(
        "/v1/responses/compact",
        &json!({"model": "gpt-5-codex", "input": [{"role": "user", "content": "hi"}]}),
    );
    let compact = 300 * 5 / 4 + 75 + 800;
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(
        figures(&u["today"]),
        [984, 600, 5341, 20, images + streamed + heard + compact],
        "{u}"
    );
    assert_eq!(u["today"]["requests"], 5, "{u}");

    assert_eq!(u["budget_exceeded"], true, "{u}");
    let r = post_json_with(
        &relay.url("/v1/images/generations"),
        &json!({"prompt": "one more", "model": "gpt-image-1"}),
        &[("Authorization", &auth)],
    );
    assert_eq!(
        r.status, 429,
        "the budget holds on pass-through routes: {}",
        r.body
    );
    assert_eq!(up.requests().len(), 5);
    let series = "llm_relay_tokens_total{kind=\"output\",served=\"upstream\"}";
    assert_eq!(metric(&relay, series), Some(5341.0));
}

#[test]
fn a_key_with_an_allow_list_is_priced_by_the_model_it_was_let_call() {
    let up = upstream();
    let dir = TempDir::new();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url()}],
        "auth": {"admin_key": ADMIN, "keys_file": dir.path().join("keys.json")},
        "prices": [
            {"match_model": "gpt-image-*", "input_per_million": 5, "output_per_million": 40},
            {"match_model": "gpt-4o-transcribe", "input_per_million": 2.5, "output_per_million": 10},
        ],
    });
    let relay = Relay::start(&cfg.to_string());
    let (id, key) = new_key(
        &relay,
        ADMIN,
        json!({"name": "images", "models": ["gpt-image-*"],
               "routes": ["POST /v1/images/*", "POST /v1/audio/*"]}),
    );
    let auth = format!("Bearer {key}");
    // a JSON body read whole to check its model, then sent as read
    let r = post_json_with(
        &relay.url("/v1/images/generations"),
        &json!({"model": "gpt-image-1", "prompt": "a fox"}),
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.requests()[0].json()["prompt"], "a fox");
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(figures(&u["total"]), [50, 0, 4160, 0, 250 + 166_400], "{u}");
    // an upload naming a model outside the list is refused, and no tokens count
    let r = post_upload(
        &relay.url("/v1/audio/transcriptions"),
        &auth,
        &upload("gpt-4o-transcribe"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let u = key_usage(&relay, ADMIN, &id);
    assert_eq!(figures(&u["total"]), [50, 0, 4160, 0, 250 + 166_400], "{u}");
}

#[test]
fn the_openai_sdk_makes_billed_calls_that_count() {
    require_python_module("openai");
    let up = upstream();
    let cfg = json!({
        "listen": "127.0.0.1:0",
        "upstreams": [{"name": "openai", "url": up.base_url(), "api": "responses"}],
        "auth": {"keys": [KEY], "admin_key": ADMIN},
        "prices": [
            {"match_model": "gpt-image-1", "input_per_million": 5, "output_per_million": 40},
            {"match_model": "gpt-4o-transcribe", "input_per_million": 2.5, "output_per_million": 10},
        ],
    });
    let relay = Relay::start(&cfg.to_string());
    let out = run_e2e_script(
        "passthrough_usage_sdk.py",
        &[&relay.base_url(), KEY],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success() && show(&out).contains("all pass-through SDK checks passed"),
        "{}",
        show(&out)
    );
    // the SDK's own multipart upload named its model: the transcription is priced too
    let upload = up
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/audio/transcriptions")
        .expect("the transcription reached the upstream");
    assert!(
        String::from_utf8_lossy(&upload.body).contains("gpt-4o-transcribe"),
        "the upload went up as the SDK sent it"
    );
    let keys = admin_call(&relay, ADMIN, "GET", "/admin/keys", None).json();
    let id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let u = key_usage(&relay, ADMIN, &id);
    let cost = (250 + 166_400) + (100 + 42_240) + (35 + 450);
    assert_eq!(
        figures(&u["total"]),
        [50 + 20 + 14, 0, 4160 + 1056 + 45, 0, cost],
        "{u}"
    );
}
