//! Issue 21's "Shows": the official `anthropic` and `openai` Python SDKs check every row of
//! README's translation table through the relay, plain and streamed, both directions
//! (`tests/e2e/translate_rows.py` makes the calls; the rows are parsed as
//! `src/translate/table_tests.rs` parses them). Messages and Responses clients reach a chat
//! endpoint; Chat clients reach an `anthropic` endpoint as strict as Anthropic's API. The
//! fixture serves both wire formats and answers each call by its `x-row` header:
//! - `request` / `dropped` rows: the request the fixture received contains the row's upstream
//!   JSON;
//! - `400` rows: the SDK raises a 400 whose message (or `param`, as OpenAI's errors do) names
//!   the field, and nothing went upstream;
//! - `answer` rows: the fixture answers the base answer merged with the row's upstream JSON (as
//!   a stream of chat chunks or Anthropic events for the streamed call), and the SDK's final
//!   object contains the row's client JSON. No row is one a stream cannot carry: every answer
//!   row holds streamed too. The `stream` rows are only streamed (the row is the flag).
//!
//! The `request`, `dropped` and `400` rows of `responses` go a second time to an `anthropic`
//! endpoint, through the chat pivot (Responses → Chat → Messages): a `400` row is refused the
//! same way, and the strict fixture takes every other row's Messages request (its content is
//! the `chat` rows' business). The `responses` `answer` rows are not sent there: their upstream
//! JSON is a chat completion, and the Messages answers a chat client gets are the `chat` rows.
//!
//! Needs `bash scripts/test-deps.sh`; fails (not skips) without it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// Rows whose client JSON sets `stream: true` are the stream flag itself: only streamed.
fn variants(row: &Row) -> Vec<bool> {
    if row.client["stream"] == json!(true) {
        vec![true]
    } else {
        vec![false, true]
    }
}

/// `responses` request rows an `anthropic` endpoint cannot take, with the reason: through the
/// pivot they are a 400 naming the field.
const REFUSED_ON_THE_PIVOT: &[(&str, &str)] = &[(
    "text.format",
    "Anthropic has no structured-output mode for chat's `response_format` (the `chat` 400 row)",
)];

/// One SDK call of the walk.
struct Call {
    tag: String,
    row: usize,
    stream: bool,
    request: Value,
    /// A `responses` row sent to the relay whose endpoint speaks `anthropic` (the chat pivot).
    pivot: bool,
}

fn calls(rows: &[Row]) -> Vec<Call> {
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for stream in variants(row) {
            let base = table_base_request(&row.api);
            // an answer row's client JSON is what comes back, not what is sent
            let mut request = if row.way == "answer" {
                base
            } else {
                merged(&base, &row.client)
            };
            if row.way == "answer" {
                if row.api == "chat" && stream {
                    // the usage row needs the usage chunk a chat client asks for
                    request["stream_options"] = json!({"include_usage": true});
                }
                if row.api == "responses" && row.client.get("id").is_some() {
                    // the row's `resp_` + chat id is the `store: false` case of its text
                    request["store"] = json!(false);
                }
            }
            let how = if stream { "streamed" } else { "plain" };
            if row.api == "responses" && row.way != "answer" {
                // the same request through the pivot to the strict Anthropic fixture, which
                // (as Anthropic) takes a conversation that starts with a user turn only (a 400
                // row stays as it is: it is refused before, by its index)
                let mut request = request.clone();
                if let Some(input) = request["input"].as_array_mut().filter(|_| row.way != "400") {
                    if input.first().is_some_and(|i| i["role"] != "user") {
                        input.insert(0, json!({"role": "user", "content": "hi"}));
                    }
                }
                out.push(Call {
                    tag: format!("row{i}-{how}-pivot"),
                    row: i,
                    stream,
                    request,
                    pivot: true,
                });
            }
            out.push(Call {
                tag: format!("row{i}-{how}"),
                row: i,
                stream,
                request,
                pivot: false,
            });
        }
    }
    out
}

/// What the fixture answers to a tag: the row's answer merged into the base answer (the base
/// answer for request rows); none for `400` rows, which must not reach it.
fn answers(rows: &[Row], calls: &[Call]) -> HashMap<String, Value> {
    calls
        .iter()
        .filter_map(|c| {
            let row = rows.get(c.row)?;
            let base = table_base_answer(if c.pivot { "chat" } else { &row.api });
            match row.way.as_str() {
                "400" => None,
                "answer" => Some((c.tag.clone(), merged(&base, row.upstream.as_ref()?))),
                _ => Some((c.tag.clone(), base)),
            }
        })
        .collect()
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error"}}),
    )
}

/// Chat Completions at `/v1/chat/completions`, Messages at `/v1/messages` (checked as strictly
/// as Anthropic checks them: key, version, `max_tokens`, alternating turns, paired tool ids),
/// each answering the tagged answer plain or as its stream.
fn table_fixture(answers: HashMap<String, Value>) -> Upstream {
    let answers = Arc::new(answers);
    Upstream::start(move |r| {
        let path = r.path.split('?').next().unwrap_or("");
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let tag = r.header("x-row").unwrap_or("");
        let Some(answer) = answers.get(tag) else {
            return error(404, &format!("fixture: no answer for x-row {tag:?}"));
        };
        let stream = body["stream"] == json!(true);
        let events = match path {
            "/v1/messages" => {
                if let Some(refused @ Reply::Raw { status: 400.., .. }) = anthropic_reply(r) {
                    return refused;
                }
                anthropic_message_events(answer)
            }
            "/v1/chat/completions" => {
                if !body["messages"].as_array().is_some_and(|m| !m.is_empty()) {
                    return error(400, "messages: a non-empty array is required");
                }
                chat_completion_events(answer)
            }
            _ => return error(404, "fixture: no such route"),
        };
        if stream {
            Reply::sse(events.into_iter().map(|e| (Duration::ZERO, e)).collect())
        } else {
            Reply::json(200, answer.clone())
        }
    })
}

/// What went wrong with one call, if anything.
fn judge(row: &Row, call: &Call, result: &Value, sent: &[RecordedRequest]) -> Option<String> {
    let path = if row.api == "chat" || call.pivot {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    let final_object = || match result.get("final") {
        Some(f) => Ok(f),
        None => Err(format!("the SDK call failed: {result}")),
    };
    if let Some(last) = sent.last() {
        if last.json()["stream"].as_bool().unwrap_or(false) != call.stream {
            return Some(format!(
                "the upstream request's `stream` is not {}",
                call.stream
            ));
        }
    }
    let refused_here = call.pivot && REFUSED_ON_THE_PIVOT.iter().any(|(f, _)| *f == row.field);
    let message = result["message"].as_str().unwrap_or("");
    let untranslatable = message.contains("cannot be translated");
    if call.pivot && untranslatable && !message.contains("speaks Anthropic Messages") {
        return Some(format!("refused as if the endpoint spoke chat: {message}"));
    }
    match row.way.as_str() {
        "400" => refused(row, result, sent),
        _ if refused_here => refused(row, result, sent),
        "request" | "dropped" => {
            if let Err(e) = final_object() {
                return Some(e);
            }
            let Some(last) = sent.last() else {
                return Some("nothing reached the upstream".into());
            };
            if call.pivot {
                // the row's upstream JSON is chat; here it is enough that the strict fixture
                // took the Messages request the two steps made of it
                return (last.path != path).then(|| format!("sent to {}", last.path));
            }
            let want = row.upstream.as_ref()?;
            let got = last.json();
            (last.path != path || !contains(&got, want))
                .then(|| format!("upstream got {} {got}\n    want {want}", last.path))
        }
        "answer" => match final_object() {
            Err(e) => Some(e),
            Ok(got) => (!contains(got, &row.client))
                .then(|| format!("the SDK's final object {got}\n    want {}", row.client)),
        },
        other => Some(format!("unknown way {other} (call {})", call.tag)),
    }
}

/// A refusal: a 400 whose message (or `param`) names the row's field, and nothing upstream.
fn refused(row: &Row, result: &Value, sent: &[RecordedRequest]) -> Option<String> {
    let status = result["status"].as_u64();
    let message = result["message"].as_str().unwrap_or("");
    let named =
        message.contains(&format!("`{}`", row.field)) || result["param"] == json!(row.field);
    if status != Some(400) || !named {
        Some(format!("want a 400 naming `{}`, got {result}", row.field))
    } else if message.contains("Some(") {
        Some(format!("the message shows a Rust `Option`: {message}"))
    } else if !sent.is_empty() {
        Some(format!(
            "refused, yet {} request(s) went upstream",
            sent.len()
        ))
    } else {
        None
    }
}

#[test]
fn the_sdks_check_every_row_of_the_translation_table_plain_and_streamed() {
    require_python_module("anthropic");
    require_python_module("openai");
    let rows = table_rows();
    assert!(rows.len() > 100, "the table has its rows ({})", rows.len());
    let calls = calls(&rows);
    let up = table_fixture(answers(&rows, &calls));
    let to_chat = Relay::start(
        &json!({"listen": "127.0.0.1:0", "upstreams": [
            {"name": "chat", "url": up.base_url(), "api": "chat", "reasoning_content": true},
        ]})
        .to_string(),
    );
    let to_anthropic = Relay::start(
        &json!({"listen": "127.0.0.1:0", "upstreams": [
            {"name": "claude", "url": up.base_url(), "api": "anthropic", "api_key": ANTHROPIC_KEY},
        ]})
        .to_string(),
    );
    let dir = TempDir::new();
    let plan = json!({
        "roots": {"anthropic": to_chat.url(""), "responses": to_chat.url(""),
                  "chat": to_anthropic.url(""), "responses_pivot": to_anthropic.url("")},
        "calls": calls.iter().map(|c| json!({"tag": c.tag, "api": rows[c.row].api,
            "client": if c.pivot { "responses_pivot" } else { rows[c.row].api.as_str() },
            "stream": c.stream, "request": c.request})).collect::<Vec<_>>(),
    });
    let plan_path = dir.write("plan.json", &plan.to_string());
    let results_path = dir.path().join("results.json");
    let out = run_e2e_script(
        "translate_rows.py",
        &[plan_path.to_str().unwrap(), results_path.to_str().unwrap()],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "translate_rows.py: {}", show(&out));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(&results_path).expect("results written"))
            .expect("results JSON");

    let requests = up.requests();
    let mut failures = Vec::new();
    for call in &calls {
        let row = &rows[call.row];
        let sent: Vec<RecordedRequest> = requests
            .iter()
            .filter(|r| r.header("x-row") == Some(call.tag.as_str()))
            .cloned()
            .collect();
        let result = &results[&call.tag];
        let how = match (call.stream, call.pivot) {
            (false, false) => "plain",
            (true, false) => "streamed",
            (false, true) => "plain, anthropic endpoint",
            (true, true) => "streamed, anthropic endpoint",
        };
        if let Some(why) = judge(row, call, result, &sent) {
            failures.push(format!("{} ({how}): {why}", row.name()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls do not hold their row:\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n")
    );
}
