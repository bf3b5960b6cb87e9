//! Config loading and the CLI: JSONC errors name the file, line and column;
//! unknown keys and wrong types are refused; `--check`, `--version`, `--help`;
//! the shipped `config.jsonc` validates.

use crate::common::*;

/// Runs `--check --config FILE` on `contents` written to a temp file.
fn check_config(contents: &str) -> (RunOutput, String) {
    let dir = TempDir::new();
    let path = dir.write("relay.jsonc", contents);
    let path = path.to_string_lossy().into_owned();
    (run_relay(&["--check", "--config", &path], &[]), path)
}

/// Asserts the config was refused with a message naming the file and a
/// position, and returns the stderr.
fn assert_refused(out: &RunOutput, path: &str, line: &[usize]) -> String {
    assert!(!out.timed_out, "relay did not exit: {out:?}");
    assert!(
        matches!(out.code, Some(1) | Some(2)),
        "bad config must exit with code 1 or 2, got {:?}; {out:?}",
        out.code
    );
    let err = &out.stderr;
    assert!(err.contains(path), "stderr must name {path}: {err}");
    assert!(
        line.is_empty() || line.iter().any(|n| err.contains(&format!("line {n}"))),
        "stderr must say `line N` with N in {line:?}: {err}"
    );
    assert!(err.contains("column"), "stderr must say `column`: {err}");
    err.clone()
}

#[test]
fn bad_jsonc_missing_comma_reports_file_line_column() {
    let cfg = "{\n  // upstream below has no trailing comma\n  \"listen\": \"127.0.0.1:0\",\n  \"upstream\": \"http://127.0.0.1:9/v1\"\n  \"workers\": 2\n}\n";
    let (out, path) = check_config(cfg);
    // The comma is missing at the end of line 4: the place to point at is the key it should
    // have separated (line 5, column 3), not the value before it.
    let err = assert_refused(&out, &path, &[5]);
    assert!(err.contains("line 5, column 3"), "{err}");
    assert!(err.contains("missing comma"), "{err}");
}

#[test]
fn out_of_range_values_name_their_line_and_column() {
    for (cfg, place, key) in [
        ("{\n  \"listen\": \"127.0.0.1:0\",\n  \"workers\": 0\n}\n", "line 3, column 3", "`workers`"),
        ("{\n\n\n  upstream: 'localhost:11434/v1'\n}\n", "line 4, column 3", "`upstream`"),
        (
            "{\n  \"listen\": \"127.0.0.1:0\",\n  \"state\": {\n    \"responses_store_days\": 0\n  }\n}\n",
            "line 4, column 5",
            "`state.responses_store_days` must be from 1 to 3650",
        ),
        (
            "{\n  upstreams: [\n    {url: 'http://127.0.0.1:9/v1'},\n    {url: 'ftp://x/v1'}\n  ]\n}\n",
            "line 4, column 6",
            "upstreams[1]",
        ),
        (
            "{\n  upstreams: [\n    {url: 'http://127.0.0.1:9/v1', thinking: 'hard'}\n  ]\n}\n",
            "line 3, column 36",
            "upstreams[0]: `thinking` \"hard\" is not one of",
        ),
    ] {
        let (out, path) = check_config(cfg);
        let err = assert_refused(&out, &path, &[]);
        assert!(err.contains(&format!("{path}: {place}: {key}")), "{err}");
    }
}

#[test]
fn an_upstream_without_a_path_is_warned_about_at_check_and_at_start() {
    let cfg = "{\n  \"listen\": \"127.0.0.1:0\",\n  \"upstream\": \"http://127.0.0.1:9\"\n}\n";
    let (out, path) = check_config(cfg);
    assert_eq!(out.code, Some(0), "a warning, not an error: {out:?}");
    assert!(
        out.stderr
            .contains(&format!("warning: {path}: line 3, column 3: `upstream`")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("http://127.0.0.1:9/v1"),
        "{}",
        out.stderr
    );
    let relay = Relay::start(cfg);
    relay
        .wait_for_log_line(std::time::Duration::from_secs(30), |l| {
            l.contains(" warn ") && l.contains("has no path")
        })
        .expect("the warning is logged at start");
}

#[test]
fn bad_jsonc_also_refused_without_check_flag() {
    let dir = TempDir::new();
    let path = dir.write(
        "broken.jsonc",
        "{ \"listen\": \"127.0.0.1:0\", \n\n  \"upstream\": }\n",
    );
    let p = path.to_string_lossy().into_owned();
    let out = run_relay(&["--config", &p], &[]);
    assert_refused(&out, &p, &[3]);
}

#[test]
fn unknown_key_is_refused_and_named() {
    let cfg = "{\n  \"upstream\": \"http://127.0.0.1:9/v1\",\n  \"listne\": \"127.0.0.1:0\",\n}\n";
    let (out, path) = check_config(cfg);
    let err = assert_refused(&out, &path, &[3]);
    assert!(err.contains("listne"), "message must name the key: {err}");
}

#[test]
fn unknown_key_inside_rule_is_refused() {
    let cfg = "{\n  \"upstream\": \"http://127.0.0.1:9/v1\",\n  \"model_rules\": [\n    {\"match_model\": \"a\", \"sett\": {}}\n  ]\n}\n";
    let (out, path) = check_config(cfg);
    let err = assert_refused(&out, &path, &[4]);
    assert!(err.contains("sett"), "message must name the key: {err}");
}

#[test]
fn wrong_type_is_refused_with_line() {
    let cfg = "{\n  \"upstream\": \"http://127.0.0.1:9/v1\",\n  /* four workers */\n  \"workers\": \"four\",\n}\n";
    let (out, path) = check_config(cfg);
    let err = assert_refused(&out, &path, &[4]);
    let lower = err.to_lowercase();
    assert!(
        ["expected", "integer", "number"]
            .iter()
            .any(|w| lower.contains(w)),
        "message must say what was expected: {err}"
    );
}

#[test]
fn missing_config_file_is_refused_with_path() {
    let dir = TempDir::new();
    let p = dir.path().join("nope.jsonc").to_string_lossy().into_owned();
    let out = run_relay(&["--check", "--config", &p], &[]);
    assert!(!out.timed_out);
    assert!(matches!(out.code, Some(1) | Some(2)), "{out:?}");
    assert!(
        out.stderr.contains(&p),
        "stderr must name {p}: {}",
        out.stderr
    );
}

#[test]
fn check_good_config_exits_zero_and_summarises() {
    let cfg = r#"{
  // JSONC: comments and trailing commas are fine
  "listen": "127.0.0.1:0",
  "upstream": "http://127.0.0.1:9/v1",
  "api_key": "sk-check-secret-0000",
  "workers": 3,
  "model_rules": [
    { "match_model": "fast-alias", "set": { "model": "real-model" } },
    { "match_model": "default", "extra": { "generation_config": { "top_k": 5 } } },
  ],
}"#;
    let (out, _) = check_config(cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("http://127.0.0.1:9/v1"),
        "summary must show the upstream: {all}"
    );
    assert!(
        all.contains("fast-alias"),
        "summary must show the rules: {all}"
    );
    assert!(
        !all.contains("sk-check-secret-0000"),
        "summary must not print the api key: {all}"
    );
}

#[test]
fn short_config_flag_works() {
    let dir = TempDir::new();
    let p = dir.write("c.jsonc", "{\"upstream\": \"http://127.0.0.1:9/v1\"}");
    let p = p.to_string_lossy().into_owned();
    let out = run_relay(&["--check", "-c", &p], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn version_prints_name_and_version() {
    let out = run_relay(&["--version"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = out.stdout.trim();
    assert!(
        text.contains("llm-relay") && text.contains(env!("CARGO_PKG_VERSION")),
        "expected `llm-relay {}`, got {text:?}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn help_mentions_config_flag() {
    let out = run_relay(&["--help"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("--config"),
        "help must mention --config: {all}"
    );
    assert!(all.contains("--check"), "help must mention --check: {all}");
}

#[test]
fn shipped_config_passes_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.jsonc");
    assert!(
        std::path::Path::new(path).exists(),
        "the repository must ship config.jsonc at its root"
    );
    let out = run_relay(&["--check", "--config", path], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "shipped config.jsonc must pass --check: {out:?}"
    );
}
