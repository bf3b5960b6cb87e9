//! The request the direct client (`direct`) writes: its head in one piece as ureq wrote one
//! (`host`, `content-length`, the outgoing headers, `content-type: application/json`, the
//! agent's `user-agent` and `accept: */*` unless the outgoing headers have their own), then the
//! body; a header ureq would refuse to send is refused the same way.

use ureq::http::header::{HeaderName, HeaderValue};

use super::ClientHeaders;
use super::{Endpoint, Upstream};

/// The `user-agent` sent unless the outgoing headers carry one (the agent's).
macro_rules! user_agent_value {
    () => {
        concat!("llm-relay/", env!("CARGO_PKG_VERSION"))
    };
}

impl Upstream {
    /// The request to `ep`: its head as ureq wrote it (the outgoing headers of the client's
    /// `headers`, see `headers.rs`), then `body`.
    pub(super) fn direct_request(
        &self,
        ep: &Endpoint,
        host: &str,
        target: &str,
        (headers, traceparent): (ClientHeaders<'_>, Option<&str>),
        body: &[u8],
    ) -> Result<Vec<u8>, ureq::Error> {
        let sizes: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(320 + target.len() + host.len() + sizes + body.len());
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        crate::util::push_decimal(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        let (mut agent_named, mut accept_named) = (false, false);
        let mut refused = None;
        self.each_outgoing(ep, headers, traceparent, &mut |name, value| {
            if let Err(e) = check(name, value) {
                refused.get_or_insert(e);
            }
            agent_named |= name.eq_ignore_ascii_case("user-agent");
            accept_named |= name.eq_ignore_ascii_case("accept");
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        });
        if let Some(e) = refused {
            return Err(e);
        }
        out.extend_from_slice(b"content-type: application/json\r\n");
        if !agent_named {
            out.extend_from_slice(concat!("user-agent: ", user_agent_value!(), "\r\n").as_bytes());
        }
        if !accept_named {
            out.extend_from_slice(b"accept: */*\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Ok(out)
    }
}

/// A header ureq would refuse to send is refused the same way (`ureq::Error::Http`).
fn check(name: &str, value: &str) -> Result<(), ureq::Error> {
    let name_ok = !name.is_empty() && name.bytes().all(is_token);
    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if name_ok && value_ok {
        return Ok(());
    }
    let error: ureq::http::Error = match HeaderName::from_bytes(name.as_bytes()) {
        Err(e) => e.into(),
        Ok(_) => match HeaderValue::from_bytes(value.as_bytes()) {
            Err(e) => e.into(),
            Ok(_) => return Ok(()),
        },
    };
    Err(ureq::Error::Http(error))
}

/// A byte of an HTTP token (RFC 9110 §5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_header_ureq_would_refuse_is_refused() {
        assert!(check("x-ok", "any value\twith tab and ünïcode").is_ok());
        for (name, value) in [
            ("x-bad", "a\r\nb"),
            ("x bad", "v"),
            ("", "v"),
            ("x", "\u{7f}"),
        ] {
            let ours = check(name, value);
            assert!(
                matches!(ours, Err(ureq::Error::Http(_))),
                "{name:?} {value:?}"
            );
        }
    }
}
