//! README's translation table, walked as test data: every row is translated and checked.

use serde_json::{json, Map, Value};

use super::{from_chat, to_chat, Dialect};

// the rows, their bases and the "contains" rule: the same file the SDK test reads them with
#[allow(dead_code)]
#[path = "../../tests/common/table_data.rs"]
mod table_data;

use table_data::{contains, merged, table_base_answer, table_base_request, table_rows};

fn dialect(api: &str) -> Dialect {
    match api {
        "anthropic" => Dialect::Anthropic,
        "responses" => Dialect::Responses,
        "chat" => Dialect::Chat,
        other => panic!("unknown API {other}"),
    }
}

fn api_name(api: Dialect) -> &'static str {
    match api {
        Dialect::Anthropic => "anthropic",
        Dialect::Responses => "responses",
        Dialect::Chat => "chat",
    }
}

fn base_request(api: Dialect) -> Value {
    table_base_request(api_name(api))
}

fn base_answer(api: Dialect) -> Value {
    table_base_answer(api_name(api))
}

struct Row {
    api: Dialect,
    way: String,
    field: String,
    client: Value,
    chat: Option<Value>,
}

fn rows() -> Vec<Row> {
    table_rows()
        .into_iter()
        .map(|r| Row {
            api: dialect(&r.api),
            way: r.way,
            field: r.field,
            client: r.client,
            chat: r.upstream,
        })
        .collect()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => panic!("not an object"),
    }
}

#[test]
fn every_row_of_the_readme_table_holds() {
    let rows = rows();
    assert!(rows.len() > 40, "the table has its rows ({})", rows.len());
    for row in &rows {
        let what = format!("{:?} {} `{}`", row.api, row.way, row.field);
        match row.way.as_str() {
            "request" | "dropped" => {
                let request = object(merged(&base_request(row.api), &row.client));
                let chat = to_chat(row.api, &request).unwrap_or_else(|e| panic!("{what}: {e:?}"));
                let expected = row.chat.as_ref().expect("chat JSON");
                let chat = Value::Object(chat);
                assert!(
                    contains(&chat, expected),
                    "{what}:\n got {chat}\n want {expected}"
                );
                if row.way == "dropped" && expected == &json!({}) {
                    // nothing of the dropped fields reaches the chat request
                    let plain = to_chat(row.api, &object(base_request(row.api))).expect("base");
                    assert_eq!(chat, Value::Object(plain), "{what}");
                }
            }
            "400" => {
                let request = object(merged(&base_request(row.api), &row.client));
                let refused = to_chat(row.api, &request).expect_err(&what);
                assert_eq!(
                    refused.field,
                    row.field,
                    "{what}: {}",
                    refused.message(row.api)
                );
                assert!(refused.message(row.api).contains(&row.field));
            }
            "answer" => {
                let chat = merged(&base_answer(row.api), row.chat.as_ref().expect("chat JSON"));
                let answer = from_chat(row.api, &chat);
                assert!(
                    contains(&answer, &row.client),
                    "{what}:\n got {answer}\n want {}",
                    row.client
                );
            }
            other => panic!("unknown way {other} in {what}"),
        }
    }
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    for api in [Dialect::Anthropic, Dialect::Responses, Dialect::Chat] {
        let request = object(merged(&base_request(api), &json!({"frobnicate": 1})));
        let refused = to_chat(api, &request).expect_err("unknown field");
        assert_eq!(refused.field, "frobnicate");
    }
}

/// Found by schemathesis: `"stream": null` and `"max_tokens": "x"` were copied into the chat
/// request and answered 200.
#[test]
fn a_field_of_the_wrong_type_is_refused_by_name() {
    let cases = [
        (Dialect::Anthropic, json!({"stream": null}), "stream"),
        (Dialect::Anthropic, json!({"stream": "yes"}), "stream"),
        (Dialect::Anthropic, json!({"max_tokens": "x"}), "max_tokens"),
        (Dialect::Anthropic, json!({"messages": {}}), "messages"),
        (Dialect::Responses, json!({"stream": 1}), "stream"),
        (
            Dialect::Responses,
            json!({"max_output_tokens": -1}),
            "max_output_tokens",
        ),
        (
            Dialect::Responses,
            json!({"temperature": "hot"}),
            "temperature",
        ),
    ];
    for (api, extra, field) in cases {
        let request = object(merged(&base_request(api), &extra));
        let refused = to_chat(api, &request).expect_err(field);
        assert_eq!(refused.field, field, "{extra}");
    }
    let request = object(merged(
        &base_request(Dialect::Responses),
        &json!({"stream": null}),
    ));
    assert!(to_chat(Dialect::Responses, &request).is_ok());
}
