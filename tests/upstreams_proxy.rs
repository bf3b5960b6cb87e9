//! Proxies (issue #4): a per-endpoint `proxy`, HTTP(S)_PROXY / NO_PROXY from the environment,
//! and `use_proxy: false`. The proxy is a fixture on 127.0.0.1 that records its requests.

use serde_json::json;

use crate::common::*;

#[test]
fn endpoint_proxy_carries_the_request() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "via-proxy", "url": up.base_url(), "proxy": proxy.url()}]),
        json!({}),
    ));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(up.only_request().json()["model"], "m");
    let seen = proxy.seen();
    assert!(
        seen.iter().any(|l| l.contains(&up.addr())),
        "the proxy must have carried a request to {}: {seen:?}",
        up.addr()
    );
}

#[test]
fn environment_proxy_is_used_unless_use_proxy_is_false() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let env = [("HTTP_PROXY", proxy.url()), ("HTTPS_PROXY", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let relay = Relay::start_with(&config_json(&up.base_url(), json!({})), &env, &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(proxy.seen().len(), 1, "HTTP_PROXY is honoured by default");

    let relay = Relay::start_with(
        &config_json(&up.base_url(), json!({"use_proxy": false})),
        &env,
        &[],
    );
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(proxy.seen().len(), 1, "use_proxy: false ignores HTTP_PROXY");
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn no_proxy_bypasses_the_environment_proxy() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let url = proxy.url();
    let env = [("HTTP_PROXY", url.as_str()), ("NO_PROXY", "127.0.0.1")];
    let relay = Relay::start_with(&config_json(&up.base_url(), json!({})), &env, &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(proxy.seen().is_empty(), "NO_PROXY: {:?}", proxy.seen());
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn https_upstream_is_reached_through_a_connect_tunnel_from_https_proxy() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let front = TlsFront::start(up.addr());
    let env = [("HTTPS_PROXY", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cfg = config_json(&front.base_url(), json!({"ca_file": tls_fixture("ca.pem")}));
    let relay = Relay::start_with(&cfg, &env, &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(up.only_request().json()["model"], "m");
    let seen = proxy.seen();
    assert_eq!(
        seen,
        vec![format!("CONNECT {} HTTP/1.1", front.addr())],
        "TLS to the upstream goes through one CONNECT tunnel; the proxy sees nothing else"
    );
}

/// The README lists `socks5://` for an endpoint's `proxy`: ureq was built without its SOCKS
/// connector, and such an endpoint made every request a worker panic (500 `internal_error`).
#[test]
fn endpoint_socks5_proxy_carries_the_request() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let socks = proxy.url().replace("http://", "socks5://");
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "via-socks", "url": up.base_url(), "proxy": socks}]),
        json!({}),
    ));
    for i in 0..2 {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat(&format!("m{i}")));
        assert_eq!(r.status, 200, "body: {}", r.body);
    }
    assert_eq!(up.requests().len(), 2);
    let seen = proxy.seen();
    let want = format!("SOCKS5 CONNECT {}", up.addr());
    assert!(seen.contains(&want), "{want:?} not in {seen:?}");
}

/// TLS to the upstream inside a SOCKS5 tunnel, the proxy named by `ALL_PROXY`: the TCP
/// transport passes the tunnel on, rustls wraps it, and the proxy sees only the tunnels.
#[test]
fn https_upstream_is_reached_through_a_socks5_tunnel_from_all_proxy() {
    let proxy = Proxy::start();
    let up = Upstream::openai();
    let front = TlsFront::start(up.addr());
    let socks = proxy.url().replace("http://", "socks5://");
    let env = [("ALL_PROXY", socks.as_str())];
    let cfg = config_json(&front.base_url(), json!({"ca_file": tls_fixture("ca.pem")}));
    let relay = Relay::start_with(&cfg, &env, &[]);
    for i in 0..2 {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat(&format!("m{i}")));
        assert_eq!(r.status, 200, "body: {}", r.body);
    }
    assert_eq!(up.requests().len(), 2);
    // the TLS front closes its connection after each answer: a tunnel a request
    assert_eq!(
        proxy.seen(),
        vec![format!("SOCKS5 CONNECT {}", front.addr()); 2],
        "TLS to the upstream goes through the SOCKS tunnel; the proxy sees nothing else"
    );
}
