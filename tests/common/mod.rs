//! Shared harness for the integration tests: a relay process wrapper
//! ([`relay`]), a raw-TCP upstream fixture with exact timing control
//! ([`upstream`], default OpenAI-like answers in [`openai`], a tool-using chat model in
//! [`chat_model`]) and HTTP/SSE
//! client helpers ([`client`]), an HTTP/CONNECT proxy fixture ([`proxy`]) and a TLS front for
//! fixtures ([`tls`]), a real Redis server ([`redis`]), and README's translation table as test
//! data ([`table`]).
//!
//! Every test owns its own fixture and relay on port 0, so tests can run in
//! parallel threads.

pub mod admin;
pub mod anthropic;
pub mod cache;
pub mod chat_model;
pub mod client;
pub mod objects;
pub mod openai;
pub mod process;
pub mod proxy;
pub mod python;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod responses;
pub mod sha256;
pub mod table;
pub mod table_data;
pub mod tls;
pub mod upstream;
pub mod upstreams;

pub use admin::*;
pub use anthropic::*;
pub use cache::*;
pub use client::*;
pub use objects::*;
pub use openai::*;
pub use process::*;
pub use proxy::*;
pub use python::*;
pub use raw::*;
pub use redis::*;
pub use relay::*;
pub use responses::*;
pub use sha256::*;
pub use table::*;
pub use tls::*;
pub use upstream::*;
pub use upstreams::*;

/// Environment variables that would make an HTTP client (the relay's ureq,
/// the test's ureq, the Python SDK's httpx) route loopback traffic through a
/// proxy. Child processes get them removed.
pub const PROXY_ENV_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// The first header named `name` (case-insensitive) among lowercased `(name, value)` pairs.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// A one-message chat request for `model`.
pub fn chat_body(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The OpenAI-like fixture and a relay forwarding to it, with `extra` config keys.
pub fn setup(extra: serde_json::Value) -> (Upstream, Relay) {
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), extra));
    (up, relay)
}

/// Waits for `done` to hold, checking every 20 ms; fails naming `what` after `timeout` (a hang
/// guard: pass one far beyond what a busy machine needs).
pub fn wait_until(timeout: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The value of `/metrics` sample `series` (name and labels, exactly as printed).
pub fn metric(relay: &Relay, series: &str) -> Option<f64> {
    let text = client::get(&relay.url("/metrics")).body;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
