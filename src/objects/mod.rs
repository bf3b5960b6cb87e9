//! The objects a key creates through the relay and owns — files, uploads, batches, stored
//! responses, stored chat completions, conversations, vector stores, fine-tuning jobs — as the
//! OpenAI API names them: which route
//! creates, lists or addresses which kind, which ids a request body refers to, which ids an
//! answer makes the caller (or the object's owner) own, and the 404 the upstream gives for an
//! id it does not know, which is what a key gets for another key's object.
//!
//! Pure (routes and JSON in, decisions out); `owners.rs` applies it to requests.

use serde_json::{json, Map, Value};

/// The owner recorded for objects the admin key creates, and the caller id the gate gives the
/// admin key on object routes (client key ids are `cfg_…` or `key_…`, never this).
pub const ADMIN: &str = "admin";

/// A kind of owned object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Upload,
    Batch,
    Response,
    /// An output item of a stored response (`msg_…`, `fc_…`), named by an `item_reference`.
    ResponseItem,
    VectorStore,
    FineTuningJob,
    /// A chat completion the upstream stored (`store: true`), read at `/chat/completions/{id}`.
    ChatCompletion,
    /// A conversation (`POST /v1/conversations`), which a Responses request may name.
    Conversation,
}

impl Kind {
    /// The collection each kind lives under (below `/v1`).
    const COLLECTIONS: [(&'static str, Kind); 8] = [
        ("/files", Kind::File),
        ("/uploads", Kind::Upload),
        ("/batches", Kind::Batch),
        ("/responses", Kind::Response),
        ("/vector_stores", Kind::VectorStore),
        ("/fine_tuning/jobs", Kind::FineTuningJob),
        ("/chat/completions", Kind::ChatCompletion),
        ("/conversations", Kind::Conversation),
    ];

    /// The answer an upstream gives for an id it does not know (OpenAI's status and body).
    pub fn not_found(self, id: &str) -> (u16, Vec<u8>) {
        let (message, param, code) = match self {
            Kind::File => (
                format!("No such File object: {id}"),
                json!("id"),
                Value::Null,
            ),
            Kind::Upload => (
                format!("No such Upload object: {id}"),
                json!("id"),
                Value::Null,
            ),
            Kind::Batch => (
                format!("No batch found with id '{id}'."),
                Value::Null,
                json!("batch_not_found"),
            ),
            Kind::Response => (
                format!("Response with id '{id}' not found."),
                Value::Null,
                Value::Null,
            ),
            Kind::ResponseItem => (
                format!(
                    "Item with id '{id}' not found. Items are not persisted when `store` is set \
                     to false. Try again with `store` set to true, or remove this item from your \
                     input."
                ),
                json!("input"),
                Value::Null,
            ),
            Kind::VectorStore => (
                format!("No vector store found with id '{id}'."),
                Value::Null,
                Value::Null,
            ),
            Kind::FineTuningJob => (
                format!("Could not find fine-tune job: {id}"),
                Value::Null,
                json!("fine_tune_not_found"),
            ),
            Kind::ChatCompletion => (
                format!("Completion with id '{id}' not found."),
                Value::Null,
                Value::Null,
            ),
            Kind::Conversation => (
                format!("Conversation with id '{id}' not found."),
                Value::Null,
                Value::Null,
            ),
        };
        let body = json!({"error": {"message": message, "type": "invalid_request_error",
            "param": param, "code": code}});
        (404, body.to_string().into_bytes())
    }

    /// How many objects a list answers when the request names no `limit` (OpenAI's defaults).
    pub fn default_limit(self) -> usize {
        match self {
            Kind::File => 10_000,
            _ => 20,
        }
    }
}

/// What a route under `/v1` does with owned objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Creates an object of this kind (`POST /v1/files`, …).
    Create(Kind),
    /// Lists the objects of this kind (`GET /v1/files`, `/batches`, `/vector_stores`,
    /// `/fine_tuning/jobs`).
    List(Kind),
    /// Reads, uses, changes or deletes the object `id`; `rest` is the path after the id
    /// (`""`, `"/content"`, `"/cancel"`, `"/files/file-1"`, …).
    Object {
        kind: Kind,
        id: String,
        rest: String,
    },
    /// No owned object involved.
    Other,
}

/// The calls under `/v1/responses/` that name no stored response: compaction and the
/// input-token count.
const ACTIONS: [&str; 2] = ["compact", "input_tokens"];

impl Route {
    /// The route of `method` on `route` (the path below `/v1`, without the query).
    ///
    /// The route is matched as an upstream may read it: percent-decoded, the collection in any
    /// case, a trailing slash on a collection ignored; an empty id (`/files//x`) is an object no
    /// key owns.
    pub fn of(method: &str, route: &str) -> Route {
        let decoded = percent_decoded(route);
        let lower = decoded.to_ascii_lowercase();
        for (collection, kind) in Kind::COLLECTIONS {
            if !lower.starts_with(collection) {
                continue;
            }
            // ASCII lowercasing keeps byte offsets
            let tail = decoded.get(collection.len()..).unwrap_or("");
            if tail.is_empty() || tail == "/" {
                return match (method, kind) {
                    // POST /v1/responses and /v1/chat/completions are API calls of the
                    // pipeline, not pass-throughs (it records what they store)
                    ("POST", Kind::Response | Kind::ChatCompletion) => Route::Other,
                    ("POST", _) => Route::Create(kind),
                    ("GET", Kind::Response | Kind::Upload | Kind::Conversation) => Route::Other,
                    ("GET", _) => Route::List(kind),
                    _ => Route::Other,
                };
            }
            let Some(tail) = tail.strip_prefix('/') else {
                continue; // `/filesystem`, not `/files/…`
            };
            let (id, rest) = match tail.find('/') {
                Some(i) => (tail.get(..i).unwrap_or(""), tail.get(i..).unwrap_or("")),
                None => (tail, ""),
            };
            if method == "POST"
                && kind == Kind::Response
                && ACTIONS.contains(&id)
                && rest.len() <= 1
            {
                // `POST /v1/responses/compact` (Codex's compaction) is a call, not an object
                return Route::Other;
            }
            return Route::Object {
                kind,
                id: id.to_string(),
                rest: rest.to_string(),
            };
        }
        Route::Other
    }

    /// True if the route involves an owned object (the admin key may use it).
    pub fn is_owned(&self) -> bool {
        *self != Route::Other
    }
}

/// `path` with its `%XX` escapes decoded (invalid UTF-8 replaced).
fn percent_decoded(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The ids an answer of `route` to `method` makes owned: the created object's `id`, and ids the
/// upstream creates on an object's behalf (a batch's output and error files, a fine-tuning
/// job's result files, the file a completed upload becomes).
pub fn captured(route: &Route, method: &str, answer: &Value) -> Vec<String> {
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match route {
        Route::Create(_) => str_at(answer, "id").into_iter().collect(),
        Route::Object { kind, rest, .. } => match (kind, method, rest.as_str()) {
            (Kind::Batch, "GET" | "POST", "" | "/cancel") => ["output_file_id", "error_file_id"]
                .iter()
                .filter_map(|k| str_at(answer, k))
                .collect(),
            (Kind::FineTuningJob, "GET" | "POST", "" | "/cancel") => answer
                .get("result_files")
                .and_then(Value::as_array)
                .map(|files| {
                    files
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            (Kind::Upload, "POST", "/complete") => answer
                .get("file")
                .and_then(|f| str_at(f, "id"))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// True if the answer of `method` on `route` is read for what it creates or deletes: a
/// creation, a delete, and the routes [`captured`] reads (a batch, a fine-tuning job, a
/// completed upload). Any other answer streams through unread.
pub fn watched(route: &Route, method: &str) -> bool {
    match route {
        Route::Create(_) => true,
        Route::Object { kind, rest, .. } => {
            deletes(route, method)
                || matches!(
                    (kind, method, rest.as_str()),
                    (Kind::Batch, "GET" | "POST", "" | "/cancel")
                        | (Kind::FineTuningJob, "GET" | "POST", "" | "/cancel")
                        | (Kind::Upload, "POST", "/complete")
                )
        }
        _ => false,
    }
}

/// True if a successful answer of `method` on `route` deleted the object.
pub fn deletes(route: &Route, method: &str) -> bool {
    matches!(route, Route::Object { rest, .. } if method == "DELETE" && rest.is_empty())
}

/// The owned objects a request body refers to: file ids (`file_id`, `file_ids`,
/// `input_file_id`, `training_file`, `validation_file`), `previous_response_id`, a Responses
/// request's `conversation` (an id, or `{"id": …}`), vector
/// store ids (`vector_store_id`, `vector_store_ids`) and Responses `item_reference`s, at any depth (a file in a chat message,
/// a vector store in a `file_search` tool).
pub fn references(body: &Map<String, Value>) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    walk_map(body, &mut out);
    out
}

fn walk(v: &Value, out: &mut Vec<(Kind, String)>) {
    match v {
        Value::Object(map) => walk_map(map, out),
        Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
        _ => {}
    }
}

fn walk_map(map: &Map<String, Value>, out: &mut Vec<(Kind, String)>) {
    if map.get("type").and_then(Value::as_str) == Some("item_reference") {
        if let Some(id) = map.get("id").and_then(Value::as_str) {
            out.push((Kind::ResponseItem, id.to_string()));
        }
    }
    for (k, v) in map {
        let kind = match k.as_str() {
            "file_id" | "file_ids" | "input_file_id" | "training_file" | "validation_file" => {
                Some(Kind::File)
            }
            "previous_response_id" => Some(Kind::Response),
            "conversation" => Some(Kind::Conversation),
            "vector_store_id" | "vector_store_ids" => Some(Kind::VectorStore),
            _ => None,
        };
        match (kind, v) {
            (Some(kind), Value::String(id)) => out.push((kind, id.clone())),
            // a Responses request's `conversation` may be `{"id": "conv_…"}`
            (Some(Kind::Conversation), Value::Object(c)) => {
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    out.push((Kind::Conversation, id.to_string()));
                }
            }
            (Some(kind), Value::Array(ids)) => out.extend(
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(|id| (kind, id.to_string())),
            ),
            _ => walk(v, out),
        }
    }
}

/// What a key gets for a reference in a request body to an object it does not own: the
/// upstream's answer to an unknown id (for `previous_response_id`, OpenAI's 400).
pub fn unknown_reference(kind: Kind, id: &str) -> (u16, Vec<u8>) {
    if kind == Kind::Response {
        let body = json!({"error": {
            "message": format!("Previous response with id '{id}' not found."),
            "type": "invalid_request_error", "param": "previous_response_id",
            "code": "previous_response_not_found"}});
        return (400, body.to_string().into_bytes());
    }
    kind.not_found(id)
}

#[cfg(test)]
mod tests;
