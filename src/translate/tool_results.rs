//! Tool results as chat messages, for both client APIs.
//!
//! A Messages `tool_result` block and a Responses `function_call_output` item become a chat
//! `tool` message: their text parts joined by a blank line (as other text blocks are). Chat
//! `tool` messages carry text only, so images in a tool result go in a `user` message right
//! after the run of `tool` messages (chat wants every `tool` message of a turn directly after
//! the assistant's `tool_calls`): a text part naming the call, then its images; the client's
//! own content of the same turn follows in that message. A result that is only images gets
//! [`ONLY_IMAGES`] as its tool text. Anything else in a tool result (documents, files) is refused
//! by name.

use serde_json::{json, Map, Value};

use super::Untranslatable;

/// Where a tool message keeps its images until [`place_images`] moves them (a name no chat
/// message uses; never sent).
const IMAGES: &str = "relay:images";

/// The tool text of a result that holds images and no text.
pub const ONLY_IMAGES: &str = "(the result is the image in the next message)";

/// The text part that introduces the images of the result of call `id`.
pub fn images_intro(id: &Value) -> Value {
    let id = id.as_str().unwrap_or("");
    json!({"type": "text", "text": format!("Image(s) from the result of tool call {id}:")})
}

/// A Messages `tool_result` block (`at`: its path, e.g. `messages[3].content[0]`).
pub fn anthropic(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let id = block.get("tool_use_id").cloned().unwrap_or(json!(""));
    let part = |p: &Value, here: &str| match p.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Part::Text(text_of(p, "text"))),
        Some("image") => super::anthropic_chat::image(p, &format!("{here}.source"))
            .map(Part::Image)
            .map_err(PartError::Refused),
        other => {
            let other = super::shown(other);
            Err(PartError::Type(format!(
                "a tool result carries text and images, not {other} blocks"
            )))
        }
    };
    tool_message(&id, at, "content", block.get("content"), &part)
}

/// A Responses `function_call_output` item (`at`: its path, e.g. `input[4]`).
pub fn responses(item: &Value, at: &str) -> Result<Value, Untranslatable> {
    let id = item.get("call_id").cloned().unwrap_or(json!(""));
    let part = |p: &Value, here: &str| match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => Ok(Part::Text(text_of(p, "text"))),
        Some("input_image") => super::responses_chat::image(p, &format!("{here}.type"))
            .map(Part::Image)
            .map_err(PartError::Refused),
        other => {
            let other = super::shown(other);
            Err(PartError::Type(format!(
                "a function call output carries text and images, not {other} parts"
            )))
        }
    };
    tool_message(&id, at, "output", item.get("output"), &part)
}

/// One part of a tool result.
enum Part {
    Text(String),
    /// A chat `image_url` part.
    Image(Value),
}

/// The chat `tool` message for the result of call `id`, whose `field` (at `at`) is a string
/// or a list of parts (images kept aside for [`place_images`]).
fn tool_message(
    id: &Value,
    at: &str,
    field: &str,
    content: Option<&Value>,
    part: &dyn Fn(&Value, &str) -> Result<Part, PartError>,
) -> Result<Value, Untranslatable> {
    let mut texts = Vec::new();
    let mut images = Vec::new();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => texts.push(s.clone()),
        Some(Value::Array(parts)) => {
            for (k, p) in parts.iter().enumerate() {
                let here = format!("{at}.{field}[{k}]");
                match part(p, &here) {
                    Ok(Part::Text(t)) => texts.push(t),
                    Ok(Part::Image(i)) => images.push(i),
                    Err(PartError::Refused(e)) => return Err(e),
                    Err(PartError::Type(why)) => {
                        return Err(Untranslatable::new(format!("{here}.type"), why))
                    }
                }
            }
        }
        Some(_) => {
            return Err(Untranslatable::new(
                format!("{at}.{field}"),
                "must be a string or an array of parts",
            ))
        }
    }
    let mut text = texts.join("\n\n");
    if text.is_empty() && !images.is_empty() {
        text = ONLY_IMAGES.to_string();
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("tool"));
    m.insert("tool_call_id".into(), id.clone());
    m.insert("content".into(), json!(text));
    if !images.is_empty() {
        m.insert(IMAGES.into(), Value::Array(images));
    }
    Ok(Value::Object(m))
}

/// Why a part of a tool result is refused.
enum PartError {
    /// Refused where it says (an image's source).
    Refused(Untranslatable),
    /// Its `type` cannot be translated, for this reason.
    Type(String),
}

fn text_of(part: &Value, key: &str) -> String {
    part.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Moves the images of tool messages into a `user` message after their run of `tool`
/// messages: the next message when it is the user's, else a new one.
pub fn place_images(messages: &mut Vec<Value>) {
    if !messages.iter().any(|m| m.get(IMAGES).is_some()) {
        return;
    }
    let mut out = Vec::with_capacity(messages.len() + 1);
    let mut pending: Vec<Value> = Vec::new();
    for mut m in messages.drain(..) {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            if let Some(Value::Array(images)) = m.as_object_mut().and_then(|o| o.remove(IMAGES)) {
                pending.push(images_intro(m.get("tool_call_id").unwrap_or(&Value::Null)));
                pending.extend(images);
            }
            out.push(m);
            continue;
        }
        if !pending.is_empty() {
            let mut parts = std::mem::take(&mut pending);
            if role == "user" {
                match m.get("content") {
                    Some(Value::String(s)) => parts.push(json!({"type": "text", "text": s})),
                    Some(Value::Array(own)) => parts.extend(own.iter().cloned()),
                    _ => {}
                }
                out.push(json!({"role": "user", "content": parts}));
                continue;
            }
            out.push(json!({"role": "user", "content": parts}));
        }
        out.push(m);
    }
    if !pending.is_empty() {
        out.push(json!({"role": "user", "content": pending}));
    }
    *messages = out;
}
