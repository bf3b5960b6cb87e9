//! The order a translated stream gives the pieces of a chat stream: each content block
//! (Anthropic) or output item (Responses) contiguous and complete, whatever order the upstream
//! interleaves parallel tool calls in.
//!
//! A chat stream may send call 0's head, call 1's head, call 0's arguments, call 1's arguments
//! (every tool-call delta carries its `index`). The clients' formats cannot interleave: a block
//! is opened, filled and closed before the next one opens. So one block streams live (the open
//! one) and the pieces of any other wait, in the order they first appeared. The open block
//! gives way when it is known to be finished: text and reasoning as soon as anything else
//! arrives; a tool call once its arguments form a whole JSON object (nothing valid can follow);
//! every block at the finish. The waiting blocks are then released one after another, their
//! pieces so far as one delta, and the next one streams live from there. Nothing is dropped
//! but whitespace after a call's complete arguments. A piece that names another call `id`
//! than the one its `index` stands for is a new call (Gemini sends whole calls without an
//! `index`).

use serde_json::{json, Value};

use super::Piece;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Reasoning,
    Text,
    /// A tool call, by its chat `index`.
    Call(u64),
}

/// A block as it opens: for a call, its `id` and `name` (from its first piece).
#[derive(Debug, Clone)]
pub struct Block {
    pub key: Key,
    pub id: Value,
    pub name: Value,
}

/// What the translator does next, in the client's order.
#[derive(Debug)]
pub enum Step {
    /// A block opens (the previous one is closed already).
    Open(Block),
    /// More of the open block's text, reasoning or arguments.
    Delta(String),
    /// The open block is complete.
    Close,
}

#[derive(Debug)]
struct Pending {
    block: Block,
    /// Its text so far: for a waiting block, what is not yet sent; for the open block, a call's
    /// arguments so far (to tell when they are whole), nothing for text or reasoning (the
    /// translator keeps what its events need).
    text: String,
}

/// The reordering state of one stream.
#[derive(Debug, Default)]
pub struct Order {
    open: Option<Pending>,
    waiting: Vec<Pending>,
    /// Calls already closed (a later piece of one is whitespace after its arguments).
    closed: Vec<u64>,
    /// Per chat `index`: the id of the call it stands for now, and that call's key index (a
    /// piece with another id under the same `index` is another call: upstreams that send each
    /// call whole without an `index` number them all 0).
    calls: Vec<(u64, Option<String>, u64)>,
}

/// Key indexes of calls that reuse a chat `index` count up from here.
const REUSED: u64 = 1 << 32;

impl Order {
    /// Whether a text or reasoning piece continues the open block while nothing waits (most
    /// of a long answer): its only step would be a delta of `piece`'s own text, which the
    /// caller then writes straight from it (no step list, no copy of the text). False, with
    /// nothing done, for any other piece: it takes [`Order::piece`].
    pub fn live(&self, piece: &Piece<'_>) -> bool {
        let key = match piece {
            Piece::Reasoning(_) => Key::Reasoning,
            Piece::Text(_) => Key::Text,
            Piece::Call { .. } => return false,
        };
        self.waiting.is_empty() && self.open.as_ref().is_some_and(|o| o.block.key == key)
    }

    /// The pieces of one chunk → the steps they allow now.
    pub fn pieces<'a>(&mut self, pieces: impl IntoIterator<Item = Piece<'a>>) -> Vec<Step> {
        let mut steps = Vec::new();
        for piece in pieces {
            self.piece(piece, &mut steps);
        }
        steps
    }

    /// One piece of the stream → the steps it allows now.
    pub fn piece(&mut self, piece: Piece<'_>, out: &mut Vec<Step>) {
        let (key, text, call) = match piece {
            Piece::Reasoning(r) => (Key::Reasoning, r, None),
            Piece::Text(t) => (Key::Text, t, None),
            Piece::Call {
                index,
                call,
                arguments,
            } => (Key::Call(self.call_key(index, call)), arguments, Some(call)),
        };
        if let Some(open) = self.open.as_mut().filter(|o| o.block.key == key) {
            if !text.is_empty() {
                if matches!(key, Key::Call(_)) {
                    open.text.push_str(text);
                }
                out.push(Step::Delta(text.to_string()));
            }
        } else if let Some(w) = self.waiting.iter_mut().find(|w| w.block.key == key) {
            w.text.push_str(text);
        } else if matches!(key, Key::Call(i) if self.closed.contains(&i)) {
            // only whitespace can follow a whole JSON object
        } else {
            let (id, name) = head(key, call);
            self.waiting.push(Pending {
                block: Block { key, id, name },
                text: text.to_string(),
            });
        }
        self.advance(out, false);
    }

    /// The key index of a call piece with chat `index`: the index itself for its first call, a
    /// new one when a piece names another `id` than the call the index stands for.
    fn call_key(&mut self, index: u64, call: &Value) -> u64 {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty());
        let reused = self.calls.iter().filter(|(_, _, k)| *k >= REUSED).count() as u64;
        match self.calls.iter_mut().find(|(i, _, _)| *i == index) {
            None => {
                self.calls.push((index, id.map(str::to_string), index));
                index
            }
            Some((_, known, key)) => match (id, known.as_deref()) {
                (Some(new), Some(old)) if new != old => {
                    *key = REUSED + reused;
                    *known = Some(new.to_string());
                    *key
                }
                (Some(new), None) => {
                    *known = Some(new.to_string());
                    *key
                }
                _ => *key,
            },
        }
    }

    /// The stream's content is over (its finish, or its end): every block, in order.
    pub fn finish(&mut self, out: &mut Vec<Step>) {
        self.advance(out, true);
        if self.open.take().is_some() {
            out.push(Step::Close);
        }
    }

    /// Closes the open block while it is finished and another waits, and opens the next.
    fn advance(&mut self, out: &mut Vec<Step>, all: bool) {
        while !self.waiting.is_empty() {
            if let Some(open) = &self.open {
                if !all && !finished(open) {
                    return;
                }
                if let Key::Call(i) = open.block.key {
                    self.closed.push(i);
                }
                self.open = None;
                out.push(Step::Close);
            }
            let mut next = self.waiting.remove(0);
            out.push(Step::Open(next.block.clone()));
            if !next.text.is_empty() {
                // a call keeps its arguments to tell when they are whole; text moves out
                let text = if matches!(next.block.key, Key::Call(_)) {
                    next.text.clone()
                } else {
                    std::mem::take(&mut next.text)
                };
                out.push(Step::Delta(text));
            }
            self.open = Some(next);
        }
    }
}

/// Whether the open block can give way: text and reasoning always, a call once its arguments
/// are a whole JSON object (checked only when they end in `}`).
fn finished(open: &Pending) -> bool {
    match open.block.key {
        Key::Call(_) => {
            open.text.trim_end().ends_with('}')
                && serde_json::from_str::<Value>(&open.text).is_ok_and(|v| v.is_object())
        }
        Key::Text | Key::Reasoning => true,
    }
}

/// The `id` and `name` of a call from its first piece (`call_<index>` when it has no id).
fn head(key: Key, call: Option<&Value>) -> (Value, Value) {
    let Key::Call(index) = key else {
        return (Value::Null, Value::Null);
    };
    let call = call.unwrap_or(&Value::Null);
    let id = call
        .get("id")
        .filter(|i| i.is_string())
        .cloned()
        .unwrap_or_else(|| json!(format!("call_{index}")));
    let name = call.pointer("/function/name").cloned().unwrap_or(json!(""));
    (id, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(index: u64, id: Option<&str>, args: &str) -> Value {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["function"]["name"] = json!(format!("tool{index}"));
        }
        c
    }

    /// Feeds calls (index, head?, args) and returns the steps as text.
    fn run(calls: &[Value]) -> Vec<String> {
        let mut order = Order::default();
        let mut out = Vec::new();
        for c in calls {
            let piece = Piece::Call {
                index: c["index"].as_u64().unwrap_or(0),
                call: c,
                arguments: c["function"]["arguments"].as_str().unwrap_or(""),
            };
            order.piece(piece, &mut out);
        }
        order.finish(&mut out);
        out.iter()
            .map(|s| match s {
                Step::Open(b) => format!("open {}", b.id.as_str().unwrap_or("")),
                Step::Delta(d) => format!("delta {d}"),
                Step::Close => "close".to_string(),
            })
            .collect()
    }

    #[test]
    fn interleaved_calls_come_out_one_after_another_complete() {
        let steps = run(&[
            call(0, Some("a"), ""),
            call(1, Some("b"), ""),
            call(0, None, "{\"x\":"),
            call(1, None, "{\"y\":"),
            call(0, None, "1}"),
            call(1, None, "2}"),
        ]);
        assert_eq!(
            steps,
            [
                "open a",
                "delta {\"x\":",
                "delta 1}",
                "close",
                "open b",
                "delta {\"y\":",
                "delta 2}",
                "close"
            ]
        );
    }

    #[test]
    fn whole_calls_without_an_index_stay_apart() {
        let whole = |id: &str, args: &str| {
            json!({"id": id, "type": "function",
                   "function": {"name": format!("t_{id}"), "arguments": args}})
        };
        // each call whole in its own chunk, no `index` (split_chunk numbers each list from 0)
        let steps = run(&[
            json!({"index": 0, "id": "a", "function": {"name": "t", "arguments": "{\"x\":1}"}}),
            {
                let mut b = whole("b", "{\"y\":2}");
                b["index"] = json!(0);
                b
            },
        ]);
        assert_eq!(
            steps,
            [
                "open a",
                "delta {\"x\":1}",
                "close",
                "open b",
                "delta {\"y\":2}",
                "close"
            ]
        );
    }

    #[test]
    fn sequential_calls_stream_live() {
        let mut order = Order::default();
        let mut out = Vec::new();
        let a = call(0, Some("a"), "{}");
        order.piece(
            Piece::Call {
                index: 0,
                call: &a,
                arguments: "{}",
            },
            &mut out,
        );
        let b = call(1, Some("b"), "{\"y\"");
        order.piece(
            Piece::Call {
                index: 1,
                call: &b,
                arguments: "{\"y\"",
            },
            &mut out,
        );
        // call 1 opened as soon as call 0's arguments were whole, without waiting for the end
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(matches!(&out[3], Step::Open(b) if b.id == "b"));
    }

    /// Whenever `live` says yes, `piece` would have given exactly one delta of the piece's own
    /// text (what the translators write without asking): checked along a stream that opens,
    /// interleaves and closes text, reasoning and calls.
    #[test]
    fn live_is_a_delta_of_the_piece_itself() {
        let a = call(0, Some("a"), "{\"x\":");
        let a2 = call(0, None, "1}");
        let b = call(1, Some("b"), "{");
        let pieces = [
            Piece::Reasoning("think "),
            Piece::Reasoning("more"),
            Piece::Text("Hi"),
            Piece::Text(" there"),
            Piece::Call {
                index: 0,
                call: &a,
                arguments: "{\"x\":",
            },
            Piece::Call {
                index: 1,
                call: &b,
                arguments: "{",
            },
            Piece::Text("late"),
            Piece::Call {
                index: 0,
                call: &a2,
                arguments: "1}",
            },
            Piece::Text("after"),
            Piece::Text(""),
        ];
        let mut order = Order::default();
        let mut lives = 0;
        for piece in pieces {
            let live = order.live(&piece);
            let text = match piece {
                Piece::Text(t) | Piece::Reasoning(t) => Some(t),
                Piece::Call { .. } => None,
            };
            let mut out = Vec::new();
            order.piece(piece, &mut out);
            if live {
                lives += 1;
                let text = text.unwrap_or_default();
                match out.as_slice() {
                    [] => assert!(text.is_empty()),
                    [Step::Delta(d)] => assert_eq!(d, text),
                    other => panic!("live piece {text:?} gave {other:?}"),
                }
            }
        }
        // the second reasoning and text pieces, and nothing while a call's block waited
        assert_eq!(lives, 2);
    }
}
