//! The route policy: which request paths the relay takes at all, and which routes a key may
//! use. Routing asks [`check`] before anything else (the gate, the handlers, pass-through), so
//! a path an upstream — or a proxy in front of it — could resolve to another route never
//! reaches one; and it asks `KeyRoutes::allows` once the gate has named the key.
//!
//! - Refused with 400 `invalid_path`: a dot segment (`.`, `..`, plain or percent-encoded, also
//!   before a `;` parameter), an empty segment (`//`), an encoded slash (`%2F`), a backslash
//!   (`\` or `%5C`), an encoded percent sign (`%25`, a second round of decoding), a malformed
//!   percent-encoding, a control character.
//! - A route the relay names (`/v1/chat/completions`, `/v1/models`, ...) matches only in its
//!   one spelling: the same letters in another case, or with a trailing slash, are a 404 — never
//!   passed through, where no allow-list, cache or usage count would apply.
//! - A key's `routes` (`"METHOD /v1/path-glob"`) say what it may use; without them a key with
//!   a `models` allow-list may use the API routes that name a model ([`MODEL_KEY_ROUTES`]) and
//!   one without may use every route.
//!
//! A leaf: it imports only `error`, `glob` and `util`.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::glob::Glob;

/// The routes the relay serves itself (below the optional `/v1`), each in its one spelling.
const NAMED: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
    "/models",
    "/health",
    "/ready",
    "/metrics",
    "/cache/stats",
    "/openapi.json",
];

/// What a key with a `models` allow-list and no `routes` may use: the API routes whose body
/// names a model (and so is checked against the allow-list) and the model list.
pub const MODEL_KEY_ROUTES: &[&str] = &[
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "POST /v1/responses",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "GET /v1/models*",
    "HEAD /v1/models*",
];

/// The methods a route pattern may name (`*`: any).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// `Err` (400 `invalid_path`, or 404 for another spelling of a named route) if `path` (the
/// request target without its query) must not be routed.
pub fn check(path: &str) -> Result<(), ApiError> {
    if let Some(why) = invalid(path) {
        let shown: String = path.chars().take(200).collect();
        return Err(ApiError::invalid(
            "invalid_path",
            format!(
                "the path `{}` has {why}; the relay refuses it rather than pass it on (an \
                 upstream, or a proxy in front of one, could resolve it to another route); \
                 send each route as documented, e.g. /v1/chat/completions, and check that \
                 the client's base URL has no trailing slash",
                shown.escape_debug()
            ),
        ));
    }
    let route = crate::util::api_route(path);
    if let Some(named) = misspelled(route) {
        let mut err = ApiError::not_found(path);
        err.message = format!(
            "unknown path `{path}`; routes match only in their one spelling: did you mean \
             `/v1{named}`?"
        );
        return Err(err);
    }
    Ok(())
}

/// Why `path` is refused, if it is.
fn invalid(path: &str) -> Option<&'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return None; // not a path the relay routes: a 404 later
    };
    if path.contains('\\') {
        return Some("a backslash");
    }
    // without a `%` there is nothing to decode: the checks below read the path as it is
    // (no lowercased copy, no decoded copy per segment: this runs on every request)
    let encoded = path.contains('%');
    if encoded {
        let lower = path.to_ascii_lowercase();
        if lower.contains("%5c") {
            return Some("an encoded backslash (%5C)");
        }
        if lower.contains("%2f") {
            return Some("an encoded slash (%2F)");
        }
        if lower.contains("%25") {
            return Some("an encoded percent sign (%25)");
        }
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let decoded: Cow<'_, [u8]> = if encoded {
            match percent_decode(segment) {
                Some(d) => Cow::Owned(d),
                None => {
                    return Some("a malformed percent-encoding (% not followed by two hex digits)")
                }
            }
        } else {
            Cow::Borrowed(segment.as_bytes())
        };
        if decoded.iter().any(|b| *b < 0x20 || *b == 0x7f) {
            return Some("a control character");
        }
        // a `;` parameter does not hide a dot segment from servers that strip it
        let name = decoded.split(|b| *b == b';').next().unwrap_or_default();
        if name == b"." || name == b".." {
            return Some("a dot segment (`.` or `..`, plain or percent-encoded)");
        }
        if decoded.is_empty() && segments.peek().is_some() {
            return Some("an empty segment (`//`)");
        }
    }
    None
}

/// `segment` with its `%XX` escapes decoded; `None` if one is malformed.
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The named route `route` spells otherwise (another case, a trailing slash), if any.
fn misspelled(route: &str) -> Option<&'static str> {
    if NAMED.contains(&route) {
        return None;
    }
    let bare = route.trim_end_matches('/');
    if let Some(named) = NAMED.iter().find(|n| n.eq_ignore_ascii_case(bare)) {
        return Some(named);
    }
    // `/admin/...` in another case would pass through below `/v1`
    let top = route.split('/').nth(1).unwrap_or_default();
    (top != "admin" && top.eq_ignore_ascii_case("admin")).then_some("/admin/keys")
}

/// One entry of a key's `routes`: `"METHOD /v1/path-glob"`, e.g. `"POST /v1/chat/completions"`
/// or `"* /v1/files*"`. The glob is matched against the request's path (with `/v1`, without the
/// query), so `*` covers the rest of a path, ids and sub-routes included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyRoute {
    /// `None`: any method (`*`).
    method: Option<String>,
    path: Glob,
}

impl KeyRoute {
    /// Parses and checks one entry.
    pub fn parse(entry: &str) -> Result<KeyRoute, String> {
        let shape = "write it as \"METHOD /v1/path-glob\", e.g. \"POST /v1/chat/completions\" or \
                     \"* /v1/files*\"";
        let mut parts = entry.split_whitespace();
        let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "\"{}\" is not a route: {shape}",
                entry.escape_debug()
            ));
        };
        let method = match method {
            "*" => None,
            m => Some(
                METHODS
                    .iter()
                    .copied()
                    .find(|known| known.eq_ignore_ascii_case(m))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        format!(
                            "\"{}\": `{}` is not a method; use one of {} or `*`",
                            entry.escape_debug(),
                            m.escape_debug(),
                            METHODS.join(", ")
                        )
                    })?,
            ),
        };
        if !path.starts_with("/v1/") {
            return Err(format!(
                "\"{}\": the path must start with /v1/ (keys' routes are API routes); {shape}",
                entry.escape_debug()
            ));
        }
        if let Some(why) = invalid(path) {
            return Err(format!(
                "\"{}\": the path has {why}, which no request the relay takes can have",
                entry.escape_debug()
            ));
        }
        Ok(KeyRoute {
            method,
            path: Glob::new(path)?,
        })
    }

    /// True if a request `method` to `path` (with `/v1`) is within this entry.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        self.method.as_ref().map_or(true, |m| m == method) && self.path.matches(path)
    }
}

impl TryFrom<String> for KeyRoute {
    type Error = String;
    fn try_from(s: String) -> Result<KeyRoute, String> {
        KeyRoute::parse(&s)
    }
}

impl From<KeyRoute> for String {
    fn from(r: KeyRoute) -> String {
        format!("{} {}", r.method.as_deref().unwrap_or("*"), r.path)
    }
}

/// Checks a key's `routes` as written; `what` names the list in errors
/// (`auth.keys[0].routes`). Absent is no list (the default); an empty list is refused, since
/// a key that may use nothing is better revoked.
pub fn key_routes(raw: Option<Vec<String>>, what: &str) -> Result<Vec<KeyRoute>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.is_empty() {
        return Err(format!(
            "`{what}` is empty; leave it out for the default, or list routes like \
             \"POST /v1/chat/completions\""
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, r)| KeyRoute::parse(r).map_err(|e| format!("`{what}[{i}]`: {e}")))
        .collect()
}

/// The routes of a key with a `models` allow-list and no `routes` of its own.
static MODEL_KEY: LazyLock<Vec<KeyRoute>> = LazyLock::new(|| {
    MODEL_KEY_ROUTES
        .iter()
        .filter_map(|r| KeyRoute::parse(r).ok())
        .collect()
});

/// True if a key with `routes` (empty: the default) and a `models` allow-list (`has_models`)
/// may send `method` to `route` (the path below the optional `/v1`).
pub fn key_allows(routes: &[KeyRoute], has_models: bool, method: &str, route: &str) -> bool {
    let routes = match (routes.is_empty(), has_models) {
        (false, _) => routes,
        (true, true) => MODEL_KEY.as_slice(),
        (true, false) => return true,
    };
    let path = format!("/v1{route}");
    routes.iter().any(|r| r.allows(method, &path))
}

/// The 403 for a route outside a key's `routes`.
pub fn route_not_allowed(method: &str, route: &str) -> ApiError {
    ApiError::new(
        403,
        "invalid_request_error",
        "route_not_allowed",
        format!(
            "this API key may not use `{method} /v1{route}`; ask the relay's admin to add it to \
             the key's `routes`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_an_upstream_could_resolve_elsewhere_are_refused() {
        let refused = [
            ("/v1/../../tenant-b/v1/files", "dot segment"),
            ("/v1/./chat/completions", "dot segment"),
            ("/v1/%2e%2e/x", "dot segment"),
            ("/v1/%2E./x", "dot segment"),
            ("/v1/files/..;/x", "dot segment"),
            ("/v1/files/..", "dot segment"),
            ("/v1//chat/completions", "empty segment"),
            ("//v1/files", "empty segment"),
            ("/v1/files%2f..%2fx", "encoded slash"),
            ("/v1/files%2Fx", "encoded slash"),
            ("/v1/files\\..\\x", "backslash"),
            ("/v1/files%5cx", "encoded backslash"),
            ("/v1/%252e%252e/x", "encoded percent"),
            ("/v1/files/%zz", "malformed"),
            ("/v1/files/%2", "malformed"),
            ("/v1/files/a%00b", "control character"),
        ];
        for (path, why) in refused {
            let err = check(path).unwrap_err();
            assert_eq!((err.status, err.code), (400, "invalid_path"), "{path}");
            assert!(err.message.contains(why), "{path}: {}", err.message);
        }
        for path in [
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/files",
            "/v1/files/file-abc/content",
            "/v1/files/",
            "/v1/models/gpt-4o",
            "/v1/files/a.b",
            "/v1/files/...",
            "/v1/files/%41",
            "/health",
            "/",
            "*",
        ] {
            assert!(check(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn named_routes_match_in_one_spelling_only() {
        for path in [
            "/v1/Chat/completions",
            "/v1/chat/completions/",
            "/v1/CHAT/COMPLETIONS",
            "/v1/models/",
            "/v1/Messages",
            "/Health",
            "/v1/Admin/keys",
        ] {
            let err = check(path).unwrap_err();
            assert_eq!(err.status, 404, "{path}");
        }
        for path in [
            "/v1/models/x",
            "/v1/messages/count_tokens",
            "/v1/admin/keys",
        ] {
            assert!(check(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn key_routes_parse_match_and_say_what_is_wrong() {
        let r = KeyRoute::parse("* /v1/files*").unwrap();
        assert!(r.allows("GET", "/v1/files"));
        assert!(r.allows("DELETE", "/v1/files/file-1"));
        assert!(!r.allows("GET", "/v1/batches"));
        let r = KeyRoute::parse("post /v1/chat/completions").unwrap();
        assert_eq!(String::from(r.clone()), "POST /v1/chat/completions");
        assert!(r.allows("POST", "/v1/chat/completions"));
        assert!(!r.allows("GET", "/v1/chat/completions"));
        for (bad, says) in [
            ("POST", "is not a route"),
            ("POST /v1/a /v1/b", "is not a route"),
            ("FETCH /v1/files", "is not a method"),
            ("GET /files", "must start with /v1/"),
            ("GET /v1/../files", "dot segment"),
        ] {
            let e = KeyRoute::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = key_routes(Some(vec![]), "routes").unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = key_routes(Some(vec!["GET /v1/x".into(), "x".into()]), "k.routes").unwrap_err();
        assert!(e.starts_with("`k.routes[1]`"), "{e}");
        let v: Vec<KeyRoute> = serde_json::from_str(r#"["GET /v1/models*"]"#).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["GET /v1/models*"]"#);
        assert!(serde_json::from_str::<KeyRoute>(r#""GET /files""#).is_err());
    }

    #[test]
    fn the_default_depends_on_the_models_allow_list() {
        assert!(key_allows(&[], false, "POST", "/files"));
        assert!(key_allows(&[], true, "POST", "/chat/completions"));
        assert!(key_allows(&[], true, "POST", "/messages/count_tokens"));
        assert!(key_allows(&[], true, "GET", "/models/gpt-4o"));
        assert!(!key_allows(&[], true, "POST", "/images/generations"));
        assert!(!key_allows(&[], true, "GET", "/files"));
        assert!(!key_allows(&[], true, "GET", "/chat/completions"));
        assert_eq!(MODEL_KEY.len(), MODEL_KEY_ROUTES.len());
        let own = key_routes(Some(vec!["* /v1/files*".into()]), "r").unwrap();
        assert!(key_allows(&own, true, "POST", "/files"));
        assert!(!key_allows(&own, true, "POST", "/chat/completions"));
    }
}
