//! Checks of single config values that every config section uses (URLs, secrets). A leaf:
//! section modules (`auth`, `upstream/endpoints`, `cache/config`, `ops`…) call it, and `config.rs`
//! assembles the sections, so no section imports `config.rs` back.

/// Where the shipped config points: a local OpenAI-compatible server (Ollama's port).
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:11434/v1";

/// Checks a base URL given under the config key `field` and drops a trailing slash.
pub fn check_url(url: &str, field: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(trimmed.to_string()),
        _ => Err(format!(
            "`{field}` must be an http:// or https:// URL including /v1, e.g. \
             \"{DEFAULT_UPSTREAM}\"; got \"{url}\""
        )),
    }
}

/// A secret given either inline (`field`) or as the name of an environment variable
/// (`field_env`), never both; a named variable that is unset or empty is an error.
pub fn secret(
    inline: Option<String>,
    env: Option<String>,
    field: &str,
) -> Result<Option<String>, String> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(format!("set either `{field}` or `{field}_env`, not both")),
        (Some(key), None) => Ok(Some(key)),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(key) if !key.is_empty() => Ok(Some(key)),
            _ => Err(format!(
                "`{field}_env` names the environment variable {var}, which is not set; export it \
                 or remove `{field}_env`"
            )),
        },
        (None, None) => Ok(None),
    }
}
