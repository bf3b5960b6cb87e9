//! The bottom of the relay: what every layer above reads from an answer the same way. Which
//! client API an answer speaks ([`Api`]), its token [`Usage`] (one reader per API, for whole
//! answers and for stream events), an answer read once ([`Answer`]: its [`Form`], its parsed
//! JSON, its usage, handed to the cache, the meter and translation so none parses it again),
//! and the `data:` payload of an SSE line.
//!
//! It imports nothing of the relay (`tests/code_layers.rs` holds it to that), so the meter,
//! the cache, translation and traces all read usage through this one type.
//!
//! # What the APIs report, and what [`Usage`] holds
//!
//! | field         | Chat Completions                                   | Responses                                      | Messages                        |
//! |---------------|----------------------------------------------------|------------------------------------------------|---------------------------------|
//! | `input`       | `prompt_tokens` − `cached_tokens`                  | `input_tokens` − `cached_tokens`               | `input_tokens`                  |
//! | `cache_read`  | `prompt_tokens_details.cached_tokens` (DeepSeek: `prompt_cache_hit_tokens`) | `input_tokens_details.cached_tokens` | `cache_read_input_tokens` |
//! | `cache_write` | —                                                  | —                                              | `cache_creation_input_tokens`   |
//! | `cache_write_1h` (of `cache_write`) | —                            | —                                              | `cache_creation.ephemeral_1h_input_tokens` |
//! | `web_searches` (no tokens) | —                                     | —                                              | `server_tool_use.web_search_requests` |
//! | `output`      | `completion_tokens`                                | `output_tokens`                                | `output_tokens`                 |
//! | `reasoning`   | `completion_tokens_details.reasoning_tokens`       | `output_tokens_details.reasoning_tokens`       | — (thinking is in `output`)     |
//!
//! The three prompt figures are disjoint: [`Usage::prompt`] (`input + cache_read +
//! cache_write`) is every prompt token the provider processed, and is what budgets count — a
//! Claude Code turn with `input_tokens: 3, cache_read_input_tokens: 50000,
//! cache_creation_input_tokens: 1000` is 51,003 prompt tokens. `reasoning` is part of `output`
//! (every API bills it as output), shown on its own.

mod members;
mod reported;
mod usage;

use crate::json;
use serde::Deserialize;
use serde_json::Value;

pub use members::Members;
use reported::Reported;
pub use usage::Usage;

/// A client API, and the API an upstream endpoint is spoken to in (`api` in the config file;
/// provider presets set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI Chat Completions (and the other OpenAI routes: completions, embeddings, ...).
    Chat,
    /// OpenAI with the Responses API as well (`/responses`); takes chat requests unchanged too.
    Responses,
    /// Anthropic Messages (`/messages`): key in `x-api-key`, an `anthropic-version` header.
    Anthropic,
}

impl Api {
    /// Whether an endpoint speaking `self` takes requests of the client API `client` unchanged.
    pub fn speaks(self, client: Api) -> bool {
        match self {
            Api::Chat => client == Api::Chat,
            Api::Responses => matches!(client, Api::Chat | Api::Responses),
            Api::Anthropic => client == Api::Anthropic,
        }
    }

    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Anthropic => "anthropic",
        }
    }
}

/// What an answer's bytes hold: a JSON body, or the text of an event stream (told apart by
/// the first byte that is not white space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Sse,
}

impl Form {
    pub fn of(bytes: &[u8]) -> Form {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Form::Json,
            _ => Form::Sse,
        }
    }
}

/// A whole answer (a JSON body, or a recorded stream's text) read once: what the cache's
/// check, the meter, the store and translation each need from it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub form: Form,
    /// A JSON body, parsed (`None`: a stream, or a body that is not JSON).
    pub json: Option<Value>,
    /// The usage it reports (`None`: none).
    pub usage: Option<Usage>,
}

impl Answer {
    /// Reads an answer of `api`: a JSON body is parsed once; a stream's events are parsed
    /// only where they mention `usage`.
    pub fn read(api: Api, bytes: &[u8]) -> Answer {
        let form = Form::of(bytes);
        match form {
            Form::Json => {
                let json = json::from_slice::<Value>(bytes).ok();
                let usage = json.as_ref().and_then(|v| Usage::of_answer(api, v));
                Answer { form, json, usage }
            }
            Form::Sse => {
                let mut stream = StreamUsage::new(api);
                for data in lines(bytes).filter_map(data_payload) {
                    stream.observe_data(data);
                }
                Answer {
                    form,
                    json: None,
                    usage: stream.usage(),
                }
            }
        }
    }
}

impl Answer {
    /// What the meter needs of an answer that is neither stored nor translated: its usage. A
    /// JSON body's other members are skipped, not built (`json` stays `None`); the usage is
    /// [`Answer::read`]'s, except for a body that only `Value` refuses (invalid UTF-8 or a
    /// lone surrogate in a skipped string, a skipped number beyond `f64`, nesting past 128):
    /// its usage is read here, where `read` finds none. Checking those too cost more than the
    /// parse saved, most on non-ASCII answers (BENCHMARKS.md, "A direct client for
    /// plain-HTTP upstreams").
    pub fn read_usage(api: Api, bytes: &[u8]) -> Answer {
        #[derive(serde::Deserialize)]
        struct OnlyUsage {
            #[serde(default)]
            usage: Option<Reported>,
        }
        let form = Form::of(bytes);
        if form == Form::Sse {
            return Answer::read(api, bytes);
        }
        let usage = json::from_slice::<OnlyUsage>(bytes)
            .ok()
            .and_then(|o| o.usage)
            .map(|u| u.usage(api));
        Answer {
            form,
            json: None,
            usage,
        }
    }
}

/// The usage of a stream, event by event: chat's usage chunk (the last one wins: some
/// servers report running totals), the `response` of Responses' `response.completed` (or
/// `response.incomplete` / `response.failed`), Messages' `message_start` and the cumulative
/// counts of each `message_delta`.
#[derive(Debug, Clone, Copy)]
pub struct StreamUsage {
    api: Api,
    usage: Option<Usage>,
}

impl StreamUsage {
    pub fn new(api: Api) -> StreamUsage {
        StreamUsage { api, usage: None }
    }

    /// One event's JSON data.
    pub fn observe(&mut self, event: &Value) {
        match self.api {
            Api::Chat => {
                if let Some(u) = Usage::of_answer(Api::Chat, event) {
                    self.usage = Some(u);
                }
            }
            Api::Responses => {
                if let Some(u) = event
                    .get("response")
                    .and_then(|r| Usage::of_answer(Api::Responses, r))
                {
                    self.usage = Some(u);
                }
            }
            Api::Anthropic => {
                let u = match event.get("type").and_then(Value::as_str) {
                    Some("message_start") => event.pointer("/message/usage"),
                    Some("message_delta") => event.get("usage"),
                    _ => None,
                };
                if let Some(u) = u.filter(|u| u.is_object()) {
                    self.usage
                        .get_or_insert_with(Usage::default)
                        .messages_onto(u);
                }
            }
        }
    }

    /// One event's `data:` payload (parsed only when a `usage` in it is not `null`).
    pub fn observe_data(&mut self, data: &[u8]) {
        if has_non_null(data, &USAGE) {
            if let Ok(v) = json::from_slice::<Value>(data) {
                self.observe(&v);
            }
        }
    }

    /// What the events so far reported; `None` if none carried usage.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// A member name searched for in JSON text before (or instead of) parsing it: its quoted form
/// and a SIMD substring searcher for it (memchr's `memmem`), built once.
pub struct JsonKey {
    quoted_len: usize,
    finder: memchr::memmem::Finder<'static>,
}

impl JsonKey {
    pub fn new(key: &str) -> JsonKey {
        let quoted = format!("\"{key}\"");
        JsonKey {
            quoted_len: quoted.len(),
            finder: memchr::memmem::Finder::new(quoted.as_bytes()).into_owned(),
        }
    }
}

/// `usage`: the member of a chat chunk that carries the usage (`null` on all but one chunk
/// with `stream_options.include_usage`).
pub static USAGE: std::sync::LazyLock<JsonKey> = std::sync::LazyLock::new(|| JsonKey::new("usage"));

/// `finish_reason`: the member of a chat chunk's choice that ends it (`null` until then).
pub static FINISH_REASON: std::sync::LazyLock<JsonKey> =
    std::sync::LazyLock::new(|| JsonKey::new("finish_reason"));

/// Whether a member `"key"` of the JSON text `data` has a value other than `null`: a test
/// before parsing, so that a stream chunk whose `usage` and `finish_reason` are `null` (with
/// OpenAI, every chunk but the last) is not parsed at all. A `"key"` inside a string is escaped
/// (`\"key\"`) and never matches; a match not followed by `:` counts as a value (the caller
/// parses).
pub fn has_non_null(data: &[u8], key: &JsonKey) -> bool {
    let mut rest = data;
    while let Some(at) = key.finder.find(rest) {
        let after = rest.get(at + key.quoted_len..).unwrap_or_default();
        let after = after.trim_ascii_start();
        let Some(value) = after.strip_prefix(b":") else {
            return true;
        };
        let value = value.trim_ascii_start();
        if !value.starts_with(b"null") {
            return true;
        }
        rest = value;
    }
    false
}

/// The lines of `bytes` split at each `\n`, as `split` gives them (a last empty piece after
/// a final `\n`), found with memchr's search (`split` tests each byte through a closure: most
/// of a stream event's cost where each event is looked at per line).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(at) => {
                rest = r.get(at + 1..);
                r.get(..at)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The payload of an SSE `data:` line, trimmed; `None` for any other line.
pub fn data_payload(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(b"data:").map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests;
