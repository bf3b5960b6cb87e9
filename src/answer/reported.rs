//! [`Reported`]: the token members a `usage` object of any of the three APIs may carry, read in
//! one typed pass (from JSON text, without building a map per answer, or from a parsed
//! [`Value`]), so both readings give the same figures.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{Api, Usage};

/// One token member as sent: `None` absent, `Some(None)` `null`, `Some(Some(n))` a count (a
/// non-negative integer; a float some servers send is rounded; any other value counts 0;
/// at most [`MAX_COUNT`]).
type Member = Option<Option<u64>>;

/// The largest count a member is read as (2^40, a million times any real answer's tokens): a
/// broken or hostile upstream's `1e308` or `18446744073709551615` is held here, so that sums
/// of counts (a key's figures, Redis's signed 64-bit counters) stay far from overflowing.
pub const MAX_COUNT: u64 = 1 << 40;

/// The token members of a `usage` object (any API's; a member not an object's, or a value
/// that is not an object, is absent). A member named twice: the last one counts, as in a
/// parsed [`Value`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Reported {
    prompt_tokens: Member,
    completion_tokens: Member,
    /// DeepSeek's cached prompt tokens.
    prompt_cache_hit_tokens: Member,
    input_tokens: Member,
    output_tokens: Member,
    cache_read_input_tokens: Member,
    cache_creation_input_tokens: Member,
    prompt_tokens_details: Details,
    completion_tokens_details: Details,
    input_tokens_details: Details,
    output_tokens_details: Details,
    /// Anthropic's split of `cache_creation_input_tokens` by cache lifetime.
    cache_creation: Details,
    /// Anthropic's count of server tool calls (`web_search_requests`).
    server_tool_use: Details,
}

/// The members of a `*_tokens_details` (or `cache_creation`) object; `None` when it is absent or not an object.
#[derive(Debug, Clone, Copy, Default)]
struct Details(Option<DetailMembers>);

#[derive(Debug, Clone, Copy, Default)]
struct DetailMembers {
    cached_tokens: Member,
    reasoning_tokens: Member,
    ephemeral_1h_input_tokens: Member,
    web_search_requests: Member,
}

fn n(m: Member) -> u64 {
    m.flatten().unwrap_or(0)
}

impl Reported {
    /// The members of a parsed `usage` value.
    pub fn of_value(v: &Value) -> Reported {
        Reported::deserialize(v).unwrap_or_default()
    }

    /// The usage these members report in `api`.
    pub fn usage(&self, api: Api) -> Usage {
        match api {
            Api::Chat => self.chat(),
            Api::Responses => self.responses(),
            Api::Anthropic => {
                let mut usage = Usage::default();
                self.messages_onto(&mut usage);
                usage
            }
        }
    }

    /// A Chat Completions `usage` (also legacy completions and embeddings): `prompt_tokens`
    /// includes the cached tokens (DeepSeek names them `prompt_cache_hit_tokens`).
    pub(super) fn chat(&self) -> Usage {
        let prompt = n(self.prompt_tokens);
        let details = self.prompt_tokens_details.0.and_then(|d| d.cached_tokens);
        let cached = n(details.or(self.prompt_cache_hit_tokens)).min(prompt);
        Usage {
            input: prompt - cached,
            output: n(self.completion_tokens),
            cache_read: cached,
            cache_write: 0,
            cache_write_1h: 0,
            web_searches: 0,
            reasoning: n(self.completion_tokens_details.reasoning()),
        }
    }

    /// A Responses `usage`: `input_tokens` includes the cached tokens.
    fn responses(&self) -> Usage {
        let prompt = n(self.input_tokens);
        let cached = n(self.input_tokens_details.cached()).min(prompt);
        Usage {
            input: prompt - cached,
            output: n(self.output_tokens),
            cache_read: cached,
            cache_write: 0,
            cache_write_1h: 0,
            web_searches: 0,
            reasoning: n(self.output_tokens_details.reasoning()),
        }
    }

    /// An Anthropic Messages `usage` onto `usage`: `input_tokens` excludes cache reads and
    /// writes; the members it names (not `null`) replace those figures; the one-hour writes of
    /// `cache_creation` are at most all the writes; `server_tool_use` counts web searches.
    pub(super) fn messages_onto(&self, usage: &mut Usage) {
        for (field, member) in [
            (&mut usage.input, self.input_tokens),
            (&mut usage.output, self.output_tokens),
            (&mut usage.cache_read, self.cache_read_input_tokens),
            (&mut usage.cache_write, self.cache_creation_input_tokens),
        ] {
            if let Some(Some(count)) = member {
                *field = count;
            }
        }
        if let Some(Some(count)) = self
            .cache_creation
            .0
            .and_then(|d| d.ephemeral_1h_input_tokens)
        {
            usage.cache_write_1h = count;
        }
        usage.cache_write_1h = usage.cache_write_1h.min(usage.cache_write);
        if let Some(Some(count)) = self.server_tool_use.0.and_then(|d| d.web_search_requests) {
            usage.web_searches = count;
        }
    }
}

impl Details {
    fn cached(&self) -> Member {
        self.0.and_then(|d| d.cached_tokens)
    }

    fn reasoning(&self) -> Member {
        self.0.and_then(|d| d.reasoning_tokens)
    }
}

/// Drains a sequence's elements (a value that counts as nothing here).
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visits of the values that neither a count nor an object is made of: each
/// gives `$value` (a sequence is read to its end first).
macro_rules! other_values {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($value)
        }
    };
}

/// Implements the visits of every value but an object: each gives `$value`.
macro_rules! not_an_object {
    ($value:expr) => {
        other_values!($value);
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// A member's name, borrowed where the text has no escapes.
struct Name(Option<Field>);

#[derive(Clone, Copy)]
enum Field {
    PromptTokens,
    CompletionTokens,
    PromptCacheHitTokens,
    InputTokens,
    OutputTokens,
    CacheReadInputTokens,
    CacheCreationInputTokens,
    PromptTokensDetails,
    CompletionTokensDetails,
    InputTokensDetails,
    OutputTokensDetails,
    CachedTokens,
    ReasoningTokens,
    CacheCreation,
    Ephemeral1hInputTokens,
    ServerToolUse,
    WebSearchRequests,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                Ok(Name(Some(match name {
                    "prompt_tokens" => Field::PromptTokens,
                    "completion_tokens" => Field::CompletionTokens,
                    "prompt_cache_hit_tokens" => Field::PromptCacheHitTokens,
                    "input_tokens" => Field::InputTokens,
                    "output_tokens" => Field::OutputTokens,
                    "cache_read_input_tokens" => Field::CacheReadInputTokens,
                    "cache_creation_input_tokens" => Field::CacheCreationInputTokens,
                    "prompt_tokens_details" => Field::PromptTokensDetails,
                    "completion_tokens_details" => Field::CompletionTokensDetails,
                    "input_tokens_details" => Field::InputTokensDetails,
                    "output_tokens_details" => Field::OutputTokensDetails,
                    "cached_tokens" => Field::CachedTokens,
                    "reasoning_tokens" => Field::ReasoningTokens,
                    "cache_creation" => Field::CacheCreation,
                    "ephemeral_1h_input_tokens" => Field::Ephemeral1hInputTokens,
                    "server_tool_use" => Field::ServerToolUse,
                    "web_search_requests" => Field::WebSearchRequests,
                    _ => return Ok(Name(None)),
                })))
            }
        }
        d.deserialize_str(V)
    }
}

/// A token member's value.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token count")
            }
            other_values!(Count(Some(0)));
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v.min(MAX_COUNT))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                let v = if v >= 0.0 { v.round() as u64 } else { 0 };
                Ok(Count(Some(v.min(MAX_COUNT))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(Some(0)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a member's value goes.
enum Slot<'a> {
    Count(&'a mut Member),
    Details(&'a mut Details),
    Skip,
}

impl Reported {
    fn slot(&mut self, field: Option<Field>) -> Slot<'_> {
        match field {
            Some(Field::PromptTokens) => Slot::Count(&mut self.prompt_tokens),
            Some(Field::CompletionTokens) => Slot::Count(&mut self.completion_tokens),
            Some(Field::PromptCacheHitTokens) => Slot::Count(&mut self.prompt_cache_hit_tokens),
            Some(Field::InputTokens) => Slot::Count(&mut self.input_tokens),
            Some(Field::OutputTokens) => Slot::Count(&mut self.output_tokens),
            Some(Field::CacheReadInputTokens) => Slot::Count(&mut self.cache_read_input_tokens),
            Some(Field::CacheCreationInputTokens) => {
                Slot::Count(&mut self.cache_creation_input_tokens)
            }
            Some(Field::PromptTokensDetails) => Slot::Details(&mut self.prompt_tokens_details),
            Some(Field::CompletionTokensDetails) => {
                Slot::Details(&mut self.completion_tokens_details)
            }
            Some(Field::InputTokensDetails) => Slot::Details(&mut self.input_tokens_details),
            Some(Field::OutputTokensDetails) => Slot::Details(&mut self.output_tokens_details),
            Some(Field::CacheCreation) => Slot::Details(&mut self.cache_creation),
            Some(Field::ServerToolUse) => Slot::Details(&mut self.server_tool_use),
            Some(
                Field::CachedTokens
                | Field::ReasoningTokens
                | Field::Ephemeral1hInputTokens
                | Field::WebSearchRequests,
            )
            | None => Slot::Skip,
        }
    }
}

impl DetailMembers {
    fn slot(&mut self, field: Option<Field>) -> Slot<'_> {
        match field {
            Some(Field::CachedTokens) => Slot::Count(&mut self.cached_tokens),
            Some(Field::ReasoningTokens) => Slot::Count(&mut self.reasoning_tokens),
            Some(Field::Ephemeral1hInputTokens) => Slot::Count(&mut self.ephemeral_1h_input_tokens),
            Some(Field::WebSearchRequests) => Slot::Count(&mut self.web_search_requests),
            _ => Slot::Skip,
        }
    }
}

/// Reads an object's members into `into`, each where `slot` says (a member named twice: the
/// last one counts).
fn read_members<'de, A: MapAccess<'de>, T>(
    mut map: A,
    into: &mut T,
    slot: fn(&mut T, Option<Field>) -> Slot<'_>,
) -> Result<(), A::Error> {
    while let Some(Name(field)) = map.next_key()? {
        match slot(into, field) {
            Slot::Count(member) => *member = Some(map.next_value::<Count>()?.0),
            Slot::Details(details) => *details = map.next_value()?,
            Slot::Skip => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Details {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Details, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Details;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a details object")
            }
            not_an_object!(Details(None));
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Details, A::Error> {
                let mut members = DetailMembers::default();
                read_members(map, &mut members, DetailMembers::slot)?;
                Ok(Details(Some(members)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Reported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reported, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Reported;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a usage object")
            }
            not_an_object!(Reported::default());
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Reported, A::Error> {
                let mut r = Reported::default();
                read_members(map, &mut r, Reported::slot)?;
                Ok(r)
            }
        }
        d.deserialize_any(V)
    }
}
