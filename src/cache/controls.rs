//! The cache's request headers beyond the mode: `X-Relay-Cache-Sample`,
//! `X-Relay-Cache-Namespace` and `X-Relay-Cache-Timing`, each honoured only where
//! `cache.client_controls` lists it (else `400 cache_control_not_allowed`, naming the setting).

use super::config::{CacheConfig, ClientControl};
use super::key::check_namespace;
use crate::error::ApiError;

/// The largest sample index a request may name.
pub const MAX_SAMPLE: u32 = 10_000;

/// The largest `X-Relay-Cache-Timing` factor (a recorded second replayed as 100 s).
const MAX_PACE: f64 = 100.0;

/// What a request's cache headers ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// `X-Relay-Cache-Sample: K`.
    pub sample: Option<u32>,
    /// `X-Relay-Cache-Namespace: NAME`; empty: the shared entries.
    pub namespace: String,
    /// `X-Relay-Cache-Timing`: replay a stream with its recorded gaps times this factor.
    pub pace: Option<f64>,
}

/// Reads the headers (`header` looks one up by name, case-insensitively).
pub fn parse<'a>(
    config: &CacheConfig,
    header: impl Fn(&str) -> Option<&'a str>,
) -> Result<Controls, ApiError> {
    let mut out = Controls::default();
    for control in ClientControl::ALL {
        let Some(value) = header(control.header()) else {
            continue;
        };
        if !config.client_controls.contains(&control) {
            return Err(ApiError::invalid(
                "cache_control_not_allowed",
                format!(
                    "this relay does not honour {}; drop the header, or list \"{}\" in \
                     `cache.client_controls`",
                    control.header(),
                    control.name()
                ),
            ));
        }
        let value = value.trim();
        let bad = |why: String| {
            ApiError::invalid(
                "invalid_cache_control",
                format!("{}: {value}: {why}", control.header()),
            )
        };
        match control {
            ClientControl::Sample => {
                let k = value
                    .parse::<u32>()
                    .ok()
                    .filter(|k| (1..=MAX_SAMPLE).contains(k))
                    .ok_or_else(|| bad(format!("give a sample index from 1 to {MAX_SAMPLE}")))?;
                out.sample = Some(k);
            }
            ClientControl::Namespace => {
                check_namespace(value).map_err(bad)?;
                out.namespace = value.to_string();
            }
            ClientControl::Timing => {
                out.pace = match value {
                    "recorded" => Some(1.0),
                    "fast" | "none" => None,
                    v => {
                        let f = v
                            .parse::<f64>()
                            .ok()
                            .filter(|f| (0.0..=MAX_PACE).contains(f))
                            .ok_or_else(|| {
                                bad(format!(
                                    "give \"recorded\", \"fast\" or a factor from 0 to \
                                     {MAX_PACE} (0.5: twice as fast as recorded)"
                                ))
                            })?;
                        Some(f).filter(|f| *f > 0.0)
                    }
                };
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::RawCache;

    fn config(controls: &str) -> CacheConfig {
        let raw: RawCache =
            serde_json::from_str(&format!(r#"{{"client_controls": {controls}}}"#)).unwrap();
        CacheConfig::from_raw(Some(raw)).unwrap()
    }

    fn parsed(cfg: &CacheConfig, headers: &[(&str, &str)]) -> Result<Controls, String> {
        parse(cfg, |name| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        })
        .map_err(|e| format!("{} {}", e.code, e.message))
    }

    #[test]
    fn headers_only_where_listed_and_checked() {
        let none = config("[]");
        let all = config(r#"["sample", "namespace", "timing"]"#);
        assert_eq!(parsed(&none, &[]), Ok(Controls::default()));
        let refused = parsed(&none, &[("x-relay-cache-sample", "2")]).unwrap_err();
        assert!(
            refused.starts_with("cache_control_not_allowed"),
            "{refused}"
        );
        assert!(refused.contains("`cache.client_controls`"), "{refused}");
        assert_eq!(
            parsed(
                &all,
                &[
                    ("X-Relay-Cache-Sample", "3"),
                    ("X-Relay-Cache-Namespace", "suite/test_a"),
                    ("X-Relay-Cache-Timing", "0.5"),
                ]
            ),
            Ok(Controls {
                sample: Some(3),
                namespace: "suite/test_a".to_string(),
                pace: Some(0.5),
            })
        );
        assert_eq!(
            parsed(&all, &[("X-Relay-Cache-Timing", "recorded")]).map(|c| c.pace),
            Ok(Some(1.0))
        );
        for (h, v) in [
            ("X-Relay-Cache-Sample", "0"),
            ("X-Relay-Cache-Sample", "two"),
            ("X-Relay-Cache-Namespace", "../etc"),
            ("X-Relay-Cache-Timing", "-1"),
            ("X-Relay-Cache-Timing", "slow"),
        ] {
            let e = parsed(&all, &[(h, v)]).unwrap_err();
            assert!(e.starts_with("invalid_cache_control"), "{h}: {v}: {e}");
        }
    }
}
