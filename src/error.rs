//! The one error type a client ever sees: an OpenAI-shaped JSON error with an HTTP status.
//!
//! Every refusal the relay makes itself (bad input, unknown route, unreachable upstream, a
//! panic) becomes an [`ApiError`], serialized as `{"error":{"message","type","code"}}`, the
//! shape the OpenAI SDKs parse. Errors that come *from* the upstream are not wrapped: they
//! pass through byte for byte.

use serde_json::{json, Value};

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// OpenAI `error.type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// Machine-readable `error.code`, e.g. `not_found`.
    pub code: &'static str,
    /// What was wrong and how to fix it.
    pub message: String,
    /// For a 405: the methods the path allows, as the `Allow` header lists them.
    pub allow: Option<&'static str>,
    /// Further members of the `error` object (an object), e.g. the key of a `cache_miss`.
    pub detail: Option<Box<Value>>,
    /// For a refusal the client should retry: seconds for the `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            message,
            allow: None,
            detail: None,
            retry_after: None,
        }
    }

    /// A 503 the client should retry after `secs` seconds (`Retry-After`).
    pub fn busy(code: &'static str, message: String, secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(503, "server_error", code, message)
        }
    }

    /// A 400 for a request the client can fix.
    pub fn invalid(code: &'static str, message: String) -> Self {
        ApiError::new(400, "invalid_request_error", code, message)
    }

    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            "not_found",
            format!(
                "unknown path `{path}`; this relay serves /v1/* (the API routes, passed to an \
                 upstream), /health, /ready, /metrics, /cache/stats, /openapi.json and /admin/*"
            ),
        )
    }

    /// A 405; `allow` lists the allowed methods as the `Allow` header does ("GET, POST").
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                405,
                "invalid_request_error",
                "method_not_allowed",
                format!("{method} is not allowed on `{path}`; use {allow}"),
            )
        }
    }

    pub fn too_large(limit: u64) -> Self {
        ApiError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!(
                "request body is larger than max_body_bytes ({limit} bytes); send a smaller \
                 request or raise max_body_bytes in the config"
            ),
        )
    }

    pub fn internal(message: String) -> Self {
        ApiError::new(500, "server_error", "internal_error", message)
    }

    /// The body in the shape of the client API `path` belongs to: Anthropic's
    /// `{"type":"error","error":{"type","message"}}` on `/v1/messages…`, else OpenAI's.
    pub fn body_for(&self, path: &str) -> Vec<u8> {
        match crate::api::of_path(path) {
            crate::api::Api::Anthropic => {
                crate::api::messages::error_body(self.status, &self.message)
            }
            _ => self.body(),
        }
    }

    /// The JSON body, `{"error":{"message","type","code"}}` (plus any `detail` members).
    pub fn body(&self) -> Vec<u8> {
        let mut error = json!({ "message": self.message, "type": self.kind, "code": self.code });
        if let (Some(Value::Object(extra)), Some(e)) =
            (self.detail.as_deref(), error.as_object_mut())
        {
            for (k, v) in extra {
                e.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        json!({ "error": error }).to_string().into_bytes()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// An [`ApiError`] carried through an `io::Error`: a client's request body that failed (too
/// large, too slow, cut) while the upstream client was streaming it. The upstream call then
/// fails with it, and the failure is the client's: it never counts against the endpoint. Also
/// a whole answer refused for the relay's own bounds (`max_response_bytes`, its in-flight
/// budget), which is not the endpoint's fault either.
#[derive(Debug)]
pub struct ClientFault(pub ApiError);

impl std::fmt::Display for ClientFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ClientFault {}

impl ClientFault {
    /// The I/O error that carries `err`.
    pub fn io(err: ApiError) -> std::io::Error {
        std::io::Error::other(ClientFault(err))
    }

    /// The client's error inside `err`, if it carries one.
    pub fn of(err: &std::io::Error) -> Option<&ApiError> {
        err.get_ref()?.downcast_ref::<ClientFault>().map(|f| &f.0)
    }
}
