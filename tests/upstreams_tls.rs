//! HTTPS upstreams (issue #4): certificates are verified against the built-in roots, and
//! `ca_file` (top level or per endpoint) trusts a private CA instead.

use serde_json::json;

use crate::common::*;

#[test]
fn https_upstream_with_private_ca_file_works() {
    let up = Upstream::openai();
    let front = TlsFront::start(up.addr());
    let ca = tls_fixture("ca.pem");
    let relay = Relay::start(&config_json(&front.base_url(), json!({"ca_file": ca})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(up.only_request().json()["model"], "m");
}

#[test]
fn https_upstream_with_unknown_ca_is_refused() {
    let up = Upstream::openai();
    let front = TlsFront::start(up.addr());
    // Built-in roots only: the test CA is unknown, so the certificate must be rejected.
    let relay = Relay::start(&config_json(&front.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    let msg = r.assert_error(502, "upstream_unreachable");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    assert!(
        up.requests().is_empty(),
        "nothing may pass an unverified connection"
    );
    // A per-endpoint ca_file applies to that endpoint only.
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "private", "url": front.base_url(), "ca_file": tls_fixture("ca.pem")}]),
        json!({}),
    ));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
}

#[test]
fn ca_file_that_is_not_pem_is_a_config_error() {
    let dir = TempDir::new();
    let bogus = dir.write("ca.pem", "not a certificate");
    let cfg = dir.write(
        "c.jsonc",
        &config_json("https://127.0.0.1:1/v1", json!({"ca_file": bogus})),
    );
    let out = run_relay(&["--config", cfg.to_str().unwrap(), "--check"], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("ca_file"), "{}", out.stderr);
}
