//! What `--check` prints and warns about: a summary of what the relay would do (never a key),
//! and likely mistakes that still load.

use super::Config;

impl Config {
    /// An upstream URL without a path sends requests to `/chat/completions` at the server's
    /// root, where OpenAI-compatible servers rarely answer: it loads, with a warning.
    pub(super) fn url_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, e) in self.upstreams.endpoints.iter().enumerate() {
            let rest = e
                .url
                .strip_prefix("http://")
                .or_else(|| e.url.strip_prefix("https://"))
                .unwrap_or("");
            if rest.contains('/') {
                continue;
            }
            let key = if self.upstreams.listed {
                format!("upstreams[{i}]: `url`")
            } else {
                "`upstream`".to_string()
            };
            out.push(format!(
                "{key} \"{url}\" has no path, so requests go to {url}/chat/completions at the \
                 server's root; OpenAI-compatible servers usually want the /v1 prefix: \"{url}/v1\"",
                url = e.url
            ));
        }
        out
    }

    /// A human-readable summary of what the relay would do, for `--check`. Never prints keys.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let key = match (&self.upstream_key, self.forward_auth) {
            (_, true) => "client's Authorization forwarded",
            (Some(_), false) => "configured key (hidden)",
            (None, false) => "none",
        };
        out.push_str(&format!("listen: {}\n", self.listen));
        if !self.upstreams.listed {
            out.push_str(&format!("upstream: {} (auth: {key})\n", self.upstream));
        }
        out.push_str(&format!(
            "workers: {}, max_body_bytes: {}, max_body_bytes_in_flight: {}, max_event_bytes: {}\n",
            self.workers, self.max_body_bytes, self.max_body_bytes_in_flight, self.max_event_bytes
        ));
        out.push_str(&format!(
            "timeouts: connect {} ms, first byte {} ms, idle {} ms\n",
            self.timeouts.connect.as_millis(),
            self.timeouts.first_byte.as_millis(),
            self.timeouts.idle.as_millis()
        ));
        out.push_str(&self.upstreams.summary());
        out.push_str(&format!(
            "shutdown_timeout_s: {}, log_format: {}, log_level: {}, body_log: {}\n",
            self.ops.shutdown_timeout.as_secs(),
            format!("{:?}", self.ops.log_format).to_lowercase(),
            format!("{:?}", self.ops.log_level).to_lowercase(),
            self.ops
                .body_log
                .as_ref()
                .map_or("off".into(), |p| p.display().to_string())
        ));
        out.push_str(&self.auth.summary(&self.rate_limit));
        out.push_str(&self.state.summary());
        if !self.budget.is_empty() {
            out.push_str(&format!("default budget: {}\n", self.budget.describe()));
        }
        out.push_str(&format!("prices: {}\n", self.prices.len()));
        out.push_str(&format!("model_rules: {}\n", self.rules.len()));
        for r in &self.rules {
            out.push_str(&format!("  {}\n", r.describe()));
        }
        out.push_str(&self.cache.summary());
        out.push_str(&crate::telemetry::TelemetryConfig::summary(
            self.telemetry.as_ref(),
        ));
        out
    }
}
