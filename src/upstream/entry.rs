//! One entry of the `upstreams` list checked and resolved into an [`EndpointConfig`]: its
//! provider preset (base URL, key variable, API), key, headers, model globs, proxy, root
//! certificates (`ca_file` added to the built-in roots) and name.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::endpoints::{Api, EndpointConfig};
use super::thinking::{preset_default, ThinkingStyle};

/// One entry of `upstreams` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    name: Option<String>,
    provider: Option<String>,
    url: Option<String>,
    weight: Option<u32>,
    model: Option<String>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    models: Vec<String>,
    proxy: Option<String>,
    ca_file: Option<String>,
    api: Option<Api>,
    thinking: Option<String>,
    reasoning_content: Option<bool>,
    keepalive_ms: Option<u64>,
}

/// A provider preset: base URL, the environment variable its key usually lives in, its API.
struct Preset {
    name: &'static str,
    url: &'static str,
    key_env: Option<&'static str>,
    api: Api,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "anthropic",
        url: "https://api.anthropic.com/v1",
        key_env: Some("ANTHROPIC_API_KEY"),
        api: Api::Anthropic,
    },
    Preset {
        name: "openai",
        url: "https://api.openai.com/v1",
        key_env: Some("OPENAI_API_KEY"),
        api: Api::Responses,
    },
    Preset {
        name: "deepseek",
        url: "https://api.deepseek.com/v1",
        key_env: Some("DEEPSEEK_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "openrouter",
        url: "https://openrouter.ai/api/v1",
        key_env: Some("OPENROUTER_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "dashscope",
        url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        key_env: Some("DASHSCOPE_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "gemini",
        url: "https://generativelanguage.googleapis.com/v1beta/openai",
        key_env: Some("GEMINI_API_KEY"),
        api: Api::Chat,
    },
    Preset {
        name: "ollama",
        url: "http://127.0.0.1:11434/v1",
        key_env: None,
        api: Api::Chat,
    },
    Preset {
        name: "vllm",
        url: "http://127.0.0.1:8000/v1",
        key_env: None,
        api: Api::Chat,
    },
    Preset {
        name: "llamacpp",
        url: "http://127.0.0.1:8080/v1",
        key_env: None,
        api: Api::Chat,
    },
];

pub(super) fn endpoint(
    raw: RawEndpoint,
    default_roots: &Option<ureq::tls::RootCerts>,
) -> Result<EndpointConfig, String> {
    let preset = match raw.provider.as_deref() {
        None => None,
        Some(p) => Some(PRESETS.iter().find(|x| x.name == p).ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|x| x.name).collect();
            format!("unknown provider \"{p}\"; use one of {}", names.join(", "))
        })?),
    };
    let url = match (&raw.url, preset) {
        (Some(url), _) => url.as_str(),
        (None, Some(p)) => p.url,
        (None, None) => {
            return Err("needs a `url` (e.g. \"http://127.0.0.1:8000/v1\") or a `provider`".into())
        }
    };
    let url = crate::check::check_url(url, "url")?;
    let key = match crate::check::secret(raw.api_key, raw.api_key_env, "api_key")? {
        Some(k) => Some(k),
        None => match preset.and_then(|p| p.key_env) {
            Some(var) => Some(env_key(var).ok_or_else(|| {
                format!(
                    "provider \"{}\" reads its key from the environment variable {var}, which \
                     is not set; export it, or set `api_key` / `api_key_env`",
                    raw.provider.as_deref().unwrap_or("")
                )
            })?),
            None => None,
        },
    };
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        let Value::String(value) = value else {
            return Err(format!("headers.{name} must be a string"));
        };
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
        if !valid_name || value.contains(['\r', '\n']) {
            return Err(format!("headers.{name} is not a valid HTTP header"));
        }
        headers.push((name, value));
    }
    let models = crate::glob::list(Some(raw.models), "models")?;
    let proxy = match raw.proxy {
        None => None,
        Some(p) => Some(ureq::Proxy::new(&p).map_err(|e| {
            format!("`proxy` \"{p}\" is not a proxy URL ({e}); e.g. \"http://127.0.0.1:3128\"")
        })?),
    };
    let roots = match raw.ca_file {
        Some(path) => Some(load_roots(&path)?),
        None => default_roots.clone(),
    };
    let (thinking, reasoning_content) = preset_default(preset.map(|p| p.name));
    let thinking = match raw.thinking.as_deref() {
        Some(t) => ThinkingStyle::parse(t)?,
        None => thinking,
    };
    let name = raw
        .name
        .or(raw.provider)
        .unwrap_or_else(|| host_of(&url).to_string());
    if name.is_empty() {
        return Err("`name` is empty".into());
    }
    let keepalive = match raw.keepalive_ms {
        Some(0) => return Err("`keepalive_ms` must be positive".into()),
        ms => ms.map(std::time::Duration::from_millis),
    };
    Ok(EndpointConfig {
        name,
        url,
        weight: raw.weight.unwrap_or(1),
        model: raw.model,
        key,
        headers,
        models,
        proxy,
        roots,
        api: raw.api.or(preset.map(|p| p.api)).unwrap_or(Api::Chat),
        thinking,
        reasoning_content: raw.reasoning_content.unwrap_or(reasoning_content),
        keepalive,
    })
}

fn env_key(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|k| !k.is_empty())
}

/// Reads a PEM file of CA certificates and adds them to the built-in (Mozilla) roots.
pub(super) fn load_roots(path: &str) -> Result<ureq::tls::RootCerts, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `ca_file` {path}: {e}"))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("`ca_file` {path} is not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "`ca_file` {path} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        ));
    }
    let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()));
    let all: Vec<_> = builtin.chain(certs).collect();
    Ok(ureq::tls::RootCerts::new_with_certs(&all))
}

/// `host[:port]` of a checked URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_adds_to_the_builtin_roots() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        let Ok(ureq::tls::RootCerts::Specific(certs)) = load_roots(ca) else {
            panic!("a specific root list");
        };
        let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(builtin > 100, "{builtin}");
        assert_eq!(certs.len(), builtin + 1);
    }

    fn one(entry: serde_json::Value) -> Result<EndpointConfig, String> {
        let raw: RawEndpoint = serde_json::from_value(entry).map_err(|e| e.to_string())?;
        endpoint(raw, &None)
    }

    #[test]
    fn keepalive_ms_is_the_endpoints_own_and_positive() {
        let e = one(serde_json::json!({"url": "http://127.0.0.1:9/v1", "keepalive_ms": 4000}));
        assert_eq!(
            e.unwrap().keepalive,
            Some(std::time::Duration::from_secs(4))
        );
        let e = one(serde_json::json!({"url": "http://127.0.0.1:9/v1"}));
        assert_eq!(e.unwrap().keepalive, None);
        let e = one(serde_json::json!({"url": "http://127.0.0.1:9/v1", "keepalive_ms": 0}));
        assert!(e.unwrap_err().contains("keepalive_ms"));
    }

    #[test]
    fn api_from_field_or_preset() {
        let cases = [
            (
                serde_json::json!({"url": "http://127.0.0.1:9/v1"}),
                Api::Chat,
            ),
            (
                serde_json::json!({"url": "http://127.0.0.1:9/v1", "api": "responses"}),
                Api::Responses,
            ),
            (
                serde_json::json!({"provider": "anthropic", "api_key": "k"}),
                Api::Anthropic,
            ),
            (
                serde_json::json!({"provider": "openai", "api_key": "k"}),
                Api::Responses,
            ),
            (
                serde_json::json!({"provider": "anthropic", "api_key": "k", "api": "chat"}),
                Api::Chat,
            ),
        ];
        for (entry, want) in cases {
            let e = one(entry.clone()).unwrap();
            assert_eq!(e.api, want, "{entry}");
        }
        let e = one(serde_json::json!({"provider": "anthropic", "api_key": "k"})).unwrap();
        assert_eq!(e.url, "https://api.anthropic.com/v1");
        let err = one(serde_json::json!({"url": "http://127.0.0.1:9/v1", "api": "gemini"}));
        assert!(err.unwrap_err().contains("unknown variant `gemini`"));
    }

    #[test]
    fn host_names() {
        assert_eq!(host_of("http://127.0.0.1:9/v1"), "127.0.0.1:9");
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
    }
}
