//! What the GenAI semantic conventions record of a request and its answer, read from the
//! bodies: request parameters, the answering model and id, finish reasons, and — only with
//! `capture_content` — the messages, redacted as the body log redacts them. Also what they
//! record of an upstream's URL: the provider's name, the server's address and port.
//!
//! The answer is a whole JSON answer of any API the relay speaks (a recorded stream is turned
//! into one before it gets here): Chat Completions and legacy completions (`choices`),
//! Responses (`output`, `status`) or Anthropic Messages (`content`, `stop_reason`). Token
//! usage is not read here: the pipeline's `answer::Usage` is.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

use super::span::{Attributes, Value};
use crate::body_log;

/// The request's attributes: its parameters, and with `content` its input messages.
pub fn request(attrs: &mut Attributes, body: &Map<String, Json>, content: bool) {
    if let Some(m) = body.get("model").and_then(Json::as_str) {
        attrs.set("gen_ai.request.model", m);
    }
    let number = |k: &str| body.get(k).and_then(Json::as_f64);
    for (key, name) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(v) = number(key) {
            attrs.set(name, Value::Double(v));
        }
    }
    let max = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Json::as_u64));
    if let Some(max) = max {
        attrs.set("gen_ai.request.max_tokens", max);
    }
    if let Some(n) = body.get("n").and_then(Json::as_u64).filter(|n| *n != 1) {
        attrs.set("gen_ai.request.choice.count", n);
    }
    if let Some(seed) = body.get("seed").and_then(Json::as_i64) {
        attrs.set("gen_ai.request.seed", Value::Int(seed));
    }
    if let Some(stop) = body.get("stop").or_else(|| body.get("stop_sequences")) {
        let stops: Vec<String> = match stop {
            Json::String(s) => vec![s.clone()],
            Json::Array(items) => items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if !stops.is_empty() {
            attrs.set("gen_ai.request.stop_sequences", Value::Strs(stops));
        }
    }
    if body.get("stream") == Some(&Json::Bool(true)) {
        attrs.set("llm_relay.stream", Value::Bool(true));
    }
    if !content {
        return;
    }
    let input = ["messages", "input", "prompt"]
        .iter()
        .find_map(|k| body.get(*k));
    if let Some(input) = input {
        attrs.set("gen_ai.input.messages", redacted(input));
    }
    if let Some(system) = body.get("system").or_else(|| body.get("instructions")) {
        attrs.set("gen_ai.system_instructions", redacted(system));
    }
}

/// The answer's attributes (a whole JSON answer; anything else adds nothing). Its usage is
/// the relay's own reading (`answer::Usage`, in the access record). Only the members named
/// here are read (the rest is skipped, not built); the content, when asked for, is parsed
/// apart.
pub fn answer(attrs: &mut Attributes, body: &[u8], content: bool) {
    if let Ok(facts) = crate::json::from_slice::<Facts>(body) {
        if let Some(m) = facts.model.as_deref() {
            attrs.set("gen_ai.response.model", m);
        }
        if let Some(id) = facts.id.as_deref() {
            attrs.set("gen_ai.response.id", id);
        }
        let reasons = facts.finish_reasons();
        if !reasons.is_empty() {
            attrs.set("gen_ai.response.finish_reasons", Value::Strs(reasons));
        }
    }
    if !content {
        return;
    }
    let Ok(Json::Object(v)) = crate::json::from_slice::<Json>(body) else {
        return;
    };
    let output = ["choices", "output", "content", "data"]
        .iter()
        .find_map(|k| v.get(*k));
    if let Some(output) = output {
        attrs.set("gen_ai.output.messages", redacted(output));
    }
}

/// The members of an answer of any API that the span reads; a string member of another type
/// counts as absent.
#[derive(Deserialize)]
struct Facts<'a> {
    #[serde(borrow, default, deserialize_with = "lenient")]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(borrow, default)]
    incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default, deserialize_with = "lenient")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow, default, deserialize_with = "lenient")]
    reason: Option<Cow<'a, str>>,
}

/// A string member as `Some`; `null` or any other type as `None` (skipped, never built).
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(Text)
}

impl Facts<'_> {
    /// Chat's `choices[].finish_reason`, Messages' `stop_reason`, or a Responses answer's
    /// `status` (with `incomplete_details.reason` when incomplete).
    fn finish_reasons(&self) -> Vec<String> {
        if let Some(choices) = &self.choices {
            return choices
                .iter()
                .filter_map(|c| c.finish_reason.as_deref())
                .map(str::to_string)
                .collect();
        }
        if let Some(r) = self.stop_reason.as_deref() {
            return vec![r.to_string()];
        }
        if self.object.as_deref() == Some("response") {
            let reason = (self.incomplete_details.as_ref())
                .and_then(|d| d.reason.as_deref())
                .or(self.status.as_deref());
            return reason.map(str::to_string).into_iter().collect();
        }
        Vec::new()
    }
}

/// The most of one content attribute kept (its JSON text; longer is cut, marked, at a
/// character boundary), so a queue of spans stays small however long the prompts.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// `v` as JSON text with credentials redacted (the body log's redaction), at most
/// [`MAX_CONTENT_BYTES`].
fn redacted(v: &Json) -> Value {
    let mut text = body_log::redacted_value(v.clone()).to_string();
    if text.len() > MAX_CONTENT_BYTES {
        let mut end = MAX_CONTENT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("…[truncated]");
    }
    Value::Str(text)
}

/// `gen_ai.provider.name` of an upstream base URL: the conventions' well-known value for a
/// provider's public API host, else `_OTHER` (a self-hosted server; the endpoint's name is in
/// `llm_relay.upstream.endpoint`).
pub fn provider(url: &str) -> &'static str {
    let host = host_port(url).0.to_ascii_lowercase();
    const HOSTS: &[(&str, &str)] = &[
        ("api.openai.com", "openai"),
        ("openai.azure.com", "azure.ai.openai"),
        ("api.anthropic.com", "anthropic"),
        ("api.deepseek.com", "deepseek"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.groq.com", "groq"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("api.cohere.com", "cohere"),
        ("api.cohere.ai", "cohere"),
        ("amazonaws.com", "aws.bedrock"),
        ("openrouter.ai", "openrouter"),
        ("dashscope.aliyuncs.com", "dashscope"),
    ];
    HOSTS
        .iter()
        .find(|(h, _)| {
            // the host itself or a subdomain of it (no allocation: this runs per attempt)
            host.strip_suffix(h)
                .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
        })
        .map_or("_OTHER", |(_, p)| p)
}

/// `url` without a `user:password@` part (never exported).
pub fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_string(),
    }
}

/// Host and port of an `http(s)://` URL (the scheme's default port when none is given).
pub fn host_port(url: &str) -> (&str, u16) {
    let (rest, default) = match url.strip_prefix("https://") {
        Some(r) => (r, 443),
        None => (url.strip_prefix("http://").unwrap_or(url), 80),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host, port.unwrap_or(default));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(default)),
        None => (authority, default),
    }
}

#[cfg(test)]
#[path = "genai_tests.rs"]
mod tests;
