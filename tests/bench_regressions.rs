//! Fixes the benchmark led to, guarded: the upstream connection buffers were shrunk from
//! ureq's 128 KiB each to 16 KiB (RSS with 1,000 open streams went from ~340 MB to ~115 MB), so
//! a response head must fit 16 KiB; a bigger one is refused with a 502 that says so.

use serde_json::json;

use crate::common::*;

fn chat() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

/// An upstream answer whose head carries one header of `size` bytes.
fn answer_with_header_of(size: usize) -> Upstream {
    let big = "x".repeat(size);
    Upstream::start(move |_| {
        Reply::raw(
            200,
            &[
                ("Content-Type", "application/json"),
                ("X-Big", big.as_str()),
            ],
            br#"{"ok":true}"#.to_vec(),
        )
    })
}

#[test]
fn upstream_response_head_of_12_kib_passes_through_smaller_buffers() {
    let up = answer_with_header_of(12 * 1024);
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-big").map(str::len), Some(12 * 1024));
    assert_eq!(r.json(), json!({"ok": true}));
}

#[test]
fn upstream_response_head_over_16_kib_is_a_502_naming_the_upstream() {
    let up = answer_with_header_of(20 * 1024);
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    let msg = r.assert_error(502, "upstream_error");
    assert!(msg.contains(&up.addr()), "{msg}");
    assert!(msg.contains("response headers larger than"), "{msg}");
}
