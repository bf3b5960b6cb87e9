//! Unit tests of the objects a key owns (`mod.rs`).

use super::*;

#[test]
fn routes_name_their_objects() {
    let obj = |kind, id: &str, rest: &str| Route::Object {
        kind,
        id: id.to_string(),
        rest: rest.to_string(),
    };
    let cases = [
        ("POST", "/files", Route::Create(Kind::File)),
        ("GET", "/files", Route::List(Kind::File)),
        (
            "GET",
            "/files/file-1/content",
            obj(Kind::File, "file-1", "/content"),
        ),
        ("DELETE", "/files/file-1", obj(Kind::File, "file-1", "")),
        ("GET", "/filesystem", Route::Other),
        ("POST", "/responses", Route::Other),
        ("POST", "/chat/completions", Route::Other),
        (
            "GET",
            "/chat/completions/chatcmpl-1/messages",
            obj(Kind::ChatCompletion, "chatcmpl-1", "/messages"),
        ),
        ("POST", "/conversations", Route::Create(Kind::Conversation)),
        ("GET", "/conversations", Route::Other),
        (
            "GET",
            "/conversations/conv_1/items",
            obj(Kind::Conversation, "conv_1", "/items"),
        ),
        (
            "GET",
            "/responses/resp_1",
            obj(Kind::Response, "resp_1", ""),
        ),
        (
            "POST",
            "/fine_tuning/jobs",
            Route::Create(Kind::FineTuningJob),
        ),
        (
            "POST",
            "/vector_stores/vs_1/files",
            obj(Kind::VectorStore, "vs_1", "/files"),
        ),
        ("POST", "/uploads", Route::Create(Kind::Upload)),
        // calls under a collection that name no object
        ("POST", "/responses/compact", Route::Other),
        ("POST", "/responses/input_tokens/", Route::Other),
        (
            "GET",
            "/responses/compact",
            obj(Kind::Response, "compact", ""),
        ),
        (
            "POST",
            "/responses/compact/x",
            obj(Kind::Response, "compact", "/x"),
        ),
        ("GET", "/models", Route::Other),
        // spellings an upstream may read as the same route
        ("GET", "/files/", Route::List(Kind::File)),
        ("GET", "/FILES", Route::List(Kind::File)),
        ("GET", "/fil%65s", Route::List(Kind::File)),
        ("GET", "/files/file%2D1", obj(Kind::File, "file-1", "")),
        ("GET", "/Batches/batch_1", obj(Kind::Batch, "batch_1", "")),
        ("GET", "/files//file-1", obj(Kind::File, "", "/file-1")),
    ];
    for (method, route, expected) in cases {
        assert_eq!(Route::of(method, route), expected, "{method} {route}");
    }
}

#[test]
fn references_and_captures() {
    let body = json!({"input_file_id": "file-1", "tools": [{"type": "file_search",
        "vector_store_ids": ["vs_1"]}], "input": [{"content": [{"type": "input_file",
        "file_id": "file-2"}]}, {"type": "item_reference", "id": "msg_1"}],
        "previous_response_id": "resp_1"});
    let mut refs = references(body.as_object().unwrap());
    refs.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        refs,
        vec![
            (Kind::File, "file-1".to_string()),
            (Kind::File, "file-2".to_string()),
            (Kind::ResponseItem, "msg_1".to_string()),
            (Kind::Response, "resp_1".to_string()),
            (Kind::VectorStore, "vs_1".to_string()),
        ]
    );
    let batch = Route::of("GET", "/batches/batch_1");
    let answer = json!({"id": "batch_1", "output_file_id": "file-o", "error_file_id": null});
    assert_eq!(captured(&batch, "GET", &answer), vec!["file-o"]);
    assert!(watched(&batch, "GET"));
    let content = Route::of("GET", "/files/file-1/content");
    assert!(
        !watched(&content, "GET"),
        "a download streams through unread"
    );
    assert!(watched(&Route::of("DELETE", "/files/file-1"), "DELETE"));
    let done = Route::of("POST", "/uploads/upload_1/complete");
    let answer = json!({"id": "upload_1", "file": {"id": "file-u"}});
    assert_eq!(captured(&done, "POST", &answer), vec!["file-u"]);
}
