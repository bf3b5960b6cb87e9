//! The `model` a pass-through body names, so a key's `models` allow-list holds beyond the
//! routes the pipeline parses: in a JSON body read whole ([`json_model`]), and in a multipart
//! upload while it streams ([`Multipart`], which finds each `model` part as its bytes pass,
//! holding at most a part's headers or a model name, never the upload).
//!
//! A leaf: it imports only `error`.

use serde_json::Value;

use crate::error::ApiError;

/// The most of a part's headers held while looking for their end.
const MAX_PART_HEADERS: usize = 16 * 1024;
/// The longest `model` value taken.
const MAX_MODEL: usize = 1024;

/// The `model` of a JSON object body: `Ok(None)` when the body is no JSON object or names no
/// model (nothing to check), `Err` (400) when `model` is there but no string.
pub fn json_model(raw: &[u8]) -> Result<Option<String>, ApiError> {
    let Ok(Value::Object(body)) = crate::json::from_slice::<Value>(raw) else {
        return Ok(None);
    };
    match body.get("model") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(m)) => Ok(Some(m.clone())),
        Some(_) => Err(ApiError::invalid(
            "invalid_request",
            "`model` must be a string, e.g. \"gpt-4o-mini\"".to_string(),
        )),
    }
}

/// The boundary of a `multipart/form-data` content type; `None` for another type, `Err` (400)
/// for a multipart type without a usable boundary.
pub fn multipart_boundary(content_type: &str) -> Result<Option<String>, ApiError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    let boundary = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70);
    match boundary {
        Some(b) => Ok(Some(b)),
        None => Err(malformed(
            "its Content-Type has no boundary (1 to 70 characters)",
        )),
    }
}

fn malformed(why: &str) -> ApiError {
    ApiError::invalid(
        "invalid_multipart",
        format!("the multipart/form-data body is malformed: {why}"),
    )
}

/// Where a [`Multipart`] scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the first delimiter.
    Preamble,
    /// Right after a delimiter: `--` ends the body, CRLF starts a part.
    AfterDelimiter,
    /// In a part's headers.
    Headers,
    /// In a part's content; `true` for the `model` part.
    Content(bool),
    /// After the closing delimiter.
    Done,
}

/// Finds the `model` parts of a `multipart/form-data` body fed to it in pieces.
#[derive(Debug)]
pub struct Multipart {
    /// `--boundary`.
    delimiter: Vec<u8>,
    at: At,
    /// Bytes not yet settled: a possible delimiter's start, a part's headers, a model's value.
    held: Vec<u8>,
}

impl Multipart {
    pub fn new(boundary: &str) -> Multipart {
        Multipart {
            delimiter: format!("--{boundary}").into_bytes(),
            at: At::Preamble,
            held: Vec::new(),
        }
    }

    /// Takes the next bytes of the body; returns the values of the `model` parts they
    /// complete, or `Err` (400) for a body that cannot be read as multipart.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<String>, ApiError> {
        self.held.extend_from_slice(data);
        let mut models = Vec::new();
        loop {
            let progressed = match self.at {
                At::Preamble => self.preamble(),
                At::AfterDelimiter => self.after_delimiter(),
                At::Headers => self.headers()?,
                At::Content(is_model) => self.content(is_model, &mut models)?,
                At::Done => {
                    self.held.clear();
                    false
                }
            };
            if !progressed {
                return Ok(models);
            }
        }
    }

    /// The body ended: `Err` if it ended inside a `model` part (whose value the upstream could
    /// still read).
    pub fn end(&self) -> Result<(), ApiError> {
        match self.at {
            At::Content(true) => Err(malformed("it ends inside the `model` part")),
            _ => Ok(()),
        }
    }

    fn preamble(&mut self) -> bool {
        match find(&self.held, &self.delimiter) {
            Some(at) => {
                self.held.drain(..at + self.delimiter.len());
                self.at = At::AfterDelimiter;
                true
            }
            None => {
                self.keep_tail(self.delimiter.len());
                false
            }
        }
    }

    fn after_delimiter(&mut self) -> bool {
        let Some(two) = self.held.get(..2) else {
            return false;
        };
        self.at = if two == b"--" {
            At::Done
        } else {
            // CRLF (or anything else, which no part can follow: its headers will not parse)
            self.held.drain(..2);
            At::Headers
        };
        true
    }

    fn headers(&mut self) -> Result<bool, ApiError> {
        let Some(end) = find(&self.held, b"\r\n\r\n") else {
            if self.held.len() > MAX_PART_HEADERS {
                return Err(malformed("a part's headers do not end"));
            }
            return Ok(false);
        };
        let is_model = self
            .held
            .get(..end)
            .is_some_and(|h| part_name(h).as_deref() == Some("model"));
        self.held.drain(..end + 4);
        self.at = At::Content(is_model);
        Ok(true)
    }

    fn content(&mut self, is_model: bool, models: &mut Vec<String>) -> Result<bool, ApiError> {
        let mut ending = b"\r\n".to_vec();
        ending.extend_from_slice(&self.delimiter);
        match find(&self.held, &ending) {
            Some(at) => {
                if is_model {
                    let value = self.held.get(..at).unwrap_or_default();
                    models.push(String::from_utf8_lossy(value).trim().to_string());
                }
                self.held.drain(..at + ending.len());
                self.at = At::AfterDelimiter;
                Ok(true)
            }
            None if is_model => {
                if self.held.len() > MAX_MODEL + ending.len() {
                    return Err(malformed("the `model` part is longer than a model name"));
                }
                Ok(false)
            }
            None => {
                self.keep_tail(ending.len());
                Ok(false)
            }
        }
    }

    /// Drops all held bytes but the last `n - 1` (where a sought sequence of `n` may begin).
    fn keep_tail(&mut self, n: usize) {
        let keep = n.saturating_sub(1);
        if self.held.len() > keep {
            self.held.drain(..self.held.len() - keep);
        }
    }
}

/// The `name` of a part from its header block (`Content-Disposition: form-data; name="x"`).
fn part_name(headers: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let line = text.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    value
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("name"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for (name, content) in parts {
            out.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"")
                    .as_bytes(),
            );
            if *name == "file" {
                out.extend_from_slice(b"; filename=\"a.wav\"\r\nContent-Type: audio/wav");
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    #[test]
    fn finds_the_model_part_however_the_body_is_cut() {
        let file: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let raw = body(
            "XyZ",
            &[
                ("file", &file),
                ("model", b"whisper-1"),
                ("language", b"en"),
            ],
        );
        for piece in [1, 2, 3, 7, 64, 4096, raw.len()] {
            let mut m = Multipart::new("XyZ");
            let mut found = Vec::new();
            for chunk in raw.chunks(piece) {
                found.extend(m.feed(chunk).unwrap());
            }
            assert_eq!(found, ["whisper-1"], "pieces of {piece}");
            assert!(m.end().is_ok());
            assert_eq!(m.at, At::Done);
        }
    }

    #[test]
    fn a_body_cut_inside_the_model_or_with_endless_headers_is_refused() {
        let raw = body("b", &[("model", b"whisper-1")]);
        let cut = raw.get(..raw.len() - 10).unwrap();
        let mut m = Multipart::new("b");
        assert!(m.feed(cut).unwrap().is_empty());
        assert!(m.end().is_err());
        let mut m = Multipart::new("b");
        let mut endless = b"--b\r\nX: ".to_vec();
        endless.extend(vec![b'a'; MAX_PART_HEADERS + 10]);
        assert!(m.feed(&endless).is_err());
        let mut m = Multipart::new("b");
        let mut long = b"--b\r\nContent-Disposition: form-data; name=model\r\n\r\n".to_vec();
        long.extend(vec![b'm'; MAX_MODEL * 2]);
        assert!(m.feed(&long).is_err());
    }

    #[test]
    fn boundaries_and_json_models() {
        let b = multipart_boundary("multipart/form-data; boundary=\"abc\"").unwrap();
        assert_eq!(b.as_deref(), Some("abc"));
        assert_eq!(multipart_boundary("application/json").unwrap(), None);
        assert!(multipart_boundary("multipart/form-data").is_err());
        assert_eq!(
            json_model(br#"{"model":"dall-e-3","prompt":"x"}"#).unwrap(),
            Some("dall-e-3".to_string())
        );
        assert_eq!(json_model(br#"{"input_file_id":"f"}"#).unwrap(), None);
        assert_eq!(json_model(b"not json").unwrap(), None);
        assert!(json_model(br#"{"model":3}"#).is_err());
    }
}
