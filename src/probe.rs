//! `llm-relay health --url URL`: a health probe for container runtimes whose image has no shell
//! or curl (FROM scratch). Succeeds only on a 200 answer within five seconds.

use std::time::Duration;

/// The URL probed when `--url` is not given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/health";

/// GETs `url`; `Ok` with the status line for a 200, `Err` saying what went wrong otherwise.
pub fn check(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    if status == 200 {
        Ok(format!("{url}: 200 ok"))
    } else {
        Err(format!("{url}: status {status}"))
    }
}
