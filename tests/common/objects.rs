//! An upstream fixture that keeps objects as OpenAI's API does ([`ObjectsApi`]): files
//! (multipart create, get, content, delete, list with `after`, `limit` and `has_more`), batches
//! (create from an `input_file_id`, get, list; a batch completes at once with an output file
//! the upstream creates), vector stores (create from `file_ids`, get, list, search), uploads
//! (create, parts, complete into a file), fine-tuning jobs (create from a `training_file`,
//! get, list; a job succeeds at once with a result file), and `POST /v1/responses` answering a stored response with a fresh
//! id, plain or streamed (`GET /v1/responses/{id}` too), chat completions kept with
//! `store: true` (plain or streamed; `GET /v1/chat/completions/{id}`), and conversations
//! (create, get, items, delete; a Responses request may name one). An unknown id gets
//! OpenAI's 404 for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::upstream::{RecordedRequest, Reply, Upstream};

/// The objects the fixture holds, in creation order.
#[derive(Default)]
struct Objects {
    next: u64,
    files: Vec<Value>,
    batches: Vec<Value>,
    responses: Vec<Value>,
    vector_stores: Vec<Value>,
    uploads: Vec<Value>,
    jobs: Vec<Value>,
    completions: Vec<Value>,
    conversations: Vec<Value>,
}

impl Objects {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:06}", self.next)
    }

    fn new_file(&mut self, purpose: &str, bytes: usize) -> Value {
        let id = self.id("file-fx");
        let file = json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_700_000_000,
            "filename": format!("{id}.jsonl"), "purpose": purpose});
        self.files.push(file.clone());
        file
    }
}

/// OpenAI's 404 for a file id it does not know.
pub fn no_such_file(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("No such File object: {id}"),
            "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

/// OpenAI's 404 for a batch id it does not know.
pub fn no_such_batch(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("No batch found with id '{id}'."),
            "type": "invalid_request_error", "param": null, "code": "batch_not_found"}}),
    )
}

/// OpenAI's 404 for a response id it does not know.
pub fn no_such_response(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("Response with id '{id}' not found."),
            "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// OpenAI's 404 for a vector store id it does not know.
pub fn no_such_vector_store(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("No vector store found with id '{id}'."),
            "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The 404 for an upload id the upstream does not know.
pub fn no_such_upload(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("No such Upload object: {id}"),
            "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

/// The 404 for a stored chat completion id the upstream does not know.
pub fn no_such_completion(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("Completion with id '{id}' not found."),
            "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The 404 for a conversation id the upstream does not know.
pub fn no_such_conversation(id: &str) -> Reply {
    Reply::json(
        404,
        json!({"error": {"message": format!("Conversation with id '{id}' not found."),
            "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// A page of `items` after `after` (by id), at most `limit`, with OpenAI's list fields.
fn page(items: &[Value], query: &str) -> Reply {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let limit: usize = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10_000);
    let start = match param("after") {
        Some(after) => items
            .iter()
            .position(|i| i["id"] == after.as_str())
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let rest = &items[start..];
    let data: Vec<Value> = rest.iter().take(limit).cloned().collect();
    Reply::json(
        200,
        json!({"object": "list", "data": data,
            "first_id": data.first().map(|d| d["id"].clone()),
            "last_id": data.last().map(|d| d["id"].clone()),
            "has_more": rest.len() > limit}),
    )
}

/// The fixture's answer to `req`.
fn reply(objects: &Mutex<Objects>, req: &RecordedRequest) -> Reply {
    let mut o = objects.lock().unwrap();
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let find = |list: &[Value], id: &str| list.iter().find(|x| x["id"] == id).cloned();
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["files"]) => {
            assert!(
                req.header("content-type")
                    .is_some_and(|ct| ct.starts_with("multipart/form-data")),
                "a file upload is multipart"
            );
            let file = o.new_file("batch", req.body.len());
            Reply::json(200, file)
        }
        ("GET", ["files"]) => page(&o.files, query),
        ("GET", ["files", id]) => {
            find(&o.files, id).map_or_else(|| no_such_file(id), |f| Reply::json(200, f))
        }
        ("GET", ["files", id, "content"]) => match find(&o.files, id) {
            Some(_) => Reply::raw(
                200,
                &[("Content-Type", "application/octet-stream")],
                format!("content of {id}"),
            ),
            None => no_such_file(id),
        },
        ("DELETE", ["files", id]) => match find(&o.files, id) {
            Some(_) => {
                o.files.retain(|f| f["id"] != *id);
                Reply::json(200, json!({"id": id, "object": "file", "deleted": true}))
            }
            None => no_such_file(id),
        },
        ("POST", ["batches"]) => {
            let body = req.json();
            let input = body["input_file_id"].as_str().unwrap_or("").to_string();
            if find(&o.files, &input).is_none() {
                return no_such_file(&input);
            }
            let output = o.new_file("batch_output", 100)["id"].clone();
            let id = o.id("batch_fx");
            let batch = json!({"id": id, "object": "batch", "endpoint": body["endpoint"],
                "input_file_id": input, "completion_window": "24h", "status": "completed",
                "output_file_id": output, "error_file_id": null, "created_at": 1_700_000_000});
            o.batches.push(batch.clone());
            Reply::json(200, batch)
        }
        ("GET", ["batches"]) => page(&o.batches, query),
        ("GET", ["batches", id]) => {
            find(&o.batches, id).map_or_else(|| no_such_batch(id), |b| Reply::json(200, b))
        }
        ("POST", ["chat", "completions"]) => {
            let body = req.json();
            let id = o.id("chatcmpl-fx");
            let completion = json!({"id": id, "object": "chat.completion", "created": 1_700_000_000,
                "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": format!("answer {id}")}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
            if body["store"] == true {
                o.completions.push(completion.clone());
            }
            if body["stream"] == true {
                let chunk = |delta: Value, finish: Value| {
                    json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                        "model": body["model"], "choices": [{"index": 0, "delta": delta,
                        "finish_reason": finish}]})
                };
                let mut events: Vec<(Duration, String)> = [
                    chunk(
                        json!({"role": "assistant", "content": "answer"}),
                        Value::Null,
                    ),
                    chunk(json!({}), json!("stop")),
                ]
                .iter()
                .map(|c| (Duration::ZERO, format!("data: {c}\n\n")))
                .collect();
                events.push((Duration::ZERO, "data: [DONE]\n\n".to_string()));
                return Reply::sse(events);
            }
            Reply::json(200, completion)
        }
        ("GET", ["chat", "completions", id]) => {
            find(&o.completions, id).map_or_else(|| no_such_completion(id), |c| Reply::json(200, c))
        }
        ("POST", ["conversations"]) => {
            let id = o.id("conv_fx");
            let conversation = json!({"id": id, "object": "conversation",
                "created_at": 1_700_000_000, "metadata": {}});
            o.conversations.push(conversation.clone());
            Reply::json(200, conversation)
        }
        ("GET", ["conversations", id]) => find(&o.conversations, id)
            .map_or_else(|| no_such_conversation(id), |c| Reply::json(200, c)),
        ("GET", ["conversations", id, "items"]) => match find(&o.conversations, id) {
            Some(_) => page(&[], query),
            None => no_such_conversation(id),
        },
        ("DELETE", ["conversations", id]) => match find(&o.conversations, id) {
            Some(_) => {
                o.conversations.retain(|c| c["id"] != *id);
                Reply::json(
                    200,
                    json!({"id": id, "object": "conversation.deleted", "deleted": true}),
                )
            }
            None => no_such_conversation(id),
        },
        ("POST", ["responses"]) => {
            let body = req.json();
            let conversation = body["conversation"]
                .as_str()
                .or_else(|| body["conversation"]["id"].as_str());
            if let Some(c) = conversation {
                if find(&o.conversations, c).is_none() {
                    return no_such_conversation(c);
                }
            }
            let stores = body["tools"][0]["vector_store_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(vs) = stores
                .iter()
                .filter_map(Value::as_str)
                .find(|v| find(&o.vector_stores, v).is_none())
            {
                return no_such_vector_store(vs);
            }
            if let Some(prev) = body["previous_response_id"].as_str() {
                if find(&o.responses, prev).is_none() {
                    return Reply::json(
                        400,
                        json!({"error": {
                        "message": format!("Previous response with id '{prev}' not found."),
                        "type": "invalid_request_error", "param": "previous_response_id",
                        "code": "previous_response_not_found"}}),
                    );
                }
            }
            let id = o.id("resp_fx");
            let response = json!({"id": id, "object": "response", "status": "completed",
                "model": body["model"], "output": [{"id": format!("msg_{id}"), "type": "message",
                "status": "completed", "role": "assistant", "content": [{"type": "output_text",
                "text": format!("answer {id}"), "annotations": []}]}],
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}});
            o.responses.push(response.clone());
            if body["stream"] == true {
                let mut created = response.clone();
                created["status"] = json!("in_progress");
                created["output"] = json!([]);
                let events = [
                    json!({"type": "response.created", "sequence_number": 0, "response": created}),
                    json!({"type": "response.completed", "sequence_number": 1, "response": response}),
                ];
                return Reply::sse(
                    events
                        .iter()
                        .map(|e| (Duration::ZERO, super::typed(e)))
                        .collect(),
                );
            }
            Reply::json(200, response)
        }
        ("POST", ["vector_stores"]) => {
            let body = req.json();
            let files: Vec<Value> = body["file_ids"].as_array().cloned().unwrap_or_default();
            if let Some(missing) = files
                .iter()
                .filter_map(Value::as_str)
                .find(|f| find(&o.files, f).is_none())
            {
                return no_such_file(missing);
            }
            let id = o.id("vs_fx");
            let store = json!({"id": id, "object": "vector_store", "name": body["name"],
                "file_counts": {"completed": files.len(), "total": files.len()}});
            o.vector_stores.push(store.clone());
            Reply::json(200, store)
        }
        ("GET", ["vector_stores"]) => page(&o.vector_stores, query),
        ("GET", ["vector_stores", id]) => find(&o.vector_stores, id)
            .map_or_else(|| no_such_vector_store(id), |v| Reply::json(200, v)),
        ("POST", ["vector_stores", id, "search"]) => match find(&o.vector_stores, id) {
            Some(_) => Reply::json(
                200,
                json!({"object": "vector_store.search_results.page", "data": [], "has_more": false}),
            ),
            None => no_such_vector_store(id),
        },
        ("POST", ["uploads"]) => {
            let body = req.json();
            let id = o.id("upload_fx");
            let upload = json!({"id": id, "object": "upload", "status": "pending",
                "filename": body["filename"], "purpose": body["purpose"], "bytes": body["bytes"]});
            o.uploads.push(upload.clone());
            Reply::json(200, upload)
        }
        ("POST", ["uploads", id, "parts"]) => match find(&o.uploads, id) {
            Some(_) => {
                let part = o.id("part_fx");
                Reply::json(
                    200,
                    json!({"id": part, "object": "upload.part", "upload_id": id}),
                )
            }
            None => no_such_upload(id),
        },
        ("POST", ["uploads", id, "complete"]) => match find(&o.uploads, id) {
            Some(mut upload) => {
                let file = o.new_file("batch", 10);
                upload["status"] = json!("completed");
                upload["file"] = file;
                Reply::json(200, upload)
            }
            None => no_such_upload(id),
        },
        ("POST", ["fine_tuning", "jobs"]) => {
            let body = req.json();
            let training = body["training_file"].as_str().unwrap_or("").to_string();
            if find(&o.files, &training).is_none() {
                return no_such_file(&training);
            }
            let result = o.new_file("fine-tune-results", 10)["id"].clone();
            let id = o.id("ftjob-fx");
            let job = json!({"id": id, "object": "fine_tuning.job", "model": body["model"],
                "training_file": training, "status": "succeeded", "result_files": [result]});
            o.jobs.push(job.clone());
            Reply::json(200, job)
        }
        ("GET", ["fine_tuning", "jobs"]) => page(&o.jobs, query),
        ("GET", ["fine_tuning", "jobs", id]) => match find(&o.jobs, id) {
            Some(job) => Reply::json(200, job),
            None => Reply::json(
                404,
                json!({"error": {"message": format!("Could not find fine-tune job: {id}"),
                "type": "invalid_request_error", "param": null, "code": "fine_tune_not_found"}}),
            ),
        },
        ("GET", ["responses", id]) => {
            find(&o.responses, id).map_or_else(|| no_such_response(id), |r| Reply::json(200, r))
        }
        _ => Reply::json(
            404,
            json!({"error": {"message": format!("fixture: unknown route {} {}", req.method, req.path),
            "type": "invalid_request_error", "param": null, "code": null}}),
        ),
    }
}

/// The fixture.
pub struct ObjectsApi;

impl ObjectsApi {
    /// Starts the fixture on a free port.
    pub fn start() -> Upstream {
        let objects = Arc::new(Mutex::new(Objects::default()));
        Upstream::start(move |req| reply(&objects, req))
    }
}
