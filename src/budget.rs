//! Money and allowances: the `prices` table (cost of a call), `budget` per key (tokens and USD
//! per UTC day and month) and model allow-lists.
//!
//! Amounts are kept as whole micro-dollars (`u64`), so counters add exactly in a file or in
//! Redis (`HINCRBY`). A price of 1 USD per million tokens is one micro-dollar per token.

use serde::{Deserialize, Serialize};

use crate::answer::Usage;
use crate::error::ApiError;
use crate::glob::Glob;
use crate::usage::KeyUsage;
use crate::utc::{next_day, next_month, rfc3339};

/// One entry of `prices` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    match_model: String,
    /// USD per million prompt (input) tokens.
    input_per_million: f64,
    /// USD per million completion (output) tokens.
    output_per_million: f64,
    /// USD per million prompt tokens read from the provider's prompt cache (absent: the
    /// input rate).
    #[serde(default)]
    cache_read_per_million: Option<f64>,
    /// USD per million prompt tokens written to the provider's prompt cache (absent: the
    /// input rate).
    #[serde(default)]
    cache_write_per_million: Option<f64>,
    /// USD per million prompt tokens written to a one-hour cache entry (Anthropic: 2× input;
    /// absent: the cache write rate).
    #[serde(default)]
    cache_write_1h_per_million: Option<f64>,
    /// USD per thousand web searches the provider ran (Anthropic: 10; absent: 0).
    #[serde(default)]
    web_search_per_thousand: Option<f64>,
}

/// A checked price: the first entry whose glob matches the model applies. Rates in USD per
/// million tokens (so micro-dollars per token).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub match_model: Glob,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Cache reads; the input rate when the config names none (an upper bound).
    pub cache_read_per_million: f64,
    /// Cache writes; the input rate when the config names none (an upper bound for OpenAI,
    /// whose caching is free to write; Anthropic charges 1.25× input).
    pub cache_write_per_million: f64,
    /// One-hour cache writes (Anthropic charges 2× input); the cache write rate when the
    /// config names none.
    pub cache_write_1h_per_million: f64,
    /// Web searches, per thousand (0 when the config names none).
    pub web_search_per_thousand: f64,
}

/// Checks `prices`.
pub fn prices_from_raw(raw: Option<Vec<RawPrice>>) -> Result<Vec<Price>, String> {
    let mut out = Vec::new();
    for (i, p) in raw.unwrap_or_default().into_iter().enumerate() {
        let match_model =
            Glob::new(p.match_model).map_err(|e| format!("prices[{i}].match_model is {e}"))?;
        let cache_read = p.cache_read_per_million.unwrap_or(p.input_per_million);
        let cache_write = p.cache_write_per_million.unwrap_or(p.input_per_million);
        let cache_write_1h = p.cache_write_1h_per_million.unwrap_or(cache_write);
        for (field, v) in [
            ("input_per_million", p.input_per_million),
            ("output_per_million", p.output_per_million),
            ("cache_read_per_million", cache_read),
            ("cache_write_per_million", cache_write),
            ("cache_write_1h_per_million", cache_write_1h),
            (
                "web_search_per_thousand",
                p.web_search_per_thousand.unwrap_or(0.0),
            ),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "prices[{i}].{field} must be a non-negative number of USD, got {v}"
                ));
            }
        }
        out.push(Price {
            match_model,
            input_per_million: p.input_per_million,
            output_per_million: p.output_per_million,
            cache_read_per_million: cache_read,
            cache_write_per_million: cache_write,
            cache_write_1h_per_million: cache_write_1h,
            web_search_per_thousand: p.web_search_per_thousand.unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// The cost of `usage` on `model` in micro-dollars (0 without a price): input, cache reads,
/// cache writes (five-minute and one-hour apart) and output each at their rate (reasoning is
/// output), and the provider's web searches at theirs.
pub fn cost_micros(prices: &[Price], model: &str, usage: &Usage) -> u64 {
    let Some(p) = prices.iter().find(|p| p.match_model.matches(model)) else {
        return 0;
    };
    let hour = usage.cache_write_1h.min(usage.cache_write);
    let micros = usage.input as f64 * p.input_per_million
        + usage.cache_read as f64 * p.cache_read_per_million
        + (usage.cache_write - hour) as f64 * p.cache_write_per_million
        + hour as f64 * p.cache_write_1h_per_million
        + usage.output as f64 * p.output_per_million
        // USD per thousand searches is a thousand micro-dollars per search per USD
        + usage.web_searches as f64 * p.web_search_per_thousand * 1000.0;
    micros.round() as u64
}

/// `budget` as written (per key or the default).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    tokens_per_day: Option<u64>,
    tokens_per_month: Option<u64>,
    usd_per_day: Option<f64>,
    usd_per_month: Option<f64>,
}

/// A checked budget; `None` means no cap. Money in micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_usd_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_usd_per_month: Option<u64>,
}

impl Budget {
    /// Checks a raw budget; `what` names it in errors (e.g. `budget`).
    pub fn from_raw(raw: Option<RawBudget>, what: &str) -> Result<Budget, String> {
        let raw = raw.unwrap_or_default();
        for (field, v) in [
            ("tokens_per_day", raw.tokens_per_day),
            ("tokens_per_month", raw.tokens_per_month),
        ] {
            if v == Some(0) {
                return Err(format!(
                    "`{what}.{field}` must be positive; leave it out for no cap"
                ));
            }
        }
        let usd = |field: &str, v: Option<f64>| {
            match v {
            None => Ok(None),
            Some(v) if v.is_finite() && v > 0.0 => Ok(Some((v * 1e6).round() as u64)),
            Some(v) => Err(format!(
                "`{what}.{field}` must be a positive number of USD, got {v}; leave it out for no cap"
            )),
        }
        };
        Ok(Budget {
            tokens_per_day: raw.tokens_per_day,
            tokens_per_month: raw.tokens_per_month,
            micro_usd_per_day: usd("usd_per_day", raw.usd_per_day)?,
            micro_usd_per_month: usd("usd_per_month", raw.usd_per_month)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Budget::default()
    }

    /// This budget, with `default` filling the caps it leaves open.
    pub fn or(self, default: Budget) -> Budget {
        Budget {
            tokens_per_day: self.tokens_per_day.or(default.tokens_per_day),
            tokens_per_month: self.tokens_per_month.or(default.tokens_per_month),
            micro_usd_per_day: self.micro_usd_per_day.or(default.micro_usd_per_day),
            micro_usd_per_month: self.micro_usd_per_month.or(default.micro_usd_per_month),
        }
    }

    /// The budget as the admin API shows it (USD as numbers).
    pub fn describe(&self) -> serde_json::Value {
        let usd = |m: Option<u64>| m.map(|m| m as f64 / 1e6);
        serde_json::json!({
            "tokens_per_day": self.tokens_per_day,
            "tokens_per_month": self.tokens_per_month,
            "usd_per_day": usd(self.micro_usd_per_day),
            "usd_per_month": usd(self.micro_usd_per_month),
        })
    }

    /// What is left of each cap for `day` and `month` (the key's figures for the current UTC
    /// day and month), counted as [`Budget::check`] counts; `null` for a cap not set.
    pub fn left(&self, day: &KeyUsage, month: &KeyUsage) -> serde_json::Value {
        let tokens = |u: &KeyUsage| u.prompt_tokens + u.completion_tokens;
        let left = |cap: Option<u64>, used: u64| cap.map(|c| c.saturating_sub(used));
        let usd = |m: Option<u64>| m.map(|m| m as f64 / 1e6);
        serde_json::json!({
            "tokens_per_day": left(self.tokens_per_day, tokens(day)),
            "tokens_per_month": left(self.tokens_per_month, tokens(month)),
            "usd_per_day": usd(left(self.micro_usd_per_day, day.cost_micro_usd)),
            "usd_per_month": usd(left(self.micro_usd_per_month, month.cost_micro_usd)),
        })
    }

    /// `Err` (a 429 `budget_exceeded` and its `Retry-After`) when `day` or `month` (the key's
    /// figures for the current UTC day and month) have reached a cap.
    pub fn check(
        &self,
        key_id: &str,
        day: &KeyUsage,
        month: &KeyUsage,
        now: u64,
    ) -> Result<(), Exceeded> {
        let tokens = KeyUsage::budget_tokens;
        let caps = [
            (
                self.tokens_per_day,
                tokens(day),
                "tokens_per_day",
                Period::Day,
            ),
            (
                self.micro_usd_per_day,
                day.cost_micro_usd,
                "usd_per_day",
                Period::Day,
            ),
            (
                self.tokens_per_month,
                tokens(month),
                "tokens_per_month",
                Period::Month,
            ),
            (
                self.micro_usd_per_month,
                month.cost_micro_usd,
                "usd_per_month",
                Period::Month,
            ),
        ];
        // the month cap outlasts the day cap: report the later reset when both bind
        let mut hit = None;
        for (cap, used, name, period) in caps {
            if cap.is_some_and(|c| used >= c) {
                hit = Some((name, period));
            }
        }
        let Some((name, period)) = hit else {
            return Ok(());
        };
        let reset = match period {
            Period::Day => next_day(now),
            Period::Month => next_month(now),
        };
        Err(Exceeded {
            key_id: key_id.to_string(),
            cap: name,
            reset_at: reset,
            retry_after: reset.saturating_sub(now).max(1),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Period {
    Day,
    Month,
}

/// A refused request's budget: which cap, and when it resets (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub key_id: String,
    pub cap: &'static str,
    pub reset_at: u64,
    pub retry_after: u64,
}

impl Exceeded {
    pub fn error(&self) -> ApiError {
        ApiError::new(
            429,
            "insufficient_quota",
            "budget_exceeded",
            format!(
                "key `{}` has used its budget (`{}`); it resets at {} (unix {}), in {} s; ask \
                 the relay's admin to raise it",
                self.key_id,
                self.cap,
                rfc3339(self.reset_at),
                self.reset_at,
                self.retry_after
            ),
        )
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("Retry-After".to_string(), self.retry_after.to_string()),
            ("X-Budget-Reset".to_string(), rfc3339(self.reset_at)),
        ]
    }
}

/// Checks a model allow-list (globs; empty = every model).
pub fn models_from_raw(raw: Option<Vec<String>>, what: &str) -> Result<Vec<Glob>, String> {
    crate::glob::list(raw, what)
}

/// True if `model` may be called under the allow-list `allowed` (empty = anything).
pub fn model_allowed(allowed: &[Glob], model: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|g| g.matches(model))
}

/// The 403 for a model outside a key's allow-list.
pub fn not_allowed(model: &str) -> ApiError {
    ApiError::new(
        403,
        "invalid_request_error",
        "model_not_allowed",
        format!(
            "this API key may not call model `{model}`; GET /v1/models lists the models it may \
             call"
        ),
    )
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
