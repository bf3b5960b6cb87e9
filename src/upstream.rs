//! The upstream client: one pooled `ureq` agent, and the mapping of its failures to 502/504.
//!
//! Upstream status codes are never errors here (`http_status_as_error(false)`): a 429 from the
//! provider is a response like any other and passes through to the client unchanged. Only
//! transport failures (refused, reset, DNS, TLS, timeouts) become [`ApiError`]s, and each names
//! the upstream it was talking to.

use ureq::http::Response;
use ureq::Body;

use crate::config::{Config, Timeouts};
use crate::error::ApiError;

/// Request headers never forwarded upstream: hop-by-hop ones (RFC 9110 §7.6.1) and those the
/// relay sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "accept-encoding",
    "expect",
    "authorization",
    "x-api-key",
];

/// Response headers never passed back to the client (hop-by-hop, and those tiny_http sets).
pub const NOT_RETURNED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "date",
    "server",
];

/// The largest non-streamed upstream body the relay will hold in memory.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Size of each of a pooled upstream connection's read and write buffers, and so the largest
/// upstream response head the relay accepts.
const UPSTREAM_BUFFER_BYTES: usize = 16 * 1024;

/// One upstream endpoint and the agent that talks to it.
#[derive(Debug)]
pub struct Upstream {
    /// Base URL including `/v1`, no trailing slash.
    pub base: String,
    key: Option<String>,
    forward_auth: bool,
    timeouts: Timeouts,
    agent: ureq::Agent,
}

/// Which timeout profile a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A whole answer arrives at once, possibly after minutes: no per-read limit.
    Whole,
    /// A stream: every read (the response head included) must arrive within the idle timeout.
    Stream,
}

impl Upstream {
    pub fn new(config: &Config) -> Upstream {
        let t = config.timeouts;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.first_byte))
            // Each pooled connection holds both buffers, zero-filled (ureq's default is 128 KiB
            // each): with 1,000 open streams that was 256 MB of the relay's RSS. A response head
            // must fit the input buffer, hence the same limit for it (OpenAI's are ~1 KiB).
            .input_buffer_size(UPSTREAM_BUFFER_BYTES)
            .output_buffer_size(UPSTREAM_BUFFER_BYTES)
            // one byte under the buffer, so ureq reports an oversized head as such
            .max_response_header_size(UPSTREAM_BUFFER_BYTES - 1)
            .max_idle_connections(config.workers.max(8) * 2)
            .max_idle_connections_per_host(config.workers.max(8))
            .user_agent(concat!("llm-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Upstream {
            base: config.upstream.clone(),
            key: config.upstream_key.clone(),
            forward_auth: config.forward_auth,
            timeouts: t,
            agent,
        }
    }

    /// The `Authorization` header value to send upstream, given the client's.
    fn authorization(&self, client_auth: Option<&str>) -> Option<String> {
        if self.forward_auth {
            return client_auth.map(str::to_string);
        }
        self.key.as_ref().map(|k| format!("Bearer {k}"))
    }

    /// POSTs `body` (JSON) to `{base}{path}`. `headers` are the client's request headers;
    /// the forwardable ones go along.
    pub fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        mode: Mode,
    ) -> Result<Response<Body>, ApiError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.post(&url);
        if mode == Mode::Stream {
            req = req
                .config()
                .timeout_per_read(Some(self.timeouts.idle))
                .build();
        }
        let mut client_auth = None;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("authorization") {
                client_auth = Some(value.as_str());
            }
            if !NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                req = req.header(name.as_str(), value.as_str());
            }
        }
        if let Some(auth) = self.authorization(client_auth) {
            req = req.header("authorization", auth);
        }
        req.header("content-type", "application/json")
            .send(body)
            .map_err(|e| transport_error(&self.base, &e))
    }

    /// GETs `{base}{path}` with the upstream credentials.
    pub fn get(&self, path: &str, client_auth: Option<&str>) -> Result<Response<Body>, ApiError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.get(&url);
        if let Some(auth) = self.authorization(client_auth) {
            req = req.header("authorization", auth);
        }
        req.call().map_err(|e| transport_error(&self.base, &e))
    }
}

/// Reads a whole (non-streamed) upstream body.
pub fn read_body(base: &str, body: Body) -> Result<Vec<u8>, ApiError> {
    body.into_with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| transport_error(base, &e))
}

/// Maps a transport failure to 502 (unreachable, broken) or 504 (timed out).
pub fn transport_error(base: &str, err: &ureq::Error) -> ApiError {
    match err {
        ureq::Error::Timeout(which) => ApiError::new(
            504,
            "upstream_error",
            "upstream_timeout",
            format!(
                "upstream {base} timed out ({which}); raise the timeouts in the config if the model \
                 is just slow"
            ),
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            504,
            "upstream_error",
            "upstream_timeout",
            format!("upstream {base} timed out: {io}"),
        ),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
            ApiError::new(
                502,
                "upstream_error",
                "upstream_unreachable",
                format!(
                    "cannot reach upstream {base}: {err}; check that the model server is running \
                     and that `upstream` in the config points at it"
                ),
            )
        }
        ureq::Error::LargeResponseHeader(_, max) => ApiError::new(
            502,
            "upstream_error",
            "upstream_error",
            format!(
                "upstream {base} sent response headers larger than the {max} bytes the relay \
                 accepts"
            ),
        ),
        other => ApiError::new(
            502,
            "upstream_error",
            "upstream_error",
            format!("upstream {base} failed: {other}"),
        ),
    }
}

/// True for an I/O error that means the upstream went quiet for too long.
pub fn is_timeout(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::TimedOut || err.to_string().contains("timeout")
}
