//! Recording: [`Cache::store`] keeps a complete success within `max_entry_bytes` (written as a
//! verified file pair, counted, indexed and put in the memory tier).

use std::sync::Arc;

use super::{apis, key, now_precise, store, Cache, Entry, Plan};
use crate::answer::Answer;
use crate::log;

impl Cache {
    /// True if an answer of `len` bytes is too large to store (`cache.max_entry_bytes`): it is
    /// relayed whole but not stored.
    pub fn too_large(&self, len: usize) -> bool {
        len as u64 > self.config.max_entry_bytes
    }

    /// Stores `response` for `plan`, as answered with the effective `model`, if the plan
    /// stores and it is a complete success within `max_entry_bytes`. Returns whether it did.
    /// `read`: the same bytes read (`Answer::read`), shared with the caller's other uses.
    pub fn store(&self, plan: &Plan, model: &str, response: &[u8], read: &Answer) -> bool {
        self.store_timed(plan, model, response, read, &[])
    }

    /// [`Cache::store`] for a stream, with the milliseconds before each of its events.
    pub fn store_timed(
        &self,
        plan: &Plan,
        model: &str,
        response: &[u8],
        read: &Answer,
        gaps: &[u32],
    ) -> bool {
        if !plan.stores()
            || self.too_large(response.len())
            || apis::check_read(&plan.route, response, read).is_err()
        {
            return false;
        }
        let Some(c) = plan.candidates.iter().find(|c| c.model == model) else {
            return false;
        };
        let meta = store::Meta {
            route: plan.route.clone(),
            version: self.config.version,
            created: now_precise(),
            scope: plan.scope.clone(),
            sha256: key::checksum(response),
            recorded_by: plan.recorder.clone(),
            namespace: plan.variant.namespace.clone(),
            sample: plan.variant.sample,
            gaps_ms: gaps.to_vec(),
        };
        let existed = store::request_path(&self.config.dir, &c.key).exists();
        let before = store::referenced_answer(&self.config.dir, &c.key);
        let bytes = (response.len() + c.canonical.len()) as u64;
        if !existed {
            self.counters.created(&c.key, bytes);
        }
        let stamp = match store::save(
            &self.config.dir,
            &c.key,
            &meta,
            &c.canonical,
            response,
            self.config.fsync,
        ) {
            Ok(stamp) => stamp,
            Err(e) => {
                if !existed {
                    self.counters.not_created(&c.key, bytes);
                }
                log::error(&format!(
                    "cannot write cache entry in {}: {e}",
                    self.config.dir.display()
                ));
                return false;
            }
        };
        let now = store::answer_path(&self.config.dir, &c.key, &meta.sha256);
        if let Some(before) = before.filter(|b| *b != now) {
            self.replaced.push(&c.key, before);
        }
        self.index
            .insert(&c.key, &meta, &c.canonical, response.len() as u64);
        self.memory.insert(
            &c.key,
            Arc::new(Entry {
                key: c.key.clone(),
                route: plan.route.clone(),
                usage: read.usage,
                response: response.to_vec(),
                created: meta.created,
                version: meta.version,
                gaps_ms: meta.gaps_ms,
                request: store::request_path(&self.config.dir, &c.key),
            }),
            stamp,
        );
        true
    }
}
