//! The one [`Usage`] type: the tokens of one answer, from a `usage` object of any of the three
//! APIs (read by [`Reported`]).

use serde_json::Value;

use super::reported::Reported;
use super::Api;

/// The tokens of one answer. The prompt figures are disjoint (`input` holds neither cache
/// reads nor writes); `reasoning` is the part of `output` the model spent thinking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens neither read from nor written to the provider's prompt cache.
    pub input: u64,
    /// Answer tokens, reasoning included.
    pub output: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cache_read: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic's cache creation).
    pub cache_write: u64,
    /// Of `cache_write`, written to a one-hour cache entry (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`), which costs more than a five-minute one.
    pub cache_write_1h: u64,
    /// Web searches the provider ran for the answer (Anthropic's
    /// `server_tool_use.web_search_requests`), billed per search on top of the tokens.
    pub web_searches: u64,
    /// Of `output`, the reasoning (thinking) tokens, where the API reports them.
    pub reasoning: u64,
}

impl Usage {
    /// Every prompt token the provider processed: `input + cache_read + cache_write` (what
    /// budgets and the per-key `prompt_tokens` count).
    pub fn prompt(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Prompt plus output tokens.
    pub fn total(&self) -> u64 {
        self.prompt().saturating_add(self.output)
    }

    /// The `usage` object of an answer or event of `api`.
    pub fn of(api: Api, usage: &Value) -> Usage {
        Reported::of_value(usage).usage(api)
    }

    /// A Chat Completions `usage` (also legacy completions and embeddings): `prompt_tokens`
    /// includes the cached tokens.
    pub fn chat(u: &Value) -> Usage {
        Reported::of_value(u).chat()
    }

    /// An Anthropic Messages `usage`: `input_tokens` excludes cache reads and writes.
    pub fn messages(u: &Value) -> Usage {
        let mut usage = Usage::default();
        usage.messages_onto(u);
        usage
    }

    /// Sets the figures a Messages `usage` names, keeping the others (a `message_delta`'s
    /// counts are cumulative and override those of `message_start`; the ones it leaves out
    /// stand).
    pub fn messages_onto(&mut self, u: &Value) {
        Reported::of_value(u).messages_onto(self);
    }

    /// The usage that the text of a `usage` member (as [`super::Members`] takes it) reports
    /// in `api`; `None` for `null` or text that is not JSON.
    pub fn of_text(api: Api, raw: &[u8]) -> Option<Usage> {
        if raw == b"null" {
            return None;
        }
        crate::json::from_slice::<Reported>(raw)
            .ok()
            .map(|r| r.usage(api))
    }

    /// The usage of a whole JSON answer of `api`; `None` when it reports none.
    pub fn of_answer(api: Api, answer: &Value) -> Option<Usage> {
        answer
            .get("usage")
            .filter(|u| !u.is_null())
            .map(|u| Usage::of(api, u))
    }
}

#[cfg(test)]
impl Usage {
    /// A usage of these tokens and no one-hour cache writes or web searches (tests).
    pub fn of_tokens(
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
        reasoning: u64,
    ) -> Usage {
        Usage {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h: 0,
            web_searches: 0,
            reasoning,
        }
    }
}
