//! Answering a cache hit: [`answer_hit`] records what the hit saved and asks the cache what to
//! send ([`cache::hit_answer`]); [`send_hit`] writes it, a plain answer through
//! `exchange::respond` and a stream through [`SseOut`] (paced: each event flushed after its
//! wait, as a live stream would be; else all in as few writes as `SseOut` holds). The cache
//! itself never writes HTTP.

use tiny_http::Request;

use crate::cache::{self, HitAnswer};
use crate::exchange::{respond, Exchange};
use crate::sse_out::{Conn, SseOut};
use crate::state::State;
use crate::stored;
use crate::translate::Translation;

/// How a cache hit is answered: the client's API when its answers are translated, and for a
/// translated Responses request to store, where it goes.
pub(super) struct Keep<'a> {
    translation: Option<&'a Translation>,
    stored: Option<(&'a State, &'a stored::Pending)>,
    client: Option<crate::auth::Client>,
}

impl<'a> Keep<'a> {
    pub(super) fn of(
        state: &'a State,
        ex: &Exchange,
        kept: Option<&'a stored::Pending>,
        translation: Option<&'a Translation>,
    ) -> Keep<'a> {
        Keep {
            translation,
            stored: kept.map(|p| (state, p)),
            client: ex.client().cloned(),
        }
    }
}

/// Answers a cache hit in the shape the client asked for (`keep.translation`: the client's API
/// when its answers are translated), storing a translated Responses answer first.
pub(super) fn answer_hit(
    cache: &cache::Cache,
    plan: &cache::Plan,
    entry: &cache::Entry,
    ex: &mut Exchange,
    delivery: cache::Delivery,
    keep: Keep,
) {
    if ex.answered() {
        return;
    }
    if let Keep {
        stored: Some((state, pending)),
        translation: Some(t),
        ..
    } = &keep
    {
        // a fresh id, stored before the client sees it
        stored::keep_chat(state, keep.client.as_ref(), pending, t, &entry.response);
    }
    let translation = keep.translation;
    cache.served(entry);
    ex.access.cache = Some(crate::log::CacheResult::Hit);
    if let Some(trace) = ex.trace() {
        trace.answer(&entry.route, entry.response.clone(), cache::plain_answer);
    }
    if ex.observed() {
        ex.access.cache_key = Some(entry.key.clone());
    }
    // what the hit saved: the tokens of the stored answer, priced as the model it was sent as
    ex.access.usage = entry.usage.unwrap_or_default();
    ex.access.sent_model = plan.model_of(&entry.key).unwrap_or_default().to_string();
    let hit = cache::hit_answer(entry, delivery, translation, plan.pace);
    // charged before answering, as a miss is, so the client's next request (and the admin's
    // stats) see it: a hit is a 200 whatever the client does with it
    ex.access.status = 200;
    ex.charge();
    ex.answer_with(|req| send_hit(req, hit));
}

/// Writes a hit's answer; returns the status and body bytes written.
fn send_hit(req: Request, hit: HitAnswer) -> (u16, u64) {
    let (key, events, waits) = match hit {
        HitAnswer::Json { key, body } => {
            let [cache, cache_key] = cache::hit_headers(key);
            let headers = [cache, cache_key, ("Content-Type", "application/json")];
            return (200, respond(req, 200, &headers, body));
        }
        HitAnswer::Events { key, events, waits } => (key, events, waits),
    };
    let headers: Vec<(String, String)> = cache::hit_headers(key)
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    // paced, each event goes out at its time; else all are at hand and go out together
    let started = match waits {
        Some(_) => SseOut::start(Conn::of(req), &headers),
        None => SseOut::start_held(Conn::of(req), &headers),
    };
    let Ok(mut out) = started else {
        return (200, 0);
    };
    for (i, e) in events.iter().enumerate() {
        let written = match &waits {
            Some(waits) => {
                if let Some(&wait) = waits.get(i) {
                    std::thread::sleep(wait);
                }
                out.write(e).and_then(|()| out.flush())
            }
            None => out.write(e),
        };
        if written.is_err() {
            return (200, out.bytes);
        }
    }
    let bytes = out.bytes;
    let _ = out.finish();
    (200, bytes)
}
