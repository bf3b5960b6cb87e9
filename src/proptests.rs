//! Property tests (proptest) for the rules engine ([`rules::apply`], [`rules::merge`]) and the
//! SSE line handling ([`sse::relay`], [`crate::api::Completion`]): generated JSON values, rule sets
//! and arbitrary chunkings of event streams.

use std::io::{self, BufReader, Read};

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::rules::{self, Rule};
use crate::sse::{self, End};
use crate::sse_out::SseOut;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

/// JSON values up to a few levels deep, with keys from a small alphabet so they collide.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-f]", json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

/// Every (path, leaf) of `v`, where objects are walked and anything else is a leaf.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

proptest! {
    #[test]
    fn merge_src_wins_on_every_leaf_and_keeps_the_rest(dst in json_value(), src in json_value()) {
        let mut merged = dst.clone();
        rules::merge(&mut merged, &src);
        let mut src_leaves = Vec::new();
        leaves(&src, &mut Vec::new(), &mut src_leaves);
        for (path, leaf) in &src_leaves {
            let is_empty_obj = leaf.as_object().is_some_and(|m| m.is_empty());
            if !is_empty_obj {
                prop_assert_eq!(at(&merged, path), Some(leaf), "path {:?}", path);
            }
        }
        if let (Value::Object(d), Value::Object(s)) = (&dst, &src) {
            for (k, v) in d {
                if !s.contains_key(k) {
                    prop_assert_eq!(merged.get(k), Some(v));
                }
            }
        } else {
            prop_assert_eq!(&merged, &src);
        }
        let mut twice = merged.clone();
        rules::merge(&mut twice, &src);
        prop_assert_eq!(twice, merged, "merge is idempotent");
    }

    #[test]
    fn apply_unsets_then_sets_then_merges_extra(
        body in object(),
        unset in prop::collection::vec("[a-f]", 0..3),
        set in object(),
        extra in object(),
        matching in any::<bool>(),
    ) {
        let mut body = body;
        body.insert("model".into(), Value::String("m".into()));
        let rule = Rule {
            match_model: crate::glob::Glob::new(if matching { "m" } else { "other" }).unwrap(),
            unset: unset.clone(),
            set: set.clone(),
            extra: extra.clone(),
        };
        let mut out = body.clone();
        rules::apply(std::slice::from_ref(&rule), &mut out);
        if !matching {
            prop_assert_eq!(out, body);
            return Ok(());
        }
        // the reference: the three steps written out the slow way
        let mut expected = Value::Object(body.clone());
        for k in &unset {
            expected.as_object_mut().unwrap().remove(k);
        }
        for (k, v) in &set {
            expected[k] = v.clone();
        }
        rules::merge(&mut expected, &Value::Object(extra.clone()));
        prop_assert_eq!(Value::Object(out.clone()), expected);
        for k in &unset {
            if !set.contains_key(k) && !extra.contains_key(k) {
                prop_assert!(!out.contains_key(k), "{} still there", k);
            }
        }
    }
}

/// A reader handing out `data` in the given chunk sizes (cycled), like a network would.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Relays `stream` read in `sizes`-sized pieces through a reader of `capacity`; returns the
/// payload written to the client (HTTP/1.0 framing: no chunk markers) and the relay's result.
fn relay(stream: &[u8], sizes: Vec<usize>, capacity: usize) -> (Vec<u8>, End, Vec<u8>) {
    relay_bounded(stream, sizes, capacity, usize::MAX)
}

/// [`relay`] with events bounded to `max_event` bytes.
fn relay_bounded(
    stream: &[u8],
    sizes: Vec<usize>,
    capacity: usize,
    max_event: usize,
) -> (Vec<u8>, End, Vec<u8>) {
    let sink = sse::Sink::default();
    let mut out = SseOut::start(
        crate::sse_out::Conn::raw(Box::new(sink.clone()), false),
        &[],
    )
    .unwrap();
    let head_len = sink.0.lock().unwrap().len();
    let source = Chunked {
        data: stream.to_vec(),
        pos: 0,
        sizes,
        turn: 0,
    };
    let mut reader = BufReader::with_capacity(capacity, source);
    let relayed = sse::relay(
        sse::Kind::Api(crate::api::Api::Chat),
        &mut reader,
        &mut out,
        &|e| e.to_string(),
        sse::Bounds {
            record: usize::MAX,
            event: max_event,
        },
        &mut sse::NoTap,
        None,
    );
    let written = sink.0.lock().unwrap()[head_len..].to_vec();
    (written, relayed.end, relayed.recorded)
}

fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,20}"
            .prop_map(|t| format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}")),
        Just(": keep-alive comment".to_string()),
        Just("event: ping\ndata: {}".to_string()),
        Just("data: {\"choices\":[{\"finish_reason\":null}]}".to_string()),
    ]
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events_and_end(
        events in prop::collection::vec(event(), 0..8),
        ending in 0..3u8,
        crlf in any::<bool>(),
        sizes in prop::collection::vec(1..64usize, 1..6),
        capacity in 1..128usize,
    ) {
        let mut text = String::new();
        for e in &events {
            text.push_str(e);
            text.push_str("\n\n");
        }
        match ending {
            0 => text.push_str("data: [DONE]\n\n"),
            1 => text.push_str("data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"),
            _ => {} // cut short
        }
        let text = if crlf { text.replace('\n', "\r\n") } else { text };
        let bytes = text.as_bytes();
        let (whole, end_whole, rec_whole) = relay(bytes, vec![bytes.len().max(1)], 8192);
        let (split, end_split, rec_split) = relay(bytes, sizes, capacity);
        prop_assert_eq!(&rec_whole, &bytes.to_vec(), "recording is the stream as sent");
        prop_assert_eq!(&rec_split, &rec_whole);
        prop_assert_eq!(&split, &whole, "client output must not depend on chunking");
        prop_assert_eq!(&end_split, &end_whole);
        if ending < 2 {
            prop_assert_eq!(&end_whole, &End::Complete);
            prop_assert_eq!(&whole, &bytes.to_vec(), "a complete stream passes unchanged");
        } else {
            prop_assert!(matches!(end_whole, End::Interrupted(_)), "{:?}", end_whole);
            prop_assert!(whole.starts_with(bytes));
            let tail = String::from_utf8_lossy(&whole[bytes.len()..]).into_owned();
            prop_assert!(tail.contains("upstream_stream_interrupted"), "{}", tail);
        }
    }

    #[test]
    fn the_event_bound_does_not_depend_on_chunking(
        events in prop::collection::vec(event(), 0..8),
        sizes in prop::collection::vec(1..64usize, 1..6),
        capacity in 1..128usize,
        max_event in 8..80usize,
    ) {
        let mut text = String::new();
        for e in &events {
            text.push_str(e);
            text.push_str("\n\n");
        }
        text.push_str("data: [DONE]\n\n");
        let bytes = text.as_bytes();
        let (whole, end_whole, _) = relay_bounded(bytes, vec![bytes.len().max(1)], 8192, max_event);
        let (split, end_split, _) = relay_bounded(bytes, sizes, capacity, max_event);
        prop_assert_eq!(&split, &whole, "client output must not depend on chunking");
        prop_assert_eq!(&end_split, &end_whole);
        let longest = text.split_inclusive("\n\n").map(str::len).max().unwrap_or(0);
        prop_assert_eq!(end_whole == End::Complete, longest <= max_event, "{:?}", end_whole);
    }

    #[test]
    fn completion_sees_done_only_as_a_whole_data_line(prefix in "[ a-z:]{0,8}", pad in "[ \t]{0,3}") {
        let mut c = crate::api::Completion::default();
        let line = format!("{prefix}data:{pad}[DONE]{pad}\n");
        c.observe(line.as_bytes());
        prop_assert_eq!(c.complete(), prefix.is_empty());
    }
}
