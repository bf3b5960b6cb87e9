//! What a transport failure means to the client: 502 (unreachable, broken) or 504 (timed out),
//! each naming the upstream and what to check.

use crate::error::ApiError;

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
