//! The `telemetry` config section: the file's keys ([`RawTelemetry`]) and the checked
//! [`TelemetryConfig`] (`None` in `Config` when traces are off).

use std::time::Duration;

use serde::Deserialize;

use super::genai::without_userinfo;

const DEFAULT_SERVICE: &str = "llm-relay";
const DEFAULT_MAX_QUEUE: usize = 2048;
const DEFAULT_MAX_BATCH: usize = 512;
const DEFAULT_DELAY_MS: u64 = 1000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The `telemetry` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    otlp_endpoint: Option<String>,
    otlp_headers: Option<std::collections::BTreeMap<String, String>>,
    service_name: Option<String>,
    capture_content: Option<bool>,
    max_queue_spans: Option<usize>,
    max_batch_spans: Option<usize>,
    export_delay_ms: Option<u64>,
    export_timeout_ms: Option<u64>,
}

/// The checked `telemetry` section; `None` in `Config` when no `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `{otlp_endpoint}/v1/traces` (the endpoint as given if it already ends so).
    pub traces_url: String,
    /// Sent with every export (a collector's credentials; never logged).
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub capture_content: bool,
    pub max_queue_spans: usize,
    pub max_batch_spans: usize,
    pub export_delay: Duration,
    pub export_timeout: Duration,
}

impl TelemetryConfig {
    pub fn from_raw(raw: Option<RawTelemetry>) -> Result<Option<TelemetryConfig>, String> {
        let raw = raw.unwrap_or_default();
        if raw
            .otlp_endpoint
            .as_deref()
            .is_some_and(|e| e.trim().is_empty())
        {
            // `""` is off, for `"${OTEL_EXPORTER_OTLP_ENDPOINT:-}"`
            return Ok(None);
        }
        let Some(endpoint) = raw.otlp_endpoint else {
            let set = raw.otlp_headers.is_some()
                || raw.capture_content.is_some()
                || raw.service_name.is_some()
                || raw.max_queue_spans.is_some()
                || raw.max_batch_spans.is_some()
                || raw.export_delay_ms.is_some()
                || raw.export_timeout_ms.is_some();
            if set {
                return Err(
                    "telemetry: the section's settings need `otlp_endpoint` (the \
                            collector's base URL, e.g. \"http://127.0.0.1:4318\"); without \
                            it traces are off"
                        .to_string(),
                );
            }
            return Ok(None);
        };
        let base = endpoint.trim().trim_end_matches('/');
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if !host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
            return Err(format!(
                "telemetry: `otlp_endpoint` must be an http:// or https:// URL, the collector's \
                 OTLP/HTTP base such as \"http://127.0.0.1:4318\"; got \"{endpoint}\""
            ));
        }
        let traces_url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        let mut headers = Vec::new();
        for (name, value) in raw.otlp_headers.unwrap_or_default() {
            let ok = ureq::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && ureq::http::HeaderValue::from_str(&value).is_ok();
            if !ok {
                return Err(format!(
                    "telemetry: `otlp_headers` has a header HTTP does not allow: \"{}\" (names \
                     are tokens, values have no control characters)",
                    name.escape_debug()
                ));
            }
            headers.push((name, value));
        }
        let service_name = raw
            .service_name
            .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
        if service_name.trim().is_empty() {
            return Err("telemetry: `service_name` is empty; remove it or name the service".into());
        }
        let max_queue_spans = raw.max_queue_spans.unwrap_or(DEFAULT_MAX_QUEUE);
        let max_batch_spans = raw.max_batch_spans.unwrap_or(DEFAULT_MAX_BATCH);
        if !(1..=1_000_000).contains(&max_queue_spans) {
            return Err(format!(
                "telemetry: `max_queue_spans` must be between 1 and 1000000, got {max_queue_spans}"
            ));
        }
        if max_batch_spans == 0 || max_batch_spans > max_queue_spans {
            return Err(format!(
                "telemetry: `max_batch_spans` must be between 1 and `max_queue_spans` \
                 ({max_queue_spans}), got {max_batch_spans}"
            ));
        }
        let ms = |v: Option<u64>, default: u64, key: &str| match v.unwrap_or(default) {
            0 => Err(format!("telemetry: `{key}` must be positive")),
            ms => Ok(Duration::from_millis(ms)),
        };
        Ok(Some(TelemetryConfig {
            traces_url,
            headers,
            service_name,
            capture_content: raw.capture_content.unwrap_or(false),
            max_queue_spans,
            max_batch_spans,
            export_delay: ms(raw.export_delay_ms, DEFAULT_DELAY_MS, "export_delay_ms")?,
            export_timeout: ms(
                raw.export_timeout_ms,
                DEFAULT_TIMEOUT_MS,
                "export_timeout_ms",
            )?,
        }))
    }

    /// One line for `--check` (headers are named, their values never shown).
    pub fn summary(config: Option<&TelemetryConfig>) -> String {
        match config {
            None => "telemetry: off\n".to_string(),
            Some(c) => {
                format!(
                "telemetry: OTLP/HTTP JSON traces to {} (service {}, content {}, queue {} spans, \
                 batches of {}, headers: {})\n",
                without_userinfo(&c.traces_url),
                c.service_name,
                if c.capture_content { "captured" } else { "not captured" },
                c.max_queue_spans,
                c.max_batch_spans,
                if c.headers.is_empty() {
                    "none".to_string()
                } else {
                    c.headers
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    #[test]
    fn the_section_is_checked() {
        let raw = |v: Json| serde_json::from_value::<RawTelemetry>(v).unwrap();
        assert_eq!(TelemetryConfig::from_raw(None).unwrap(), None);
        let empty = raw(serde_json::json!({"otlp_endpoint": " ", "capture_content": true}));
        assert_eq!(TelemetryConfig::from_raw(Some(empty)).unwrap(), None);
        let c = TelemetryConfig::from_raw(Some(raw(
            serde_json::json!({"otlp_endpoint": "http://c:4318/"}),
        )))
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "http://c:4318/v1/traces");
        assert!(!c.capture_content);
        for (bad, says) in [
            (
                serde_json::json!({"capture_content": true}),
                "`otlp_endpoint`",
            ),
            (
                serde_json::json!({"otlp_endpoint": "c:4318"}),
                "`otlp_endpoint` must be",
            ),
            (
                serde_json::json!({"otlp_endpoint": "http://c", "max_batch_spans": 9, "max_queue_spans": 4}),
                "`max_batch_spans`",
            ),
            (
                serde_json::json!({"otlp_endpoint": "http://c", "otlp_headers": {"a b": "x"}}),
                "`otlp_headers`",
            ),
        ] {
            let e = TelemetryConfig::from_raw(Some(raw(bad))).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
