//! The client's request body as the upstream client reads it ([`ClientBody`]): bounded in
//! size and time, and watched as it streams for the `model` it names ([`Named`]): a multipart
//! upload's `model` part (checked against a key's allow-list, or only noted for pricing) or a
//! JSON body's top-level `model` (noted).

use std::io::{self, Read};
use std::time::Duration;

use crate::answer::Members;
use crate::body_model::Multipart;
use crate::budget;
use crate::error::{ApiError, ClientFault};
use crate::glob::Glob;
use crate::intake::{self, Deadline};

/// How the `model` a streamed body names is found.
pub enum Named {
    /// A multipart upload's `model` parts (`None` once the body turned out not to be
    /// multipart, where nothing is enforced).
    Multipart {
        parts: Option<Multipart>,
        /// A key's allow-list: a model outside it, or a body that is not multipart, refuses
        /// the upload. Empty: the model is only noted.
        allowed: Vec<Glob>,
        model: Option<String>,
    },
    /// A JSON body's top-level `model`, noted.
    Json(Members),
}

const MODEL: &[&str] = &["model"];

impl Named {
    pub fn multipart(boundary: &str, allowed: Vec<Glob>) -> Named {
        Named::Multipart {
            parts: Some(Multipart::new(boundary)),
            allowed,
            model: None,
        }
    }

    pub fn json() -> Named {
        Named::Json(Members::new(MODEL))
    }

    /// Takes the next bytes of the body; `Err` (403, or 400 for a malformed body) once a
    /// `model` part names a model outside the allow-list.
    fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        match self {
            Named::Json(members) => members.feed(data),
            Named::Multipart {
                parts,
                allowed,
                model,
            } => {
                let Some(reader) = parts else {
                    return Ok(());
                };
                match reader.feed(data) {
                    Ok(models) => {
                        for named in models {
                            if !budget::model_allowed(allowed, &named) {
                                return Err(budget::not_allowed(&named));
                            }
                            *model = Some(named);
                        }
                    }
                    Err(e) if !allowed.is_empty() => return Err(e),
                    Err(_) => *parts = None,
                }
            }
        }
        Ok(())
    }

    /// The body ended: `Err` if it ended inside an enforced `model` part.
    fn end(&self) -> Result<(), ApiError> {
        match self {
            Named::Multipart {
                parts: Some(parts),
                allowed,
                ..
            } if !allowed.is_empty() => parts.end(),
            _ => Ok(()),
        }
    }

    /// The model the body named (the last one, if several).
    pub fn model(&self) -> Option<String> {
        match self {
            Named::Multipart { model, .. } => model.clone(),
            Named::Json(members) => crate::json::from_slice(members.get("model")?).ok(),
        }
    }
}

/// The client's request body as the upstream client reads it: at most `max` bytes, all within
/// the `client_timeout_ms` budget. It never ends early: past `max`, too slow, cut by the
/// client, or naming a model outside the key's allow-list ([`Named`]), a read fails with the
/// client's [`ApiError`] inside ([`ClientFault`]) before those bytes are passed on, so the
/// upstream client aborts the request instead of ending it as complete.
pub struct ClientBody<R> {
    inner: Deadline<R>,
    max: u64,
    read: u64,
    budget: Duration,
    pub named: Option<Named>,
}

impl<R: Read> ClientBody<R> {
    pub fn new(inner: R, max: u64, budget: Duration, named: Option<Named>) -> ClientBody<R> {
        ClientBody {
            inner: Deadline::new(inner, budget),
            max,
            read: 0,
            budget,
            named,
        }
    }
}

impl<R: Read> Read for ClientBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| ClientFault::io(intake::body_error(&e, self.budget)))?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(ClientFault::io(ApiError::too_large(self.max)));
        }
        if let Some(named) = &mut self.named {
            let checked = match buf.get(..n) {
                Some(data) if n > 0 => named.feed(data),
                _ => named.end(),
            };
            checked.map_err(ClientFault::io)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(model: &str) -> Vec<u8> {
        format!(
            "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--B\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--B--\r\n"
        )
        .into_bytes()
    }

    fn read_all(body: &[u8], named: Named) -> (Result<Vec<u8>, io::Error>, Option<String>) {
        let mut client = ClientBody::new(body, 1 << 20, Duration::from_secs(5), Some(named));
        let mut out = Vec::new();
        let read = client.read_to_end(&mut out).map(|_| out);
        (read, client.named.and_then(|n| n.model()))
    }

    #[test]
    fn a_multipart_model_is_noted_or_refused_by_the_allow_list() {
        let (read, model) = read_all(&upload("gpt-4o-transcribe"), Named::multipart("B", vec![]));
        assert_eq!(read.unwrap(), upload("gpt-4o-transcribe"));
        assert_eq!(model.as_deref(), Some("gpt-4o-transcribe"));
        let allowed = vec![Glob::new("whisper-*").unwrap()];
        let (read, _) = read_all(&upload("gpt-4o-transcribe"), Named::multipart("B", allowed));
        assert!(
            read.is_err(),
            "a model outside the allow-list fails the read"
        );
    }

    #[test]
    fn a_body_that_is_not_multipart_is_refused_only_under_an_allow_list() {
        let junk = b"--B\r\nno blank line ever".repeat(2000);
        let (read, model) = read_all(&junk, Named::multipart("B", vec![]));
        assert_eq!(read.unwrap(), junk, "noted only: passed unchanged");
        assert_eq!(model, None);
        let (read, _) = read_all(&junk, Named::multipart("B", vec![Glob::new("*").unwrap()]));
        assert!(read.is_err());
    }

    #[test]
    fn a_json_body_names_its_model() {
        let body = br#"{"prompt":"a cat","model":"gpt-image-1","size":"1024x1024"}"#;
        let (read, model) = read_all(body, Named::json());
        assert_eq!(read.unwrap(), body);
        assert_eq!(model.as_deref(), Some("gpt-image-1"));
    }
}
