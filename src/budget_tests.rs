//! Unit tests of `budget.rs`.

use super::*;

#[test]
fn cost_and_caps() {
    let price = |m: &str, read: Option<f64>, write: Option<f64>| RawPrice {
        match_model: m.into(),
        input_per_million: 2.5,
        output_per_million: 10.0,
        cache_read_per_million: read,
        cache_write_per_million: write,
        cache_write_1h_per_million: None,
        web_search_per_thousand: None,
    };
    let prices = prices_from_raw(Some(vec![
        price("claude*", Some(0.25), Some(3.125)),
        price("gpt-4o*", None, None),
    ]))
    .unwrap();
    let used = |input, cache_read, cache_write, output| {
        Usage::of_tokens(input, output, cache_read, cache_write, 0)
    };
    assert_eq!(
        cost_micros(&prices, "gpt-4o-mini", &used(1000, 0, 0, 100)),
        3500
    );
    assert_eq!(cost_micros(&prices, "llama3", &used(1000, 0, 0, 100)), 0);
    // cache rates where given, else the input rate
    let claude_code = used(3, 50_000, 1_000, 100);
    assert_eq!(
        cost_micros(&prices, "claude-sonnet", &claude_code),
        (3.0 * 2.5 + 50_000.0 * 0.25 + 1_000.0 * 3.125 + 1000.0_f64).round() as u64
    );
    assert_eq!(
        cost_micros(&prices, "gpt-4o", &claude_code),
        ((3.0 + 50_000.0 + 1_000.0) * 2.5 + 1000.0_f64).round() as u64
    );
    assert!(prices_from_raw(Some(vec![price("x", Some(-1.0), None)]))
        .unwrap_err()
        .contains("cache_read_per_million"));
    // one-hour cache writes at their own rate, else at the cache write rate
    let mut opus = price("claude-opus*", Some(0.5), Some(6.25));
    opus.cache_write_1h_per_million = Some(10.0);
    let prices =
        prices_from_raw(Some(vec![opus, price("claude*", Some(0.25), Some(3.125))])).unwrap();
    let hour = Usage {
        cache_write_1h: 600,
        ..used(3, 0, 1_000, 10)
    };
    assert_eq!(
        cost_micros(&prices, "claude-opus-4-5", &hour),
        (3.0 * 2.5 + 400.0 * 6.25 + 600.0 * 10.0 + 100.0_f64).round() as u64
    );
    assert_eq!(
        cost_micros(&prices, "claude-sonnet", &hour),
        (3.0 * 2.5 + 1_000.0 * 3.125 + 100.0_f64).round() as u64
    );
    // web searches at USD 10 a thousand: a cent each
    let mut searching = price("claude*", None, None);
    searching.web_search_per_thousand = Some(10.0);
    let prices = prices_from_raw(Some(vec![searching])).unwrap();
    let searched = Usage {
        web_searches: 3,
        ..used(0, 0, 0, 0)
    };
    assert_eq!(cost_micros(&prices, "claude-sonnet", &searched), 30_000);
    let mut bad = price("x", None, None);
    bad.cache_write_1h_per_million = Some(f64::NAN);
    assert!(prices_from_raw(Some(vec![bad]))
        .unwrap_err()
        .contains("cache_write_1h_per_million"));
    let raw = RawBudget {
        tokens_per_day: Some(100),
        usd_per_month: Some(0.01),
        ..RawBudget::default()
    };
    let b = Budget::from_raw(Some(raw), "budget").unwrap();
    let used = |t, c| KeyUsage {
        prompt_tokens: t,
        cost_micro_usd: c,
        ..KeyUsage::default()
    };
    assert!(b.check("k", &used(99, 0), &used(99, 0), 0).is_ok());
    let e = b.check("k", &used(100, 0), &used(100, 0), 10).unwrap_err();
    assert_eq!(
        (e.cap, e.reset_at, e.retry_after),
        ("tokens_per_day", 86_400, 86_390)
    );
    let e = b.check("k", &used(0, 0), &used(0, 10_000), 0).unwrap_err();
    assert_eq!(e.cap, "usd_per_month");
    assert!(Budget::from_raw(
        Some(RawBudget {
            usd_per_day: Some(-1.0),
            ..RawBudget::default()
        }),
        "budget"
    )
    .is_err());
}
