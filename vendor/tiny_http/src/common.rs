use ascii::{AsciiStr, AsciiString, FromAsciiError};
use std::cmp::Ordering;
use std::fmt::{self, Display, Formatter};
use std::str::FromStr;

/// Status code of a request or response.
#[derive(Eq, PartialEq, Copy, Clone, Debug, Ord, PartialOrd)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// Returns the default reason phrase for this status code.
    /// For example the status code 404 corresponds to "Not Found".
    pub fn default_reason_phrase(&self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            102 => "Processing",
            103 => "Early Hints",

            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            203 => "Non-Authoritative Information",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            207 => "Multi-Status",
            208 => "Already Reported",
            226 => "IM Used",

            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            305 => "Use Proxy",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",

            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Entity",
            423 => "Locked",
            424 => "Failed Dependency",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            451 => "Unavailable For Legal Reasons",

            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            506 => "Variant Also Negotiates",
            507 => "Insufficient Storage",
            508 => "Loop Detected",
            510 => "Not Extended",
            511 => "Network Authentication Required",
            _ => "Unknown",
        }
    }
}

impl From<i8> for StatusCode {
    fn from(in_code: i8) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u8> for StatusCode {
    fn from(in_code: u8) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<i16> for StatusCode {
    fn from(in_code: i16) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u16> for StatusCode {
    fn from(in_code: u16) -> StatusCode {
        StatusCode(in_code)
    }
}

impl From<i32> for StatusCode {
    fn from(in_code: i32) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u32> for StatusCode {
    fn from(in_code: u32) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl AsRef<u16> for StatusCode {
    fn as_ref(&self) -> &u16 {
        &self.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        &self.0 == other
    }
}

impl PartialEq<StatusCode> for u16 {
    fn eq(&self, other: &StatusCode) -> bool {
        self == &other.0
    }
}

impl PartialOrd<u16> for StatusCode {
    fn partial_cmp(&self, other: &u16) -> Option<Ordering> {
        self.0.partial_cmp(other)
    }
}

impl PartialOrd<StatusCode> for u16 {
    fn partial_cmp(&self, other: &StatusCode) -> Option<Ordering> {
        self.partial_cmp(&other.0)
    }
}

/// Represents a HTTP header.
#[derive(Debug, Clone)]
pub struct Header {
    pub field: HeaderField,
    pub value: AsciiString,
}

impl Header {
    /// Builds a `Header` from two `Vec<u8>`s or two `&[u8]`s.
    ///
    /// Example:
    ///
    /// ```
    /// let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain"[..]).unwrap();
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn from_bytes<B1, B2>(header: B1, value: B2) -> Result<Header, ()>
    where
        B1: Into<Vec<u8>> + AsRef<[u8]>,
        B2: Into<Vec<u8>> + AsRef<[u8]>,
    {
        let header = HeaderField::from_bytes(header).or(Err(()))?;
        let value = AsciiString::from_ascii(value).or(Err(()))?;

        Ok(Header {
            field: header,
            value,
        })
    }
}

/// llm-relay patch: the whitespace `str::trim` and `char::is_whitespace` find in ASCII text
/// (vertical tab and form feed included).
fn ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Header {
    /// llm-relay patch: the header of a request head's line, as `line.as_str().trim().parse()`
    /// gives it, with the value kept in the line's own buffer: one allocation per header (its
    /// name), not two, and no check of each character against Unicode's whitespace.
    pub(crate) fn from_line(line: AsciiString) -> Result<Header, ()> {
        let mut bytes: Vec<u8> = line.into();
        let start = bytes
            .iter()
            .position(|&b| !ascii_space(b))
            .unwrap_or(bytes.len());
        let colon = start + memchr::memchr(b':', bytes.get(start..).ok_or(())?).ok_or(())?;
        let name = bytes.get(start..colon).ok_or(())?;
        if name.iter().any(|&b| ascii_space(b)) {
            return Err(());
        }
        let field = HeaderField::of_line(name)?;
        let end = bytes
            .iter()
            .rposition(|&b| !ascii_space(b))
            .map_or(0, |i| i + 1);
        let from = bytes
            .get(colon + 1..)
            .and_then(|rest| rest.iter().position(|&b| !ascii_space(b)))
            .map_or(end, |i| colon + 1 + i)
            .min(end);
        bytes.truncate(end);
        bytes.drain(..from);
        let value = AsciiString::from_ascii(bytes).map_err(|_| ())?;
        Ok(Header { field, value })
    }
}

impl FromStr for Header {
    type Err = ();

    fn from_str(input: &str) -> Result<Header, ()> {
        let mut elems = input.splitn(2, ':');

        let field = elems.next().and_then(|f| f.parse().ok()).ok_or(())?;
        let value = elems
            .next()
            .and_then(|v| AsciiString::from_ascii(v.trim()).ok())
            .ok_or(())?;

        Ok(Header { field, value })
    }
}

impl Display for Header {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}: {}", self.field, self.value.as_str())
    }
}

/// Field of a header (eg. `Content-Type`, `Content-Length`, etc.)
///
/// Comparison between two `HeaderField`s ignores case.
#[derive(Debug, Clone, Eq)]
pub struct HeaderField(FieldName);

/// llm-relay patch: a request head's header name as the client spelled it, held without an
/// allocation when it is a name clients send with most requests (an SDK sends 12 to 17
/// headers; each name was an allocation and a free a request).
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldName {
    /// One of [`KNOWN_NAMES`].
    Known(&'static AsciiStr),
    Own(AsciiString),
}

/// llm-relay patch: header names, each in the spellings clients send (matched exactly, so the
/// name is kept as sent).
const KNOWN_NAMES: [&str; 48] = [
    "Host",
    "host",
    "Content-Type",
    "content-type",
    "Content-Length",
    "content-length",
    "Accept",
    "accept",
    "Accept-Encoding",
    "accept-encoding",
    "Accept-Language",
    "accept-language",
    "Connection",
    "connection",
    "User-Agent",
    "user-agent",
    "Authorization",
    "authorization",
    "X-Api-Key",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "traceparent",
    "X-Stainless-Lang",
    "x-stainless-lang",
    "X-Stainless-Package-Version",
    "x-stainless-package-version",
    "X-Stainless-OS",
    "x-stainless-os",
    "X-Stainless-Arch",
    "x-stainless-arch",
    "X-Stainless-Runtime",
    "x-stainless-runtime",
    "X-Stainless-Runtime-Version",
    "x-stainless-runtime-version",
    "X-Stainless-Async",
    "x-stainless-async",
    "X-Stainless-Retry-Count",
    "x-stainless-retry-count",
    "X-Stainless-Read-Timeout",
    "x-stainless-read-timeout",
    "X-Stainless-Timeout",
    "x-stainless-timeout",
    "Transfer-Encoding",
    "transfer-encoding",
    "sec-fetch-mode",
    "Expect",
];

/// [`KNOWN_NAMES`] as `AsciiString`s, made once.
static KNOWN_ASCII: std::sync::LazyLock<Vec<AsciiString>> = std::sync::LazyLock::new(|| {
    KNOWN_NAMES
        .iter()
        .filter_map(|n| AsciiString::from_ascii(*n).ok())
        .collect()
});

impl HeaderField {
    pub fn from_bytes<B>(bytes: B) -> Result<HeaderField, FromAsciiError<B>>
    where
        B: Into<Vec<u8>> + AsRef<[u8]>,
    {
        AsciiString::from_ascii(bytes).map(|s| HeaderField(FieldName::Own(s)))
    }

    /// llm-relay patch: the name of a request head's line, without an allocation when it is
    /// one of [`KNOWN_NAMES`] as spelled there.
    fn of_line(name: &[u8]) -> Result<HeaderField, ()> {
        let known: &'static [AsciiString] = &KNOWN_ASCII;
        if let Some(k) = known.iter().find(|k| k.as_bytes() == name) {
            return Ok(HeaderField(FieldName::Known(k)));
        }
        AsciiString::from_ascii(name)
            .map(|s| HeaderField(FieldName::Own(s)))
            .map_err(|_| ())
    }

    pub fn as_str(&self) -> &AsciiStr {
        match &self.0 {
            FieldName::Own(s) => s,
            FieldName::Known(s) => s,
        }
    }

    pub fn equiv(&self, other: &'static str) -> bool {
        other.eq_ignore_ascii_case(self.as_str().as_str())
    }
}

impl FromStr for HeaderField {
    type Err = ();

    fn from_str(s: &str) -> Result<HeaderField, ()> {
        if s.contains(char::is_whitespace) {
            Err(())
        } else {
            AsciiString::from_ascii(s)
                .map(|s| HeaderField(FieldName::Own(s)))
                .map_err(|_| ())
        }
    }
}

impl Display for HeaderField {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}", self.as_str())
    }
}

impl PartialEq for HeaderField {
    fn eq(&self, other: &HeaderField) -> bool {
        let self_str: &str = self.as_str().as_ref();
        let other_str = other.as_str().as_ref();
        self_str.eq_ignore_ascii_case(other_str)
    }
}

/// HTTP request methods
///
/// As per [RFC 7231](https://tools.ietf.org/html/rfc7231#section-4.1) and
/// [RFC 5789](https://tools.ietf.org/html/rfc5789)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,

    /// `HEAD`
    Head,

    /// `POST`
    Post,

    /// `PUT`
    Put,

    /// `DELETE`
    Delete,

    /// `CONNECT`
    Connect,

    /// `OPTIONS`
    Options,

    /// `TRACE`
    Trace,

    /// `PATCH`
    Patch,

    /// Request methods not standardized by the IETF
    NonStandard(AsciiString),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match *self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::NonStandard(ref s) => s.as_str(),
        }
    }
}

impl FromStr for Method {
    type Err = ();

    fn from_str(s: &str) -> Result<Method, ()> {
        Ok(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            s => {
                let ascii_string = AsciiString::from_ascii(s).map_err(|_| ())?;
                Method::NonStandard(ascii_string)
            }
        })
    }
}

impl Display for Method {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}", self.as_str())
    }
}

/// HTTP version (usually 1.0 or 1.1).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HTTPVersion(pub u8, pub u8);

impl Display for HTTPVersion {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}.{}", self.0, self.1)
    }
}

impl Ord for HTTPVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let HTTPVersion(my_major, my_minor) = *self;
        let HTTPVersion(other_major, other_minor) = *other;

        if my_major != other_major {
            return my_major.cmp(&other_major);
        }

        my_minor.cmp(&other_minor)
    }
}

impl PartialOrd for HTTPVersion {
    fn partial_cmp(&self, other: &HTTPVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<(u8, u8)> for HTTPVersion {
    fn eq(&self, &(major, minor): &(u8, u8)) -> bool {
        self.eq(&HTTPVersion(major, minor))
    }
}

impl PartialEq<HTTPVersion> for (u8, u8) {
    fn eq(&self, other: &HTTPVersion) -> bool {
        let &(major, minor) = self;
        HTTPVersion(major, minor).eq(other)
    }
}

impl PartialOrd<(u8, u8)> for HTTPVersion {
    fn partial_cmp(&self, &(major, minor): &(u8, u8)) -> Option<Ordering> {
        self.partial_cmp(&HTTPVersion(major, minor))
    }
}

impl PartialOrd<HTTPVersion> for (u8, u8) {
    fn partial_cmp(&self, other: &HTTPVersion) -> Option<Ordering> {
        let &(major, minor) = self;
        HTTPVersion(major, minor).partial_cmp(other)
    }
}

impl From<(u8, u8)> for HTTPVersion {
    fn from((major, minor): (u8, u8)) -> HTTPVersion {
        HTTPVersion(major, minor)
    }
}

#[cfg(test)]
mod test {
    use super::Header;
    use httpdate::HttpDate;
    use std::time::{Duration, SystemTime};

    #[test]
    fn test_parse_header() {
        let header: Header = "Content-Type: text/html".parse().unwrap();

        assert!(header.field.equiv(&"content-type"));
        assert!(header.value.as_str() == "text/html");

        assert!("hello world".parse::<Header>().is_err());
    }

    #[test]
    fn formats_date_correctly() {
        let http_date = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(420895020));

        assert_eq!(http_date.to_string(), "Wed, 04 May 1983 11:17:00 GMT")
    }

    #[test]
    fn test_parse_header_with_doublecolon() {
        let header: Header = "Time: 20: 34".parse().unwrap();

        assert!(header.field.equiv(&"time"));
        assert!(header.value.as_str() == "20: 34");
    }

    // This tests reslstance to RUSTSEC-2020-0031: "HTTP Request smuggling
    // through malformed Transfer Encoding headers"
    // (https://rustsec.org/advisories/RUSTSEC-2020-0031.html).
    #[test]
    fn test_strict_headers() {
        assert!("Transfer-Encoding : chunked".parse::<Header>().is_err());
        assert!(" Transfer-Encoding: chunked".parse::<Header>().is_err());
        assert!("Transfer Encoding: chunked".parse::<Header>().is_err());
        assert!(" Transfer\tEncoding : chunked".parse::<Header>().is_err());
        assert!("Transfer-Encoding: chunked".parse::<Header>().is_ok());
        assert!("Transfer-Encoding: chunked ".parse::<Header>().is_ok());
        assert!("Transfer-Encoding:   chunked ".parse::<Header>().is_ok());
    }

    /// llm-relay patch: a name of the known table and one that is not read and compare alike;
    /// each keeps the spelling it was sent with.
    #[test]
    fn known_header_names_keep_their_spelling() {
        use ascii::AsciiString;
        let line = |l: &str| Header::from_line(AsciiString::from_ascii(l).unwrap()).unwrap();
        for (sent, name, value) in [
            ("Content-Type: text/plain", "Content-Type", "text/plain"),
            ("content-type:  a ", "content-type", "a"),
            ("CONTENT-TYPE: b", "CONTENT-TYPE", "b"),
            ("X-Custom-Thing: c", "X-Custom-Thing", "c"),
        ] {
            let h = line(sent);
            assert_eq!(h.field.as_str().as_str(), name);
            assert_eq!(h.value.as_str(), value);
            assert!(h.field.equiv("content-type") == name.eq_ignore_ascii_case("content-type"));
            let own = HeaderField::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(h.field, own);
            assert_eq!(h.field.to_string(), name);
        }
        use super::{FieldName, HeaderField};
        assert!(matches!(line("Host: x").field.0, FieldName::Known(_)));
        assert!(matches!(line("HOST: x").field.0, FieldName::Own(_)));
    }

    /// llm-relay patch: `Header::from_line` gives what parsing the trimmed line gave.
    #[test]
    fn a_header_from_its_line_is_the_parse_of_the_trimmed_line() {
        use ascii::AsciiString;
        const PIECES: &[&str] = &[
            "Content-Type",
            "content-length",
            ":",
            " ",
            "\t",
            "\x0b",
            "\x0c",
            "\r",
            "a",
            "7",
            "x-y",
            "::",
            "",
            "a b",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..100_000 {
            let line: String = (0..next(8)).map(|_| PIECES[next(PIECES.len())]).collect();
            let parsed = line.trim().parse::<Header>();
            let from_line = Header::from_line(AsciiString::from_ascii(line.as_bytes()).unwrap());
            match (parsed, from_line) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.field.as_str(), b.field.as_str(), "{line:?}");
                    assert_eq!(a.value, b.value, "{line:?}");
                }
                (Err(()), Err(())) => {}
                (a, b) => panic!("{line:?}: {a:?} {b:?}"),
            }
        }
    }
}
