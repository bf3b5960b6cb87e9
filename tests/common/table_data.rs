//! README's translation table as data: each row's API, way, field, client JSON and upstream
//! JSON, the base request and base upstream answer a row is merged into, and the "contains"
//! rule a row is checked with. Pure (serde_json only), so the unit test that walks the rows
//! through the Rust functions (`src/translate/table_tests.rs`) includes this very file, and the
//! SDK test (`tests/translate_rows.rs`) reads the rows the same way.

use serde_json::{json, Value};

const README: &str = include_str!("../../README.md");

/// One row of the table. `api` is `anthropic`, `responses` or `chat` (the client's API);
/// `upstream` is the last cell: Chat Completions JSON, or Messages JSON for `chat` rows.
#[derive(Clone, Debug)]
pub struct Row {
    pub api: String,
    pub way: String,
    pub field: String,
    pub client: Value,
    pub upstream: Option<Value>,
}

impl Row {
    /// How a failure names the row.
    pub fn name(&self) -> String {
        format!("{} {} `{}`", self.api, self.way, self.field)
    }
}

/// The rows between the `translation-table` markers.
pub fn table_rows() -> Vec<Row> {
    let start = README
        .find("<!-- translation-table -->")
        .expect("table start marker");
    let end = README
        .find("<!-- /translation-table -->")
        .expect("table end marker");
    let json_cell = |c: &str| -> Option<Value> {
        let c = c.trim_matches('`');
        (!c.is_empty()).then(|| serde_json::from_str(c).unwrap_or_else(|e| panic!("{e} in {c}")))
    };
    README[start..end]
        .lines()
        .skip(3)
        .map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert_eq!(cells.len(), 6, "a table row has 6 cells: {line}");
            Row {
                api: cells[0].to_string(),
                way: cells[1].to_string(),
                field: cells[2].split('`').nth(1).unwrap_or(cells[2]).to_string(),
                client: json_cell(cells[4]).expect("client JSON"),
                upstream: json_cell(cells[5]),
            }
        })
        .collect()
}

/// The client request a row's client JSON is merged into.
pub fn table_base_request(api: &str) -> Value {
    match api {
        "anthropic" => {
            json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        }
        "responses" => json!({"model": "m", "input": "hi"}),
        _ => json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    }
}

/// The upstream answer a row's last cell is merged into: a chat completion, or an Anthropic
/// message for `chat` rows.
pub fn table_base_answer(api: &str) -> Value {
    if api == "chat" {
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
pub fn merged(base: &Value, over: &Value) -> Value {
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
/// scalars: equal, element by element; numbers by value, so `1` matches `1.0`).
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y))
        }
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}
