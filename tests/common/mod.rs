//! Shared harness for the integration tests: a relay process wrapper
//! ([`relay`]), a raw-TCP upstream fixture with exact timing control
//! ([`upstream`], default OpenAI-like answers in [`openai`]) and HTTP/SSE
//! client helpers ([`client`]), an HTTP/CONNECT proxy fixture ([`proxy`]) and a TLS front for
//! fixtures ([`tls`]).
//!
//! Every test owns its own fixture and relay on port 0, so tests can run in
//! parallel threads.

pub mod cache;
pub mod client;
pub mod openai;
pub mod proxy;
pub mod raw;
pub mod relay;
pub mod sha256;
pub mod tls;
pub mod upstream;
pub mod upstreams;

pub use cache::*;
pub use client::*;
pub use openai::*;
pub use proxy::*;
pub use raw::*;
pub use relay::*;
pub use sha256::*;
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
