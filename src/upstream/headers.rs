//! Headers across the relay: which client headers go upstream (never hop-by-hop ones, the
//! relay's own, or credentials unless `forward_auth`), what an upstream request carries (the
//! endpoint's `headers`, its key, a default `anthropic-version`, the trace's `traceparent`),
//! and which response headers pass back to the client.

use super::endpoints::{Api, ANTHROPIC_VERSION};
use super::{Endpoint, Upstream};
use crate::client_headers::ClientHeaders;
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
        Listed::Credential => forward_auth && !crate::util::is_forwarded_credential(name),
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
    pub fn check_forwardable(&self, headers: ClientHeaders<'_>) -> Result<(), ApiError> {
        for (name, value) in headers.iter() {
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
        client: ClientHeaders<'_>,
        traceparent: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(client.len_hint() + ep.config.headers.len() + 3);
        self.each_outgoing(ep, client, traceparent, &mut |name, value| {
            out.push((name.to_string(), value.to_string()));
        });
        out
    }

    /// Hands each header of [`outgoing_headers`](Upstream::outgoing_headers) to `f`, in the
    /// same order, without copying any (the direct client writes them straight into the
    /// request).
    pub(super) fn each_outgoing(
        &self,
        ep: &Endpoint,
        client: ClientHeaders<'_>,
        traceparent: Option<&str>,
        f: &mut dyn FnMut(&str, &str),
    ) {
        let own = &ep.config.headers;
        let mut versioned = false;
        let mut send = |name: &str, value: &str| {
            versioned |= name.eq_ignore_ascii_case("anthropic-version");
            f(name, value);
        };
        for (name, value) in client.iter() {
            let overridden = own.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            let replaced = traceparent.is_some() && name.eq_ignore_ascii_case("traceparent");
            if !overridden && !replaced && forwardable(name, self.forward_auth) {
                send(name, value);
            }
        }
        for (name, value) in own {
            send(name, value);
        }
        if let Some(tp) = traceparent {
            send("traceparent", tp);
        }
        // the credential: with `forward_auth` the client's `Authorization` / `x-api-key` as
        // it sent them, else the endpoint's key (`x-api-key` for an `anthropic` endpoint)
        if self.forward_auth {
            if let Some((name, value)) = crate::util::forwarded_credential(client.iter()) {
                send(name, value);
            }
        } else if let Some(key) = &ep.config.key {
            match (ep.config.api, &ep.bearer) {
                (Api::Anthropic, _) => send("x-api-key", key),
                (_, Some(bearer)) => send("authorization", bearer),
                (_, None) => send("authorization", &format!("Bearer {key}")),
            }
        }
        if ep.config.api == Api::Anthropic && !versioned {
            f("anthropic-version", ANTHROPIC_VERSION);
        }
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
