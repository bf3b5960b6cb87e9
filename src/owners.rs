//! Object ownership applied to requests: a key reaches only the objects it created through the
//! relay (files, uploads, batches, stored responses, vector stores, fine-tuning jobs; see
//! `objects.rs`), the admin key reaches all of them, and with auth off nothing changes.
//!
//! - An object route (`/v1/files/{id}[/…]`, …) of another key's object, or of an object with
//!   no owner record (made before the relay or at the provider directly), gets the upstream's
//!   own 404 for an unknown id, before anything is sent upstream ([`Owned::refusal`]).
//! - A request body that names another key's object (a batch's `input_file_id`, a
//!   `previous_response_id`, a `file_id` in a message, …) gets the same answer
//!   ([`refused_reference`]).
//! - A creation is recorded when the upstream answers it, before the client sees the answer:
//!   its small JSON answer is read whole (at most [`MAX_WATCHED`] bytes; a larger one is
//!   relayed unread and the object stays the admin's), and so are the answers that make the
//!   upstream create objects on an owned one's behalf (a batch's output file).
//! - Lists are filtered to the caller's objects ([`list`]), following `after` until the page
//!   is full or the upstream has no more, at most [`MAX_PAGES`] upstream pages per request.
//!
//! The registry is `store::Owners` (Redis, `state.dir` or memory). When it cannot be read
//! (Redis down) an owned route is refused with 503: ownership fails closed.

use std::io::Read;

use serde_json::{Map, Value};

use crate::api::Api;
use crate::auth::Client;
use crate::error::ApiError;
use crate::exchange::{json_content_type, Exchange};
use crate::objects::{self, Kind, Route};
use crate::state::State;
use crate::store::Down;
use crate::upstream;

/// The most of an answer read to find the ids it creates (creation answers are a few hundred
/// bytes of JSON).
pub const MAX_WATCHED: usize = 1024 * 1024;

/// Upstream pages one filtered list request reads at most.
pub const MAX_PAGES: usize = 10;

/// The most of one upstream list page read.
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// The registry could not be reached.
fn unavailable(_: Down) -> ApiError {
    ApiError::busy(
        "state_unavailable",
        "the registry of object owners (`state.redis`) cannot be reached, so access to this \
         object cannot be checked; retry shortly"
            .to_string(),
        1,
    )
}

/// An owned-object request of an authenticated caller (the admin key, or a client key).
#[derive(Debug)]
pub struct Owned {
    /// The caller's key id (`objects::ADMIN` for the admin key).
    caller: String,
    pub route: Route,
    method: String,
    /// Who owns what the answer creates: the caller for a creation, else the addressed
    /// object's owner (known after [`Owned::refusal`]).
    owner: Option<String>,
}

impl Owned {
    /// `None` when auth is off or the route involves no owned object.
    pub fn of(client: Option<&Client>, method: &str, route: &str) -> Option<Owned> {
        let client = client?;
        let route = Route::of(method, route);
        route.is_owned().then(|| Owned {
            caller: client.key_id.clone(),
            owner: matches!(route, Route::Create(_)).then(|| client.key_id.clone()),
            route,
            method: method.to_string(),
        })
    }

    fn admin(&self) -> bool {
        self.caller == objects::ADMIN
    }

    /// The answer a caller gets instead of another key's object (the upstream's 404 for an
    /// unknown id), or `None` to go on.
    ///
    /// A creation is refused (503) while the registry cannot be reached: the object would be
    /// made without an owner.
    pub fn refusal(&mut self, state: &State) -> Result<Option<(u16, Vec<u8>)>, ApiError> {
        if let Route::Create(_) = self.route {
            state.gate.owners.reachable().map_err(unavailable)?;
        }
        let Route::Object { kind, id, .. } = &self.route else {
            return Ok(None);
        };
        let owner = state.gate.owners.owner(id).map_err(unavailable)?;
        if !self.admin() && owner.as_deref() != Some(&self.caller) {
            return Ok(Some(kind.not_found(id)));
        }
        self.owner = owner;
        Ok(None)
    }

    /// The list of this kind, filtered for a client key (the admin key sees the whole list).
    pub fn filtered_list(&self) -> Option<Kind> {
        match self.route {
            Route::List(kind) if !self.admin() => Some(kind),
            _ => None,
        }
    }

    /// Whether the answer is read (within [`MAX_WATCHED`]) for the ids it creates or deletes.
    pub fn watches(&self) -> bool {
        objects::watched(&self.route, &self.method)
    }

    /// The answer came (whole, `answer`: its JSON, if it is JSON): records what it created and
    /// forgets what it deleted.
    pub fn answered(&self, state: &State, status: u16, answer: Option<&Value>) {
        if !(200..300).contains(&status) {
            return;
        }
        let owners = &state.gate.owners;
        if let (true, Route::Object { id, .. }) =
            (objects::deletes(&self.route, &self.method), &self.route)
        {
            if owners.forget(id).is_err() {
                crate::log::error(&format!(
                    "the owner of deleted object {id:?} stays recorded"
                ));
            }
            return;
        }
        let (Some(owner), Some(answer)) = (&self.owner, answer) else {
            if matches!(self.route, Route::Create(_)) {
                crate::log::warn(&format!(
                    "the upstream's answer to a creation ({:?}) was not JSON within {} bytes; \
                     the new object's owner is not recorded (only the admin key reaches it)",
                    self.route, MAX_WATCHED
                ));
            }
            return;
        };
        for id in objects::captured(&self.route, &self.method, answer) {
            record(state, &id, owner);
        }
    }
}

/// Records `owner` for `id`, logging a failure.
pub fn record(state: &State, id: &str, owner: &str) {
    if state.gate.owners.record(id, owner).is_err() {
        crate::log::error(&format!(
            "object {id:?} was created, but its owner cannot be recorded (the registry cannot be \
             reached); only the admin key reaches it"
        ));
    }
}

/// For a client key: the answer to a body that names an object the key does not own (the
/// upstream's answer to an unknown id), or `None` to go on.
pub fn refused_reference(
    state: &State,
    client: Option<&Client>,
    body: &Map<String, Value>,
) -> Result<Option<(u16, Vec<u8>)>, ApiError> {
    let Some(client) = client.filter(|c| c.key_id != objects::ADMIN) else {
        return Ok(None);
    };
    let refs = objects::references(body);
    if refs.is_empty() {
        return Ok(None);
    }
    let ids: Vec<&str> = refs.iter().map(|(_, id)| id.as_str()).collect();
    let owners = state.gate.owners.owners(&ids).map_err(unavailable)?;
    Ok(refs
        .iter()
        .zip(owners)
        .find(|(_, owner)| owner.as_deref() != Some(client.key_id.as_str()))
        .map(|((kind, id), _)| objects::unknown_reference(*kind, id)))
}

/// After a native `POST /v1/responses` answer (not `store: false`): records the response's id
/// and its output items' ids as the caller's. `answer` is the whole JSON answer, or the recorded event stream.
pub fn record_response(
    state: &State,
    client: Option<&Client>,
    body: &Map<String, Value>,
    answer: &[u8],
) {
    let Some(client) = client else { return };
    if body.get("store") == Some(&Value::Bool(false)) {
        return;
    }
    for id in response_ids(answer) {
        record(state, &id, &client.key_id);
    }
}

/// After a native `POST /v1/chat/completions` answer with `store: true` (the upstream keeps
/// it, readable at `/v1/chat/completions/{id}`): records its id as the caller's. `answer` is
/// the whole JSON answer, or the recorded event stream (every chunk carries the id).
pub fn record_stored_completion(
    state: &State,
    client: Option<&Client>,
    body: &Map<String, Value>,
    answer: &[u8],
) {
    let Some(client) = client else { return };
    if body.get("store") != Some(&Value::Bool(true)) {
        return;
    }
    let id_of = |v: Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    let id = match crate::json::from_slice::<Value>(answer) {
        Ok(whole) => id_of(whole),
        Err(_) => answer
            .split(|b| *b == b'\n')
            .filter_map(crate::answer::data_payload)
            .filter_map(|data| crate::json::from_slice::<Value>(data).ok())
            .find_map(id_of),
    };
    if let Some(id) = id {
        record(state, &id, &client.key_id);
    }
}

/// The ids a Responses answer stores: the response's and its output items' (which a later
/// `item_reference` may name), from a whole JSON answer or from a stream's events that carry
/// the `response` object (`response.created`, `response.completed`).
fn response_ids(answer: &[u8]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut add = |response: &Value| {
        let items = response.get("output").and_then(Value::as_array);
        let found = std::iter::once(response)
            .chain(items.into_iter().flatten())
            .filter_map(|v| v.get("id").and_then(Value::as_str));
        for id in found {
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_string());
            }
        }
    };
    if let Ok(whole) = crate::json::from_slice::<Value>(answer) {
        add(&whole);
    } else {
        answer
            .split(|b| *b == b'\n')
            .filter_map(crate::answer::data_payload)
            .filter_map(|data| crate::json::from_slice::<Value>(data).ok())
            .for_each(|event| {
                if let Some(response) = event.get("response") {
                    add(response);
                }
            });
    }
    ids
}

/// Reads at most `max` bytes of `body`: the bytes and whether the body ended within them.
pub fn read_prefix(body: &mut dyn Read, max: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let n = body.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf, n <= max))
}

/// `GET` of a list for a client key: the upstream's pages, filtered to the key's objects,
/// following `after` until `limit` objects are found, the upstream has no more, or
/// [`MAX_PAGES`] pages were read. The answer keeps the upstream's list shape; `has_more`
/// says whether more may follow, and `last_id` is where the next page starts (`after`), even
/// when no object on the pages read was the key's.
pub fn list(
    state: &State,
    ex: &mut Exchange,
    owner: &str,
    kind: Kind,
    api: Api,
    target: &str,
    headers: crate::client_headers::ClientHeaders<'_>,
) -> Result<(), ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("after="))
        .collect();
    let limit = params
        .iter()
        .find_map(|p| p.strip_prefix("limit="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(kind.default_limit());
    let mut after = query
        .split('&')
        .find_map(|p| p.strip_prefix("after="))
        .map(str::to_string);
    let mut kept: Vec<Value> = Vec::new();
    let mut template = Map::new();
    let mut has_more = false;
    let mut scanned_last: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        let mut page_params = params.clone();
        let after_param = after.as_ref().map(|a| format!("after={a}"));
        if let Some(a) = &after_param {
            page_params.push(a);
        }
        let page_target = if page_params.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", page_params.join("&"))
        };
        let trace = ex.trace();
        let sent =
            state
                .upstream
                .forward(api, "GET", &page_target, headers, None, trace.as_deref())?;
        ex.access.upstream = sent.base.clone();
        let status = sent.response.status().as_u16();
        let reply_headers = upstream::response_headers(sent.response.headers());
        let mut body = sent.response.into_body().into_reader();
        let (bytes, whole) = read_prefix(&mut body, MAX_PAGE_BYTES).map_err(|e| {
            state.upstream.stream_failed(&sent.endpoint);
            upstream_broke(&sent.base, &e.to_string())
        })?;
        if !whole {
            return Err(upstream_broke(&sent.base, "a list page over 16 MiB"));
        }
        if !(200..300).contains(&status) {
            // the upstream's refusal, as it gave it
            ex.respond(status, &reply_headers, bytes);
            return Ok(());
        }
        let Ok(Value::Object(page)) = crate::json::from_slice::<Value>(&bytes) else {
            return Err(upstream_broke(
                &sent.base,
                "a list page that is not a JSON object",
            ));
        };
        let data = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ids: Vec<&str> = data
            .iter()
            .map(|o| o.get("id").and_then(Value::as_str).unwrap_or(""))
            .collect();
        let owners = state.gate.owners.owners(&ids).map_err(unavailable)?;
        // an upstream that ignores `after` would repeat its page: nothing new, no more pages
        let new_ids = ids.iter().filter(|id| seen.insert(id.to_string())).count();
        let fresh = new_ids > 0;
        if !fresh && !data.is_empty() {
            has_more = false;
            break;
        }
        let upstream_more = page.get("has_more").and_then(Value::as_bool) == Some(true);
        template = page.clone();
        let mut stopped_early = false;
        for (i, (object, who)) in data.iter().zip(owners).enumerate() {
            if kept.len() == limit {
                stopped_early = true;
                break;
            }
            scanned_last = ids.get(i).map(|s| s.to_string());
            if who.as_deref() == Some(owner) {
                kept.push(object.clone());
            }
        }
        if stopped_early {
            has_more = true;
            break;
        }
        has_more = upstream_more;
        if !upstream_more || data.is_empty() || kept.len() == limit {
            break;
        }
        after = scanned_last.clone();
    }
    let id_of = |v: Option<&Value>| v.and_then(|o| o.get("id")).cloned();
    let first = id_of(kept.first()).unwrap_or(Value::Null);
    let last = id_of(kept.last())
        .or_else(|| scanned_last.map(Value::String))
        .unwrap_or(Value::Null);
    if template.contains_key("first_id") || template.is_empty() {
        template.insert("first_id".to_string(), first);
    }
    if template.contains_key("last_id") || template.is_empty() {
        template.insert("last_id".to_string(), last);
    }
    template.insert("object".to_string(), Value::String("list".to_string()));
    template.insert("data".to_string(), Value::Array(kept));
    template.insert("has_more".to_string(), Value::Bool(has_more));
    let body = Value::Object(template).to_string().into_bytes();
    ex.respond(200, &[json_content_type()], body);
    Ok(())
}

fn upstream_broke(base: &str, why: &str) -> ApiError {
    ApiError::new(
        502,
        "server_error",
        "upstream_error",
        format!("upstream {base} sent an unusable list answer: {why}"),
    )
}
