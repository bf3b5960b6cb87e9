//! Upstreams (issue #4): weighted choice, standbys, model globs, the per-endpoint model
//! override and headers, and provider presets.

use serde_json::json;

use crate::common::*;

#[test]
fn weights_split_traffic_and_standby_gets_none() {
    let (a, b, standby) = (Upstream::openai(), Upstream::openai(), Upstream::openai());
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "a", "url": a.base_url(), "weight": 1},
            {"name": "b", "url": b.base_url(), "weight": 3},
            {"name": "standby", "url": standby.base_url(), "weight": 0},
        ]),
        json!({}),
    ));
    let n = 300;
    for _ in 0..n {
        let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
        assert_eq!(r.status, 200, "body: {}", r.body);
    }
    let (na, nb) = (a.requests().len(), b.requests().len());
    assert_eq!(na + nb, n, "every request goes to exactly one endpoint");
    assert!(
        standby.requests().is_empty(),
        "weight 0 is a standby while weighted endpoints are healthy"
    );
    // Expected 75 / 225; a binomial spread of ±4.5 standard deviations is 75 ± 34.
    assert!(
        (41..=109).contains(&na),
        "weight 1 of 4 got {na} of {n} requests"
    );
}

#[test]
fn standby_serves_when_weighted_endpoint_is_down() {
    let standby = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "main", "url": closed_port_url(), "weight": 5},
            {"name": "standby", "url": standby.base_url(), "weight": 0},
        ]),
        json!({}),
    ));
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("m"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(standby.requests().len(), 1);
}

#[test]
fn model_globs_route_to_the_right_endpoint() {
    let (ds, gpt) = (Upstream::openai(), Upstream::openai());
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "deepseek", "url": ds.base_url(), "models": ["deepseek-*"]},
            {"name": "openai", "url": gpt.base_url(), "models": ["gpt-*", "o3"]},
        ]),
        json!({}),
    ));
    for (model, want_ds) in [
        ("deepseek-chat", true),
        ("gpt-4o-mini", false),
        ("deepseek-reasoner", true),
        ("o3", false),
    ] {
        let before = (ds.requests().len(), gpt.requests().len());
        let r = post_json(&relay.url("/v1/chat/completions"), &chat(model));
        assert_eq!(r.status, 200, "{model}: {}", r.body);
        let after = (ds.requests().len(), gpt.requests().len());
        let expect = if want_ds {
            (before.0 + 1, before.1)
        } else {
            (before.0, before.1 + 1)
        };
        assert_eq!(after, expect, "{model} went to the wrong endpoint");
    }
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("claude-3"));
    let msg = r.assert_error(404, "model_not_found");
    assert!(msg.contains("claude-3"), "{msg}");
    assert_eq!(ds.requests().len() + gpt.requests().len(), 4);
}

#[test]
fn endpoint_model_overrides_request_model_and_headers_are_added() {
    let up = Upstream::openai();
    let relay = Relay::start(&upstreams_config(
        json!([{
            "name": "local",
            "url": up.base_url(),
            "model": "qwen2.5:7b",
            "api_key": "sk-endpoint",
            "headers": {"X-Tenant": "team-a", "HTTP-Referer": "https://example.org"},
        }]),
        json!({}),
    ));
    let r = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat("gpt-4o"),
        &[("X-Tenant", "from-client")],
    );
    assert_eq!(r.status, 200, "body: {}", r.body);
    let req = up.only_request();
    assert_eq!(req.json()["model"], "qwen2.5:7b");
    assert_eq!(req.json()["messages"], chat("x")["messages"]);
    assert_eq!(req.header("x-tenant"), Some("team-a"));
    assert_eq!(req.header("http-referer"), Some("https://example.org"));
    assert_eq!(req.header("authorization"), Some("Bearer sk-endpoint"));
    let tenants = req.headers.iter().filter(|(k, _)| k == "x-tenant").count();
    assert_eq!(tenants, 1, "the endpoint's header replaces the client's");
}

#[test]
fn provider_preset_reads_key_from_its_environment_variable() {
    let up = Upstream::openai();
    let cfg = upstreams_config(
        json!([{"provider": "openai", "url": up.base_url()}]),
        json!({}),
    );
    let relay = Relay::start_with(&cfg, &[("OPENAI_API_KEY", "sk-from-env")], &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat("gpt-4o"));
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(
        up.only_request().header("authorization"),
        Some("Bearer sk-from-env")
    );
}

#[test]
fn provider_presets_fill_urls_and_missing_keys_are_config_errors() {
    let dir = TempDir::new();
    let cfg = upstreams_config(
        json!([
            {"provider": "deepseek"},
            {"provider": "gemini"},
            {"provider": "ollama", "weight": 0},
            {"provider": "anthropic"},
        ]),
        json!({}),
    );
    let path = dir.write("c.jsonc", &cfg);
    let path = path.to_str().unwrap();
    let env = [
        ("DEEPSEEK_API_KEY", "sk-ds"),
        ("GEMINI_API_KEY", "g-key"),
        ("ANTHROPIC_API_KEY", "sk-ant-x"),
    ];
    let out = run_relay(&["--config", path, "--check"], &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for want in [
        "deepseek https://api.deepseek.com/v1",
        "gemini https://generativelanguage.googleapis.com/v1beta/openai",
        "ollama http://127.0.0.1:11434/v1 weight 0 models [*] api chat thinking reasoning_effort",
        "deepseek https://api.deepseek.com/v1 weight 1 models [*] api chat thinking drop +reasoning_content",
        "anthropic https://api.anthropic.com/v1 weight 1 models [*] api anthropic (key hidden)",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?} in:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("sk-ds"), "keys must not be printed");
    assert!(!out.stdout.contains("sk-ant-x"), "keys must not be printed");

    let out = run_relay(
        &["--config", path, "--check"],
        &[
            ("DEEPSEEK_API_KEY", ""),
            ("GEMINI_API_KEY", "g"),
            ("ANTHROPIC_API_KEY", "a"),
        ],
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("DEEPSEEK_API_KEY") && out.stderr.contains("upstreams[0]"),
        "{}",
        out.stderr
    );
}

#[test]
fn upstreams_config_mistakes_are_refused_with_a_reason() {
    let dir = TempDir::new();
    let cases = [
        (
            json!({"upstreams": [{"provider": "acme"}]}),
            "unknown provider",
        ),
        (json!({"upstreams": [{"name": "x"}]}), "needs a `url`"),
        (json!({"upstreams": []}), "`upstreams` is empty"),
        (
            json!({"upstream": "http://127.0.0.1:1/v1", "upstreams": [{"url": "http://127.0.0.1:2/v1"}]}),
            "not both",
        ),
        (
            json!({"upstreams": [{"url": "http://127.0.0.1:2/v1"}, {"url": "http://127.0.0.1:2/v1"}]}),
            "used twice",
        ),
        (
            json!({"upstreams": [{"url": "http://h/v1", "wieght": 2}]}),
            "wieght",
        ),
        (
            json!({"upstreams": [{"url": "http://h/v1", "proxy": "::"}]}),
            "proxy",
        ),
        (
            json!({"context_trim": {"max_context_tokens": 0}}),
            "max_context_tokens",
        ),
    ];
    for (cfg, want) in cases {
        let path = dir.write("c.jsonc", &serde_json::to_string_pretty(&cfg).unwrap());
        let out = run_relay(&["--config", path.to_str().unwrap(), "--check"], &[]);
        assert_eq!(out.code, Some(1), "{cfg} must be refused");
        assert!(
            out.stderr.contains(want),
            "{cfg}: {want:?} not in {}",
            out.stderr
        );
    }
}

#[test]
fn a_pooled_upstream_connection_is_reused_only_while_it_is_clean_and_open() {
    for after in [AfterAnswer::Keep, AfterAnswer::Close, AfterAnswer::Garbage] {
        let (closed, closes) = std::sync::mpsc::channel();
        let (url, accepted) = raw_upstream(after, closed);
        let relay = Relay::start(&config_json(&url, json!({"cache": {"enabled": false}})));
        for i in 0..3 {
            let ask =
                json!({"model": "m", "messages": [{"role": "user", "content": format!("q{i}")}]});
            let r = post_json(&relay.url("/v1/chat/completions"), &ask);
            assert_eq!(r.status, 200, "answer {i}: {}", r.body);
            let text = r.json()["choices"][0]["message"]["content"].clone();
            assert_eq!(text, json!(format!("echo q{i}")), "answer {i}");
            if after == AfterAnswer::Close {
                // the upstream's close is in before the next request looks at the pool
                closes
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .unwrap();
            }
        }
        let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let expected = if after == AfterAnswer::Keep { 1 } else { 3 };
        assert_eq!(connections, expected, "upstream connections");
    }
}

#[test]
fn an_idle_upstream_connection_is_kept_for_its_endpoints_keepalive_ms() {
    let ask = |relay: &Relay, i: u32| {
        let ask = json!({"model": "m", "messages": [{"role": "user", "content": format!("q{i}")}]});
        let r = post_json(&relay.url("/v1/chat/completions"), &ask);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    // kept 5 s: reused after a pause of 1.2 s; kept 0.5 s: a new connection after it. An
    // endpoint's own `keepalive_ms` decides over `upstream_keepalive_ms`, either way.
    let cases = [
        (5_000, None, 1),
        (500, None, 2),
        (5_000, Some(500), 2),
        (500, Some(5_000), 1),
    ];
    for (keepalive_ms, own, expected) in cases {
        let (closed, _) = std::sync::mpsc::channel();
        let (url, accepted) = raw_upstream(AfterAnswer::Keep, closed);
        let mut endpoint = json!({"url": url});
        if let Some(ms) = own {
            endpoint["keepalive_ms"] = json!(ms);
        }
        let relay = Relay::start(
            &json!({
                "listen": "127.0.0.1:0",
                "upstreams": [endpoint],
                "cache": {"enabled": false},
                "upstream_keepalive_ms": keepalive_ms,
            })
            .to_string(),
        );
        ask(&relay, 0);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        ask(&relay, 1);
        let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            connections, expected,
            "upstream_keepalive_ms {keepalive_ms}, the endpoint's keepalive_ms {own:?}"
        );
    }
}
