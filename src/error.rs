//! The one error type a client ever sees: an OpenAI-shaped JSON error with an HTTP status.
//!
//! Every refusal the relay makes itself (bad input, unknown route, unreachable upstream, a
//! panic) becomes an [`ApiError`], serialized as `{"error":{"message","type","code"}}`, the
//! shape the OpenAI SDKs parse. Errors that come *from* the upstream are not wrapped: they
//! pass through byte for byte.

use serde_json::json;

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
                "unknown path `{path}`; this relay serves /v1/chat/completions, /v1/completions, \
                 /v1/embeddings, /v1/models, /health, /ready, /metrics, /cache/stats, \
                 /openapi.json and /admin/*"
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

    /// The JSON body in the client API's shape: OpenAI's `{"error":{"message","type","code"}}`,
    /// or Anthropic's `{"type":"error","error":{"type","message"}}` for its clients.
    pub fn body_as(&self, shape: Shape) -> Vec<u8> {
        match shape {
            Shape::OpenAi => self.body(),
            Shape::Anthropic => anthropic_body(self.status, &self.message),
        }
    }

    /// The JSON body, `{"error":{"message","type","code"}}`.
    pub fn body(&self) -> Vec<u8> {
        let value = json!({
            "error": { "message": self.message, "type": self.kind, "code": self.code }
        });
        value.to_string().into_bytes()
    }
}

/// The error shape a client's API uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    #[default]
    OpenAi,
    Anthropic,
}

/// An error body in Anthropic's shape, `{"type":"error","error":{"type","message"}}`, with the
/// error type Anthropic uses for `status`.
pub fn anthropic_body(status: u16, message: &str) -> Vec<u8> {
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
        .to_string()
        .into_bytes()
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
