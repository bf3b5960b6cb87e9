//! README's translation table, walked as test data: every row is translated and checked.

use serde_json::{json, Map, Value};

use super::{from_chat, to_chat, Dialect};

const README: &str = include_str!("../../README.md");

struct Row {
    api: Dialect,
    way: String,
    field: String,
    client: Value,
    chat: Option<Value>,
}

fn rows() -> Vec<Row> {
    let start = README
        .find("<!-- translation-table -->")
        .expect("table start marker");
    let end = README
        .find("<!-- /translation-table -->")
        .expect("table end marker");
    let mut rows = Vec::new();
    for line in README[start..end].lines().skip(3) {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(cells.len(), 6, "a table row has 6 cells: {line}");
        let json_cell = |c: &str| -> Option<Value> {
            let c = c.trim_matches('`');
            (!c.is_empty())
                .then(|| serde_json::from_str(c).unwrap_or_else(|e| panic!("{e} in {c}")))
        };
        rows.push(Row {
            api: match cells[0] {
                "anthropic" => Dialect::Anthropic,
                "responses" => Dialect::Responses,
                "chat" => Dialect::Chat,
                other => panic!("unknown API {other}"),
            },
            way: cells[1].to_string(),
            field: cells[2].split('`').nth(1).unwrap_or(cells[2]).to_string(),
            client: json_cell(cells[4]).expect("client JSON"),
            chat: json_cell(cells[5]),
        });
    }
    rows
}

fn base_request(api: Dialect) -> Value {
    match api {
        Dialect::Anthropic => {
            json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        }
        Dialect::Responses => json!({"model": "m", "input": "hi"}),
        Dialect::Chat => json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    }
}

/// The upstream answer a row's last cell is merged into: a chat completion, or an Anthropic
/// message for `chat` rows.
fn base_answer(api: Dialect) -> Value {
    if api == Dialect::Chat {
        return json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 2},
        });
    }
    json!({
        "id": "c1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    })
}

/// `base` with `over` merged in: objects merge key by key, anything else replaces.
fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let m = b.get(k).map_or_else(|| v.clone(), |bv| merged(bv, v));
                out.insert(k.clone(), m);
            }
            Value::Object(out)
        }
        _ => over.clone(),
    }
}

/// True if `actual` has everything `expected` has (objects: the listed keys; arrays and
/// scalars: equal, element by element).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y))
        }
        _ => actual == expected,
    }
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
