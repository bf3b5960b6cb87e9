//! Unit tests of the GenAI span attributes (`genai.rs`).

use super::*;
use serde_json::json;

fn get(a: &Attributes, k: &str) -> Option<Value> {
    a.get(k).cloned()
}

#[test]
fn answers_of_each_api_give_model_and_finish_reasons() {
    let mut a = Attributes::default();
    let chat = json!({"id": "c1", "model": "m-1", "choices": [{"finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}});
    answer(&mut a, chat.to_string().as_bytes(), false);
    assert_eq!(get(&a, "gen_ai.response.model"), Some("m-1".into()));
    assert_eq!(
        get(&a, "gen_ai.response.finish_reasons"),
        Some(Value::Strs(vec!["stop".into()]))
    );
    assert_eq!(get(&a, "gen_ai.output.messages"), None);
    assert_eq!(
        get(&a, "gen_ai.usage.cache_read.input_tokens"),
        None,
        "usage is not read here"
    );

    let mut a = Attributes::default();
    let messages = json!({"model": "claude", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "hi sk-secret-123"}],
        "usage": {"cache_read_input_tokens": 7, "cache_creation_input_tokens": 2}});
    answer(&mut a, messages.to_string().as_bytes(), true);
    assert_eq!(
        get(&a, "gen_ai.response.finish_reasons"),
        Some(Value::Strs(vec!["end_turn".into()]))
    );
    let Some(Value::Str(out)) = get(&a, "gen_ai.output.messages") else {
        panic!("no output")
    };
    assert!(
        out.contains("hi [redacted]") && !out.contains("secret"),
        "{out}"
    );

    let mut a = Attributes::default();
    let responses = json!({"object": "response", "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens_details": {"cached_tokens": 3}}});
    answer(&mut a, responses.to_string().as_bytes(), false);
    assert_eq!(
        get(&a, "gen_ai.response.finish_reasons"),
        Some(Value::Strs(vec!["max_output_tokens".into()]))
    );
}

#[test]
fn members_of_another_type_are_skipped() {
    let mut a = Attributes::default();
    let odd = json!({"model": 7, "id": {"x": [1]}, "stop_reason": "max_tokens",
                     "content": [{"text": "a \"quoted\" text"}]});
    answer(&mut a, odd.to_string().as_bytes(), false);
    assert_eq!(get(&a, "gen_ai.response.model"), None);
    assert_eq!(get(&a, "gen_ai.response.id"), None);
    assert_eq!(
        get(&a, "gen_ai.response.finish_reasons"),
        Some(Value::Strs(vec!["max_tokens".into()]))
    );
    let mut a = Attributes::default();
    answer(&mut a, br#"{"model": "esc\u00e9aped"}"#, false);
    assert_eq!(get(&a, "gen_ai.response.model"), Some("escéaped".into()));
}

#[test]
fn long_content_is_cut_at_a_character_boundary() {
    let long = Json::String("é".repeat(MAX_CONTENT_BYTES));
    let Value::Str(text) = redacted(&long) else {
        panic!()
    };
    assert!(text.ends_with("…[truncated]"));
    assert!(text.len() <= MAX_CONTENT_BYTES + "…[truncated]".len());
}

#[test]
fn request_parameters_and_content_only_when_asked() {
    let body = json!({"model": "m", "temperature": 0.5, "max_tokens": 10, "stop": "x",
        "messages": [{"role": "user", "content": "hello", "api_key": "k"}]});
    let Json::Object(body) = body else { panic!() };
    let mut a = Attributes::default();
    request(&mut a, &body, false);
    assert_eq!(get(&a, "gen_ai.request.max_tokens"), Some(10u64.into()));
    assert_eq!(
        get(&a, "gen_ai.request.temperature"),
        Some(Value::Double(0.5))
    );
    assert_eq!(get(&a, "gen_ai.input.messages"), None);
    request(&mut a, &body, true);
    let Some(Value::Str(input)) = get(&a, "gen_ai.input.messages") else {
        panic!("no input")
    };
    assert!(
        input.contains("hello") && input.contains("[redacted]"),
        "{input}"
    );
}

#[test]
fn providers_and_addresses_come_from_the_url() {
    assert_eq!(provider("https://api.openai.com/v1"), "openai");
    assert_eq!(
        provider("https://x.openai.azure.com/openai"),
        "azure.ai.openai"
    );
    assert_eq!(provider("http://127.0.0.1:8000/v1"), "_OTHER");
    assert_eq!(provider("https://API.Anthropic.com/v1"), "anthropic");
    assert_eq!(provider("https://notapi.openai.com.evil/v1"), "_OTHER");
    assert_eq!(provider("https://evilapi.openai.com/v1"), "_OTHER");
    assert_eq!(host_port("http://127.0.0.1:8000/v1"), ("127.0.0.1", 8000));
    assert_eq!(
        host_port("https://api.anthropic.com/v1"),
        ("api.anthropic.com", 443)
    );
    assert_eq!(host_port("http://[::1]:9/v1"), ("::1", 9));
    assert_eq!(
        without_userinfo("http://u:p@h:1/v1?a=b"),
        "http://h:1/v1?a=b"
    );
    assert_eq!(without_userinfo("https://h/v1"), "https://h/v1");
}
