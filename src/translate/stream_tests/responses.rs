//! OpenAI Responses: a chat stream as Responses events.

use super::*;

#[test]
fn responses_events_in_order_each_chunk_at_once() {
    let (per_line, s) = run(Dialect::Responses);
    assert!(s.finished());
    for (i, want) in [
        (1, "response.reasoning_text.delta"),
        (2, "response.output_text.delta"),
        (3, "response.output_text.delta"),
        (5, "response.function_call_arguments.delta"),
        (6, "response.function_call_arguments.delta"),
    ] {
        let last = per_line[i].last().expect("events for the chunk");
        assert_eq!(last.0, want, "line {i}");
    }
    let all: Vec<(String, Value)> = per_line.into_iter().flatten().collect();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, (name, data)) in all.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], n as u64);
    }
    // added and done items keep their identity; the final response equals the plain translation
    let plain = from_chat(Dialect::Responses, &chat_answer());
    let done: Vec<&Value> = all
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    let added: Vec<&Value> = all
        .iter()
        .filter(|(n, _)| n == "response.output_item.added")
        .map(|(_, d)| &d["item"])
        .collect();
    for (a, d) in added.iter().zip(&done) {
        assert_eq!(
            (&a["id"], &a["type"], &a.get("call_id")),
            (&d["id"], &d["type"], &d.get("call_id"))
        );
    }
    let completed = &all[all.len() - 1].1["response"];
    assert_eq!(completed["output"], plain["output"]);
    assert_eq!(completed["usage"], plain["usage"]);
    assert_eq!(completed["id"], plain["id"]);
    assert_eq!(all[0].1["response"]["id"], plain["id"]);
}
