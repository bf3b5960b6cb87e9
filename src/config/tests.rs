//! Loading the config: defaults, refused keys and values, and where each error points.

use super::*;

fn err(text: &str) -> String {
    Config::parse(text, "c.jsonc").unwrap_err().0
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let e = err("{\n  // comment\n  \"listne\": \"127.0.0.1:1\"\n}");
    assert!(e.contains("c.jsonc: line 3, column 3"), "{e}");
    assert!(e.contains("listne"), "{e}");
}

#[test]
fn wrong_type_names_line() {
    let e = err("{\n\"workers\": \"four\"\n}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn negative_and_fractional_integers_are_refused_with_their_line() {
    let e = err("{\n  // workers: -1\n  \"workers\": -3,\n}");
    assert!(e.contains("line 3, column 14"), "{e}");
    assert!(e.contains("-3"), "{e}");
    let e = err("{\n\"max_body_bytes\": 2.7\n}");
    assert!(e.contains("line 2, column 19"), "{e}");
    assert!(Config::parse("{\"workers\": 3, \"max_body_bytes\": 27}", "x").is_ok());
}

#[test]
fn defaults_apply() {
    let c = Config::parse("{}", "x").unwrap();
    assert_eq!(c.upstream, DEFAULT_UPSTREAM);
    assert_eq!(c.workers, DEFAULT_WORKERS);
    // an idle upstream connection is kept 90 s (Go's transport; ureq's own default is 15 s)
    assert_eq!(c.timeouts.keepalive, Duration::from_secs(90));
    let c = Config::parse("{\"upstream_keepalive_ms\": 400000}", "x").unwrap();
    assert_eq!(c.timeouts.keepalive, Duration::from_secs(400));
    assert!(err("{\"upstream_keepalive_ms\": 0}").contains("upstream_keepalive_ms"));
}

#[test]
fn bad_url_is_refused() {
    assert!(err("{upstream: 'localhost:11434'}").contains("http://"));
}

#[test]
fn out_of_range_values_name_their_line_and_column() {
    let e = err("{\n  listen: '127.0.0.1:1',\n  workers: 0\n}");
    assert!(e.starts_with("c.jsonc: line 3, column 3: `workers`"), "{e}");
    let e = err("{\n\n  \"upstream\": \"localhost:11434\"\n}");
    assert!(
        e.starts_with("c.jsonc: line 3, column 3: `upstream`"),
        "{e}"
    );
    let e = err("{upstreams: [{url: 'http://a/v1'},\n  {url: 'nope'}]}");
    assert!(
        e.starts_with("c.jsonc: line 2, column 4: upstreams[1]"),
        "{e}"
    );
    let e = err("{\n  workers: 2,\n    max_event_bytes: 100\n}");
    assert!(
        e.starts_with("c.jsonc: line 3, column 5: `max_event_bytes` must be at least 4096"),
        "{e}"
    );
    let e = err("{auth: {keys: [\n  {key: 'sk-long-enough', rate_limit: {per_minute: 0}}]}}");
    assert!(e.starts_with("c.jsonc: line 2, column 40:"), "{e}");
}

#[test]
fn telemetry_is_off_by_default_and_its_errors_name_their_line() {
    assert!(Config::parse("{}", "c").unwrap().telemetry.is_none());
    let e = err("{\n  telemetry: {\n    otlp_endpoint: 'collector:4318'\n  }\n}");
    assert!(
        e.starts_with("c.jsonc: line 3, column 5: telemetry: `otlp_endpoint` must be"),
        "{e}"
    );
    let e = err("{\n  telemetry: {capture_content: true}\n}");
    assert!(
        e.starts_with("c.jsonc: line 2, column 3: telemetry:"),
        "{e}"
    );
    let e = err("{telemetry: {otlp_endpoint: 'http://c', sample: 1}}");
    assert!(e.contains("unknown field `sample`"), "{e}");
    let c = Config::parse("{telemetry: {otlp_endpoint: 'http://c:4318'}}", "c").unwrap();
    assert_eq!(c.telemetry.unwrap().traces_url, "http://c:4318/v1/traces");
}

#[test]
fn a_missing_comma_is_reported_where_it_is_missing() {
    let e = err("{\n  \"listen\": \"127.0.0.1:1\"\n  \"workers\": 4\n}");
    assert!(
        e.starts_with("c.jsonc: line 3, column 3: invalid JSONC syntax"),
        "{e}"
    );
    assert!(e.contains("missing comma"), "{e}");
}

#[test]
fn an_upstream_without_a_path_loads_with_a_located_warning() {
    let c = Config::parse("{\n  upstream: 'http://10.0.0.1:8000/'\n}", "c.jsonc").unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert!(
        w.starts_with("c.jsonc: line 2, column 3: `upstream`"),
        "{w}"
    );
    assert!(w.contains("http://10.0.0.1:8000/v1"), "{w}");
    let c = Config::parse(
        "{upstreams: [{url: 'http://a:1/v1'}, {url: 'http://b:2'}]}",
        "c",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("upstreams[1]"), "{:?}", c.warnings);
    assert!(Config::parse("{}", "c").unwrap().warnings.is_empty());
}
