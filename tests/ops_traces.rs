//! OpenTelemetry traces (`telemetry`): what the relay sends a collector over OTLP/HTTP JSON,
//! checked against the OTLP schema by the official `opentelemetry-proto` package
//! (`tests/e2e/otlp_check.py`, strict `json_format.Parse` into `ExportTraceServiceRequest`):
//! the GenAI attributes, parent/child links, `traceparent` both ways, content only when asked
//! (and redacted), and that a collector that hangs costs requests nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A collector that accepts every export.
fn collector() -> Upstream {
    Upstream::start(|_| Reply::json(200, json!({})))
}

/// A `telemetry` section exporting to `collector` quickly, with the keys of `extra`.
fn telemetry(collector: &Upstream, extra: Value) -> Value {
    let mut t = json!({
        "otlp_endpoint": format!("http://{}", collector.addr()),
        "export_delay_ms": 20,
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            t[k] = v;
        }
    }
    t
}

/// A relay in front of `up` exporting to `collector`, with the `telemetry` keys of `extra`.
fn traced_relay(up: &Upstream, collector: &Upstream, extra: Value) -> Relay {
    Relay::start(&config_json(
        &up.base_url(),
        json!({"telemetry": telemetry(collector, extra)}),
    ))
}

/// Spans in the export bodies the collector received so far (read as plain JSON: for
/// waiting; [`exported`] is the schema-checked read).
fn raw_count(collector: &Upstream) -> usize {
    collector
        .requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|v| {
            let all = v["resourceSpans"].as_array().cloned().unwrap_or_default();
            all.iter()
                .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
                .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        })
        .sum()
}

/// Waits until the collector has at least `n` spans, then returns every span, each export
/// body checked against the OTLP schema (`otlp_check.py`), as that script prints them.
fn exported(collector: &Upstream, n: usize) -> Vec<Value> {
    require_python_module("opentelemetry.proto");
    wait_until(HANG_GUARD, &format!("{n} spans at the collector"), || {
        raw_count(collector) >= n
    });
    let dir = TempDir::new();
    let mut files = Vec::new();
    for (i, r) in collector.requests().iter().enumerate() {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/traces"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = String::from_utf8(r.body.clone()).expect("an export body is UTF-8");
        files.push(dir.write(&format!("{i}.json"), &body).display().to_string());
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = run_e2e_script("otlp_check.py", &args, HANG_GUARD);
    assert!(
        out.status.success(),
        "otlp_check.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("otlp_check.py prints JSON")
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn of_kind(spans: &[Value], kind: i64) -> Vec<Value> {
    let mut out: Vec<Value> = spans
        .iter()
        .filter(|s| s["kind"] == kind)
        .cloned()
        .collect();
    out.sort_by_key(|s| s["start"].as_u64());
    out
}

#[test]
fn a_request_is_a_server_span_with_genai_attributes_and_a_client_span_per_attempt() {
    let collector = collector();
    let failing = Upstream::start(|_| Reply::json(503, json!({"error": {"message": "busy"}})));
    let answering = Upstream::start(|_| {
        Reply::json(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "model": "served-model-v2",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                          "prompt_tokens_details": {"cached_tokens": 6}},
            }),
        )
    });
    let relay = Relay::start(&upstreams_config(
        json!([
            {"name": "first", "url": failing.base_url(), "weight": 1},
            {"name": "second", "url": answering.base_url(), "weight": 0},
        ]),
        json!({"telemetry": telemetry(&collector, json!({}))}),
    ));
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let body = json!({"model": "gpt-test", "max_tokens": 20, "temperature": 0.25,
                      "messages": [{"role": "user", "content": "a secret prompt"}]});
    let resp = post_json_with(
        &relay.url("/v1/chat/completions"),
        &body,
        &[("traceparent", &traceparent)],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);

    let spans = exported(&collector, 3);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = of_kind(&spans, SERVER).pop().expect("a SERVER span");
    let clients = of_kind(&spans, CLIENT);
    assert_eq!(clients.len(), 2, "{spans:#?}");

    // the client's traceparent is the relay span's parent
    assert_eq!(server["trace_id"], CLIENT_TRACE);
    assert_eq!(server["parent"], CLIENT_SPAN);
    assert_eq!(server["name"], "chat gpt-test");
    assert_eq!(server["service"], "llm-relay");
    assert_eq!(server["status"], 0, "a 200 is not an error");
    for (key, value) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.request.model", json!("gpt-test")),
        ("gen_ai.response.model", json!("served-model-v2")),
        ("gen_ai.response.id", json!("chatcmpl-1")),
        ("gen_ai.response.finish_reasons", json!(["length"])),
        ("gen_ai.usage.input_tokens", json!(11)),
        ("gen_ai.usage.output_tokens", json!(7)),
        ("gen_ai.usage.cache_read.input_tokens", json!(6)),
        ("gen_ai.request.max_tokens", json!(20)),
        ("gen_ai.request.temperature", json!(0.25)),
        ("gen_ai.provider.name", json!("_OTHER")),
        ("http.request.method", json!("POST")),
        ("http.response.status_code", json!(200)),
        ("url.path", json!("/v1/chat/completions")),
        ("llm_relay.upstream.endpoint", json!("second")),
        ("llm_relay.upstream.attempts", json!(2)),
    ] {
        assert_eq!(attr(&server, key), &value, "{key} in {server:#}");
    }
    // no content unless asked, no cache outcome without a cache, no TTFT without a stream
    for absent in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "llm_relay.cache",
        "llm_relay.time_to_first_token_ms",
    ] {
        assert!(attr(&server, absent).is_null(), "{absent} in {server:#}");
    }
    assert!(!serde_json::to_string(&spans)
        .unwrap()
        .contains("secret prompt"));

    // one CLIENT child per attempt, in order: the 503 (an error), then the answer
    let (first, second) = (&clients[0], &clients[1]);
    for c in &clients {
        assert_eq!(c["trace_id"], CLIENT_TRACE);
        assert_eq!(c["parent"], server["span_id"]);
        assert_eq!(c["name"], "chat gpt-test");
        assert_eq!(attr(c, "gen_ai.operation.name"), "chat");
        assert_eq!(attr(c, "server.address"), "127.0.0.1");
        assert!(c["start"].as_u64() >= server["start"].as_u64());
        assert!(c["end"].as_u64() <= server["end"].as_u64());
    }
    assert_eq!(attr(first, "llm_relay.upstream.endpoint"), "first");
    assert_eq!(attr(first, "http.response.status_code"), 503);
    assert_eq!(attr(first, "error.type"), "503");
    assert_eq!(first["status"], 2, "a failed attempt is an error");
    assert_eq!(attr(second, "llm_relay.upstream.endpoint"), "second");
    assert_eq!(attr(second, "http.response.status_code"), 200);
    assert_eq!(attr(second, "gen_ai.response.model"), "served-model-v2");
    assert_eq!(attr(second, "gen_ai.usage.output_tokens"), 7);
    let port: i64 = answering
        .addr()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(attr(second, "server.port"), port);
    assert_eq!(second["status"], 0);

    // each upstream saw the relay's span of its own attempt as its parent
    for (up, span) in [(&failing, first), (&answering, second)] {
        let sent = up.only_request();
        let expected = format!("00-{CLIENT_TRACE}-{}-01", span["span_id"].as_str().unwrap());
        assert_eq!(sent.header("traceparent"), Some(expected.as_str()));
    }
}

#[test]
fn content_is_recorded_only_when_asked_and_then_redacted() {
    let collector = collector();
    let up = Upstream::openai();
    let relay = traced_relay(&up, &collector, json!({"capture_content": true}));
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there, my key is sk-live-abc123", "api_key": "plain"},
    ]});
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &body).status,
        200
    );
    let spans = exported(&collector, 2);
    let server = of_kind(&spans, SERVER).pop().unwrap();
    let input = attr(&server, "gen_ai.input.messages").as_str().unwrap();
    let messages: Value = serde_json::from_str(input).expect("input messages are JSON");
    assert_eq!(messages[0]["content"], "be brief");
    assert_eq!(messages[1]["content"], "hello there, my key is [redacted]");
    assert_eq!(messages[1]["api_key"], "[redacted]");
    let output = attr(&server, "gen_ai.output.messages").as_str().unwrap();
    let choices: Value = serde_json::from_str(output).expect("output messages are JSON");
    assert_eq!(choices[0]["message"]["content"], FIXTURE_TEXT);
    let all = serde_json::to_string(&spans).unwrap();
    assert!(
        !all.contains("sk-live-abc123") && !all.contains("plain"),
        "{all}"
    );
}

#[test]
fn a_stream_has_its_time_to_first_token_and_a_hit_has_no_upstream_span() {
    let collector = collector();
    let up = Upstream::openai();
    let dir = TempDir::new();
    let relay = Relay::start(&cache_config(
        &up.base_url(),
        dir.path(),
        json!({}),
        json!({"telemetry": telemetry(&collector, json!({}))}),
    ));
    let body = json!({"model": "m", "stream": true,
                      "messages": [{"role": "user", "content": "stream me"}]});
    let first = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(first.status, 200);
    let spans = exported(&collector, 2);
    let miss = of_kind(&spans, SERVER).pop().unwrap();
    let call = of_kind(&spans, CLIENT).pop().unwrap();
    // no traceparent from the client: the relay's span is a root, and the upstream its child
    assert_eq!(miss["parent"], "");
    assert_eq!(call["parent"], miss["span_id"]);
    let sent = up.only_request();
    let expected = format!(
        "00-{}-{}-01",
        miss["trace_id"].as_str().unwrap(),
        call["span_id"].as_str().unwrap()
    );
    assert_eq!(sent.header("traceparent"), Some(expected.as_str()));
    assert_eq!(attr(&miss, "llm_relay.cache"), "miss");
    assert_eq!(attr(&miss, "llm_relay.stream"), true);
    assert_eq!(
        attr(&miss, "gen_ai.response.finish_reasons"),
        &json!(["stop"])
    );
    assert_eq!(attr(&miss, "gen_ai.usage.input_tokens"), 5);
    assert_eq!(attr(&miss, "gen_ai.usage.output_tokens"), 4);
    let ttft = attr(&miss, "llm_relay.time_to_first_token_ms")
        .as_f64()
        .unwrap();
    let total_ms = (miss["end"].as_u64().unwrap() - miss["start"].as_u64().unwrap()) as f64 / 1e6;
    assert!(
        ttft > 0.0 && ttft <= total_ms,
        "ttft {ttft} ms of {total_ms} ms"
    );

    // the same request again is a hit: a SERVER span without upstream attempts
    let again = stream_events(relay.addr(), "/v1/chat/completions", &body);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    let spans = exported(&collector, 3);
    let hit = of_kind(&spans, SERVER)
        .into_iter()
        .find(|s| s["span_id"] != miss["span_id"])
        .unwrap();
    assert_ne!(hit["trace_id"], miss["trace_id"]);
    assert_eq!(attr(&hit, "llm_relay.cache"), "hit");
    assert_eq!(attr(&hit, "llm_relay.upstream.attempts"), 0);
    assert_eq!(attr(&hit, "gen_ai.response.model"), "m");
    // a hit spends no tokens: what it saved is reported apart
    assert!(attr(&hit, "gen_ai.usage.input_tokens").is_null(), "{hit:#}");
    assert_eq!(attr(&hit, "llm_relay.cache.saved.input_tokens"), 5);
    assert_eq!(attr(&hit, "llm_relay.cache.saved.output_tokens"), 4);
    assert!(spans
        .iter()
        .all(|s| s["kind"] == SERVER || s["trace_id"] == miss["trace_id"]));
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn an_unsampled_client_trace_is_propagated_but_not_exported() {
    let collector = collector();
    let up = Upstream::openai();
    let relay = traced_relay(&up, &collector, json!({}));
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let url = relay.url("/v1/chat/completions");
    let resp = post_json_with(&url, &chat_body("m"), &[("traceparent", &unsampled)]);
    assert_eq!(resp.status, 200);
    let sent = up.only_request();
    let tp = sent.header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{CLIENT_TRACE}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(
        !tp.contains(CLIENT_SPAN),
        "the upstream's parent is the relay's span: {tp}"
    );

    // a sampled request after it: once its spans are in, the unsampled one's would be too
    let sampled = "00-11111111111111111111111111111111-2222222222222222-01";
    let resp = post_json_with(&url, &chat_body("m"), &[("traceparent", sampled)]);
    assert_eq!(resp.status, 200);
    let spans = exported(&collector, 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(spans
        .iter()
        .all(|s| s["trace_id"] == "11111111111111111111111111111111"));
}

#[test]
fn traces_are_off_by_default_and_traceparent_then_passes_unchanged() {
    let (up, relay) = setup(json!({}));
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let resp = post_json_with(
        &relay.url("/v1/chat/completions"),
        &chat_body("m"),
        &[("traceparent", &traceparent)],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.only_request().header("traceparent"),
        Some(traceparent.as_str())
    );
    let metrics = get(&relay.url("/metrics")).body;
    assert!(!metrics.contains("llm_relay_trace_"), "{metrics}");
}

#[test]
fn a_hung_collector_drops_and_counts_spans_and_requests_never_wait_for_it() {
    // a collector that takes every export and answers none while the test runs
    let gate = Arc::new(AtomicBool::new(false));
    let held = Arc::clone(&gate);
    let collector = Upstream::start(move |_| Reply::hold(&held, Reply::json(200, json!({}))));
    let up = Upstream::openai();
    let relay = traced_relay(
        &up,
        &collector,
        json!({
            "max_queue_spans": 4, "max_batch_spans": 2, "export_timeout_ms": 600_000,
        }),
    );
    let requests = 20;
    for i in 0..requests {
        let resp = post_json(&relay.url("/v1/chat/completions"), &chat_body("m"));
        assert_eq!(resp.status, 200, "request {i}");
    }
    // every request completed while the exporter's one post is stuck at the collector; the
    // spans that did not fit the queue (4) or the stuck batch (2) were dropped and counted
    let dropped = "llm_relay_trace_spans_dropped_total{reason=\"queue_full\"}";
    let at_least = (requests * 2 - 4 - 2) as f64;
    wait_until(HANG_GUARD, "dropped spans counted", || {
        metric(&relay, dropped).is_some_and(|n| n >= at_least)
    });
    assert_eq!(
        collector.requests().len(),
        1,
        "one export, still unanswered"
    );
    assert!(!gate.load(Ordering::SeqCst));
    assert_eq!(
        metric(&relay, "llm_relay_trace_spans_exported_total"),
        Some(0.0)
    );
    assert_eq!(up.requests().len(), requests);
    gate.store(true, Ordering::SeqCst);
}

#[test]
fn a_messages_call_has_its_own_usage_names_and_a_refused_request_is_traced_too() {
    let collector = collector();
    let up = Upstream::start(|_| {
        Reply::json(
            200,
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-served",
                "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 2,
                          "cache_read_input_tokens": 40, "cache_creation_input_tokens": 8},
            }),
        )
    });
    let relay = Relay::start(&upstreams_config(
        json!([{"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": "k"}]),
        json!({
            "auth": {"keys": [{"key": "relay-client-key", "name": "alice"}]},
            "telemetry": telemetry(&collector, json!({})),
        }),
    ));
    let url = relay.url("/v1/messages");
    let body = json!({"model": "claude-x", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi"}]});
    let refused = post_json(&url, &body);
    assert_eq!(refused.status, 401);
    let ok = post_json_with(&url, &body, &[("x-api-key", "relay-client-key")]);
    assert_eq!(ok.status, 200, "{}", ok.body);

    let spans = exported(&collector, 3);
    let servers = of_kind(&spans, SERVER);
    assert_eq!(servers.len(), 2, "{spans:#?}");
    let (no_key, call) = (&servers[0], &servers[1]);
    assert_eq!(no_key["name"], "POST /v1/messages");
    assert_eq!(attr(no_key, "http.response.status_code"), 401);
    assert_eq!(
        no_key["status"], 0,
        "a 4xx is the client's, not an error of the relay's span"
    );
    assert!(attr(no_key, "gen_ai.operation.name").is_null());
    assert_eq!(attr(no_key, "llm_relay.upstream.attempts"), 0);

    assert_eq!(call["name"], "chat claude-x");
    for (key, value) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.response.model", json!("claude-served")),
        ("gen_ai.response.finish_reasons", json!(["end_turn"])),
        ("gen_ai.usage.input_tokens", json!(51)), // every prompt token: 3 + 40 + 8
        ("gen_ai.usage.output_tokens", json!(2)),
        ("gen_ai.usage.cache_read.input_tokens", json!(40)),
        ("gen_ai.usage.cache_creation.input_tokens", json!(8)),
        ("llm_relay.key.name", json!("alice")),
        ("llm_relay.upstream.endpoint", json!("claude")),
    ] {
        assert_eq!(attr(call, key), &value, "{key} in {call:#}");
    }
    let attempt = of_kind(&spans, CLIENT).pop().unwrap();
    assert_eq!(attempt["parent"], call["span_id"]);
    assert!(!serde_json::to_string(&spans)
        .unwrap()
        .contains("relay-client-key"));
}

#[test]
fn a_pass_through_route_is_a_server_span_with_its_attempt() {
    let collector = collector();
    let up = Upstream::start(|_| Reply::json(200, json!({"object": "list", "data": []})));
    let relay = traced_relay(&up, &collector, json!({}));
    let resp = get(&relay.url("/v1/files"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let spans = exported(&collector, 2);
    let server = of_kind(&spans, SERVER).pop().unwrap();
    let attempt = of_kind(&spans, CLIENT).pop().unwrap();
    assert_eq!(server["name"], "GET /v1/files");
    assert!(attr(&server, "gen_ai.operation.name").is_null());
    assert_eq!(attr(&server, "llm_relay.upstream.attempts"), 1);
    assert_eq!(attempt["parent"], server["span_id"]);
    let expected = format!(
        "00-{}-{}-01",
        server["trace_id"].as_str().unwrap(),
        attempt["span_id"].as_str().unwrap()
    );
    assert_eq!(
        up.only_request().header("traceparent"),
        Some(expected.as_str())
    );
}

#[test]
fn a_reload_turns_traces_on_and_moves_them_to_a_new_collector() {
    let (first, second) = (collector(), collector());
    let up = Upstream::openai();
    let relay = Relay::start(&config_json(&up.base_url(), json!({})));
    let url = relay.url("/v1/chat/completions");
    assert_eq!(post_json(&url, &chat_body("off")).status, 200);
    let mut reloads = 0;
    let mut reload = |telemetry: Value| {
        reloads += 1;
        let config = config_json(&up.base_url(), json!({"telemetry": telemetry}));
        std::fs::write(relay.config_path(), config).unwrap();
        relay.signal("HUP");
        wait_until(HANG_GUARD, "the reload's log line", || {
            relay.stderr_text().matches("config reloaded").count() >= reloads
        });
    };
    reload(telemetry(&first, json!({})));
    assert_eq!(post_json(&url, &chat_body("to-first")).status, 200);
    let spans = exported(&first, 2);
    assert!(
        spans.iter().all(|s| s["name"] == "chat to-first"),
        "{spans:#?}"
    );

    reload(telemetry(&second, json!({})));
    assert_eq!(post_json(&url, &chat_body("to-second")).status, 200);
    let spans = exported(&second, 2);
    assert!(
        spans.iter().all(|s| s["name"] == "chat to-second"),
        "{spans:#?}"
    );
    assert_eq!(
        raw_count(&first),
        2,
        "the first collector gets nothing more"
    );
}

#[test]
fn a_collector_that_is_down_costs_its_spans_and_one_log_line() {
    let up = Upstream::openai();
    let down = closed_port_url(); // http://127.0.0.1:PORT/v1, where nothing listens
    let endpoint = down.trim_end_matches("/v1");
    let relay = Relay::start(&config_json(
        &up.base_url(),
        json!({"telemetry": {"otlp_endpoint": endpoint, "export_delay_ms": 20}}),
    ));
    let url = relay.url("/v1/chat/completions");
    let failed = "llm_relay_trace_spans_dropped_total{reason=\"export_failed\"}";
    for round in 1..=2 {
        assert_eq!(post_json(&url, &chat_body("m")).status, 200);
        wait_until(HANG_GUARD, "the failed export counted", || {
            metric(&relay, failed).is_some_and(|n| n >= 2.0 * round as f64)
        });
    }
    let log = relay.stderr_text();
    assert_eq!(log.matches("trace export to").count(), 1, "{log}");
    assert!(log.contains(&format!("{endpoint}/v1/traces")), "{log}");
}

#[test]
fn spans_still_queued_at_shutdown_are_sent_before_the_relay_exits() {
    let collector = collector();
    let up = Upstream::openai();
    // a batch would wait a minute: only the shutdown's flush can send it in time
    let mut relay = traced_relay(&up, &collector, json!({"export_delay_ms": 60_000}));
    assert_eq!(
        post_json(&relay.url("/v1/chat/completions"), &chat_body("m")).status,
        200
    );
    wait_until(HANG_GUARD, "the request's access line", || {
        relay
            .stderr_text()
            .contains("access POST /v1/chat/completions")
    });
    assert_eq!(raw_count(&collector), 0, "nothing sent before the shutdown");
    relay.signal("TERM");
    let exit = relay.wait_exit(HANG_GUARD).expect("the relay exits");
    assert_eq!(exit, Some(0));
    assert_eq!(exported(&collector, 2).len(), 2);
}
