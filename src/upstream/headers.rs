//! Headers across the relay: which client headers go upstream (never hop-by-hop ones, the
//! relay's own, or credentials unless `forward_auth`), what an upstream request carries (the
//! endpoint's `headers`, its key, a default `anthropic-version`, the trace's `traceparent`),
//! and which response headers pass back to the client.

use super::endpoints::{Api, ANTHROPIC_VERSION};
use super::{Endpoint, Upstream};
use crate::error::ApiError;

/// Request headers never forwarded upstream: hop-by-hop ones (RFC 9110 §7.6.1), those the
/// relay sets itself, and the relay's cache controls.
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
    // the relay's own cache controls (a namespace names a test; none of the provider's business)
    "x-relay-cache-mode",
    "x-relay-cache-sample",
    "x-relay-cache-namespace",
    "x-relay-cache-timing",
];

/// Request headers that carry a client's credential: forwarded only with `forward_auth`
/// (`Authorization` and `x-api-key` as the one credential of [`Upstream::credential`], Azure's
/// `api-key` and Gemini's `x-goog-api-key` as they were sent). Without it the endpoint's own
/// key is the only credential an upstream sees: a client's key never reaches a provider the
/// relay pays for, and never rides along beside the relay's.
const CREDENTIALS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Which of the lists above a header name is in (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Credential,
    NotForwarded,
    Neither,
}

/// The list `name` is in: looked up by its lowercased form in a stack buffer (every client
/// header is looked up twice per request; a case-blind compare against each of the lists'
/// names was ~1.6 k instructions a request).
fn listed(name: &str) -> Listed {
    let mut buf = [0u8; 32];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return Listed::Neither; // longer than any listed name
    };
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    let lower = &*lower;
    if CREDENTIALS.iter().any(|h| h.as_bytes() == lower) {
        Listed::Credential
    } else if NOT_FORWARDED.iter().any(|h| h.as_bytes() == lower) {
        Listed::NotForwarded
    } else {
        Listed::Neither
    }
}

fn is_credential(name: &str) -> bool {
    listed(name) == Listed::Credential
}

/// Whether the client header `name` goes upstream as it is (before the endpoint's own headers
/// win). With `forward_auth`, `Authorization` / `x-api-key` go as the one chosen credential.
fn forwardable(name: &str, forward_auth: bool) -> bool {
    match listed(name) {
        Listed::Credential => {
            forward_auth && crate::util::forwarded_credential(&[(name, ())]).is_none()
        }
        Listed::NotForwarded => false,
        Listed::Neither => true,
    }
}

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

impl Upstream {
    /// Refuses (400 `invalid_request`, naming the header) a client header that would be
    /// forwarded but that the upstream client cannot send, such as a value with a control
    /// character: the client's error, found before any endpoint is tried, so it never counts
    /// against an endpoint's health.
    pub fn check_forwardable(&self, headers: &[(String, String)]) -> Result<(), ApiError> {
        for (name, value) in headers {
            let sent =
                forwardable(name, self.forward_auth) || (self.forward_auth && is_credential(name));
            if !sent {
                continue;
            }
            let name_ok = ureq::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !name_ok || ureq::http::HeaderValue::from_str(value).is_err() {
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!(
                        "the header `{}` cannot be forwarded upstream: its {} has characters \
                         HTTP does not allow (control characters); remove or fix it",
                        name.escape_debug(),
                        if name_ok { "value" } else { "name" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The headers an upstream request to `ep` carries, given the client's: the forwardable
    /// client headers, the endpoint's own `headers` (which win), its credentials, and for an
    /// `anthropic` endpoint a default `anthropic-version`. With `traceparent` (traces on), it
    /// replaces the client's: the upstream's parent is the relay's span of this attempt.
    pub(super) fn outgoing_headers(
        &self,
        ep: &Endpoint,
        client: &[(String, String)],
        traceparent: Option<&str>,
    ) -> Vec<(String, String)> {
        let own = &ep.config.headers;
        let mut out = Vec::with_capacity(client.len() + own.len() + 3);
        for (name, value) in client {
            let overridden = own.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            let replaced = traceparent.is_some() && name.eq_ignore_ascii_case("traceparent");
            if !overridden && !replaced && forwardable(name, self.forward_auth) {
                out.push((name.clone(), value.clone()));
            }
        }
        out.extend(own.iter().cloned());
        if let Some(tp) = traceparent {
            out.push(("traceparent".to_string(), tp.to_string()));
        }
        if let Some(credential) = self.credential(ep, client) {
            out.push(credential);
        }
        let has =
            |out: &[(String, String)], n: &str| out.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if ep.config.api == Api::Anthropic && !has(&out, "anthropic-version") {
            out.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
        }
        out
    }

    /// The credential header sent upstream: the endpoint's key (`Authorization: Bearer`, or
    /// `x-api-key` for an `anthropic` endpoint), or with `forward_auth` the client's own
    /// `Authorization` / `x-api-key` as it sent them.
    fn credential(&self, ep: &Endpoint, client: &[(String, String)]) -> Option<(String, String)> {
        if self.forward_auth {
            return crate::util::forwarded_credential(client).cloned();
        }
        let key = ep.config.key.as_ref()?;
        Some(match ep.config.api {
            Api::Anthropic => ("x-api-key".to_string(), key.clone()),
            Api::Chat | Api::Responses => ("authorization".to_string(), format!("Bearer {key}")),
        })
    }
}

/// Upstream response headers that pass to the client.
pub fn response_headers(map: &ureq::http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter(|(name, _)| !NOT_RETURNED.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_listed_as_a_case_blind_compare_with_each_list_finds_it() {
        let by_compare = |name: &str| {
            if CREDENTIALS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                Listed::Credential
            } else if NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                Listed::NotForwarded
            } else {
                Listed::Neither
            }
        };
        let mut names: Vec<String> = Vec::new();
        for listed in CREDENTIALS.iter().chain(NOT_FORWARDED) {
            assert!(listed.len() <= 32, "{listed} is longer than listed() looks");
            names.push(listed.to_string());
            names.push(listed.to_ascii_uppercase());
            // every other letter upper case, a letter more, a letter less
            let mixed: String = listed
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            names.push(mixed);
            names.push(format!("{listed}s"));
            names.push(listed[1..].to_string());
        }
        names.extend(
            [
                "",
                "x-request-id",
                "OpenAI-Beta",
                "anthropic-version",
                "ḱeep-alive",
            ]
            .map(String::from),
        );
        names.push("x".repeat(33));
        names.push(format!("{}{}", "connection", " ".repeat(30)));
        for name in &names {
            assert_eq!(listed(name), by_compare(name), "{name:?}");
        }
    }
}
