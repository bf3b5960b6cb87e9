//! Translation between the APIs clients speak and the Chat Completions API an endpoint speaks.
//!
//! A client may speak the Anthropic Messages API or the OpenAI Responses API to an endpoint
//! that speaks only Chat Completions. This module turns the client's request into a chat
//! request ([`to_chat`]), the chat answer back into the client's answer (`from_chat`), a chat
//! error into the client's error shape ([`error_from_chat`]), and a chat stream into the
//! client's event stream one upstream event at a time ([`Stream`], which `sse::relay` drives).
//! The other direction, [`Dialect::Chat`]: a chat client on a model only an `anthropic`
//! endpoint serves gets a Messages request sent and the Messages answer, error and stream back
//! as Chat Completions (`chat_messages`, `messages_answer`, `messages_stream`). Everything here is pure:
//! JSON in, JSON or SSE bytes out; `routes` decides when to translate. README's "Translation"
//! table lists every field and what it becomes; `table_tests` walks that table as data.

mod anthropic_answer;
mod anthropic_chat;
mod anthropic_stream;
mod chat_blocks;
mod chat_messages;
mod chunk;
mod effort;
mod messages_answer;
mod messages_stream;
mod order;
mod responses_answer;
mod responses_chat;
mod responses_events;
mod responses_replay;
mod responses_stream;
mod stream;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod table_tests;
mod text_chunk;
mod tool_results;

use serde_json::{json, Map, Value};

use crate::answer::Usage;

use chunk::{data_event, json_str, named_event, object, split_chunk, Piece};
pub use responses_replay::replay as replay_response;
pub use stream::Stream;
use stream::StreamState;

/// Where a translated Messages request keeps its `thinking.budget_tokens` next to the
/// `reasoning_effort` it implies: part of the request (and of its cache key), but sent upstream
/// only as DashScope's `thinking_budget` to an endpoint whose `thinking` is `enable_thinking`,
/// and to no other (`upstream::thinking` takes it out at send time).
pub const THINKING_BUDGET: &str = "relay_thinking_budget";

/// The Responses field a chat field of a pivoted request (Responses → Chat → Messages) comes
/// from: the second step names chat fields, the client wrote Responses ones. A message path
/// is the `input` it was made of (its indices differ: `instructions` is message 0).
pub fn pivot_field(chat_field: &str) -> String {
    let renamed = [
        ("response_format", "text.format"),
        ("max_tokens", "max_output_tokens"),
        ("reasoning_effort", "reasoning.effort"),
        ("messages", "input"),
    ];
    for (chat, responses) in renamed {
        if chat_field == chat
            || chat_field
                .strip_prefix(chat)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
        {
            return responses.to_string();
        }
    }
    chat_field.to_string()
}

/// A field's value in an error message: quoted, or `no value` when absent.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "no value".to_string(), |v| format!("{v:?}"))
}

/// The API a client speaks when its request is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/chat/completions` on a model only an `anthropic` endpoint serves: the
    /// request goes upstream as a Messages request (`to_messages`), and the Messages answer
    /// comes back as a chat completion.
    Chat,
}

impl Dialect {
    /// The API the translated request is sent in.
    pub fn target(self) -> &'static str {
        match self {
            Dialect::Chat => "Anthropic Messages",
            Dialect::Anthropic | Dialect::Responses => "Chat Completions",
        }
    }
}

/// A request field the target API cannot express: answered 400, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    /// The field as the client wrote it, e.g. `previous_response_id` or `tools[2].type`.
    pub field: String,
    /// Why, and what to do instead.
    pub why: String,
}

impl Untranslatable {
    fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        Untranslatable {
            field: field.into(),
            why: why.into(),
        }
    }

    /// The message of the 400 answer, for a request translated from `dialect`.
    pub fn message(&self, dialect: Dialect) -> String {
        format!(
            "`{}` cannot be translated for an endpoint that speaks {}: {}",
            self.field,
            dialect.target(),
            self.why
        )
    }
}

/// The request sent upstream for a client's request: a chat request (`model` kept; `stream`
/// and, when streaming, `stream_options.include_usage` set so the translated stream can report
/// usage), or for [`Dialect::Chat`] a Messages request.
pub fn to_chat(
    dialect: Dialect,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Untranslatable> {
    let mut chat = match dialect {
        Dialect::Anthropic => anthropic_chat::request(body)?,
        Dialect::Responses => responses_chat::request(body)?,
        Dialect::Chat => return chat_messages::request(body),
    };
    if chat.get("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(chat)
}

/// A translated request: the client's API, and what its answer repeats of the request.
#[derive(Debug, Clone)]
pub struct Translation {
    pub dialect: Dialect,
    /// The request fields a Responses `response` object repeats (empty for Messages).
    echo: Map<String, Value>,
    /// A chat client asked for the usage chunk (`stream_options.include_usage`).
    include_usage: bool,
    /// The request went on from Chat to Messages (a Responses client on a model only
    /// `anthropic` endpoints serve): answers come back Messages → Chat → the client's API.
    pub pivot: bool,
    /// The id base of a Responses answer the relay stores (`stored.rs`): fresh for each
    /// answer, cache hits included. `None`: ids follow the chat completion's id.
    pub base: Option<String>,
}

impl Translation {
    /// For the client's request `body` (as the client sent it, before [`to_chat`]).
    pub fn new(dialect: Dialect, body: &Map<String, Value>) -> Translation {
        let echo = match dialect {
            Dialect::Anthropic | Dialect::Chat => Map::new(),
            Dialect::Responses => responses_answer::echo(body),
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            == Some(&Value::Bool(true));
        Translation {
            dialect,
            echo,
            include_usage,
            pivot: false,
            base: None,
        }
    }

    /// Makes a Responses answer repeat `key` (`previous_response_id`, which the relay resolves
    /// before translating).
    pub fn repeat(&mut self, key: &str, value: Value) {
        if self.dialect == Dialect::Responses {
            self.echo.insert(key.to_string(), value);
        }
    }

    /// The client's answer for the upstream's answer (a `chat.completion` object; an Anthropic
    /// `message` for [`Dialect::Chat`]).
    pub fn answer(&self, chat: &Value) -> Value {
        let pivoted;
        let chat = if self.pivot {
            pivoted = messages_answer::answer(chat);
            &pivoted
        } else {
            chat
        };
        match self.dialect {
            Dialect::Anthropic => anthropic_answer::answer(chat),
            Dialect::Chat => messages_answer::answer(chat),
            Dialect::Responses => responses_answer::answer(chat, &self.echo, self.base.as_deref()),
        }
    }

    /// The route of the upstream's answers (what the cache and `stored` read them as).
    pub fn upstream_route(&self) -> &'static str {
        if self.pivot || self.dialect == Dialect::Chat {
            "/messages"
        } else {
            "/chat/completions"
        }
    }

    /// The client's error body for an upstream error (status and body as received).
    pub fn error(&self, status: u16, body: &[u8]) -> Vec<u8> {
        if !self.pivot {
            return error_from_chat(self.dialect, status, body);
        }
        // an Anthropic error: in the OpenAI shape a Responses client reads
        error_from_chat(Dialect::Chat, status, body)
    }

    /// The translator of the chat stream that answers the request.
    pub fn stream(&self) -> Stream {
        let mut stream = Stream::new(self.dialect);
        if self.pivot {
            let mut inner = Stream::new(Dialect::Chat);
            if let StreamState::Chat(s) = &mut inner.state {
                s.include_usage = true;
            }
            stream.pivot = Some(Box::new(inner));
        }
        match &mut stream.state {
            StreamState::Responses(s) => {
                s.echo = self.echo.clone();
                s.base = self.base.clone();
            }
            StreamState::Chat(s) => s.include_usage = self.include_usage,
            StreamState::Anthropic(_) => {}
        }
        stream
    }
}

/// The client's answer for a chat completion, for a request that set none of the fields a
/// Responses answer repeats.
#[cfg(test)]
pub fn from_chat(dialect: Dialect, chat: &Value) -> Value {
    Translation::new(dialect, &Map::new()).answer(chat)
}

/// The client's error body for an upstream error (status and body as received; an Anthropic
/// error for [`Dialect::Chat`]).
pub fn error_from_chat(dialect: Dialect, status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Value = crate::json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(2000).collect());
    match dialect {
        Dialect::Anthropic => crate::api::messages::error_body(status, &message),
        // an Anthropic error (`{"type":"error","error":{"type","message"}}`) in OpenAI's shape
        Dialect::Chat => json!({"error": {
            "message": message,
            "type": parsed.pointer("/error/type").cloned().unwrap_or(json!("upstream_error")),
            "code": Value::Null,
        }})
        .to_string()
        .into_bytes(),
        // Responses errors have the OpenAI shape the upstream already used.
        Dialect::Responses if parsed.pointer("/error/message").is_some() => body.to_vec(),
        Dialect::Responses => json!({"error": {
            "message": message, "type": "upstream_error", "code": Value::Null
        }})
        .to_string()
        .into_bytes(),
    }
}

/// The error for a top-level request field a translator does not know: the reason from
/// `refused` when it names the field, else that Chat Completions has no such field.
/// A field, the test its JSON value must pass, and what it must be (for the message).
type FieldType = (&'static str, fn(&Value) -> bool, &'static str);

/// Refuses (400, naming the field) a field whose value is not of its [`FieldType`].
fn check_types(body: &Map<String, Value>, types: &[FieldType]) -> Result<(), Untranslatable> {
    for (field, ok, what) in types {
        if body.get(*field).is_some_and(|v| !ok(v)) {
            return Err(Untranslatable::new(*field, format!("it must be {what}")));
        }
    }
    Ok(())
}

fn unknown_field(key: &str, refused: &[(&str, &str)]) -> Untranslatable {
    let why = refused
        .iter()
        .find(|(name, _)| *name == key)
        .map_or("Chat Completions has no such field", |(_, why)| *why);
    Untranslatable::new(key, why)
}

/// Text of a chat message `content` (a string or an array of text parts).
fn chat_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// What a chat answer's message holds, in the order the client's answer gives it.
struct Answered<'a> {
    /// `reasoning_content` (DeepSeek, Qwen, vLLM), if not empty.
    reasoning: Option<&'a str>,
    text: String,
    /// Each tool call's `id`, `name` and `arguments`.
    calls: Vec<(Value, Value, &'a str)>,
}

fn answered(message: &Value) -> Answered<'_> {
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| {
            (
                call.get("id").cloned().unwrap_or(json!("")),
                call.pointer("/function/name").cloned().unwrap_or(json!("")),
                call.pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
        })
        .collect();
    Answered {
        reasoning: message
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty()),
        text: chat_text(message.get("content")),
        calls,
    }
}

/// The first choice's message, finish reason and the usage of a chat completion.
fn first_choice(chat: &Value) -> (&Value, Option<&str>) {
    let choice = chat.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    (message, finish)
}

/// The usage of a chat `usage` object (none: zeros).
fn chat_usage(usage: Option<&Value>) -> Usage {
    usage.map(Usage::chat).unwrap_or_default()
}
