//! The ownership registry in Redis: one hash, `llm-relay:owners`, object id → owner key id,
//! shared by every replica (see `store/owners.rs`).

use super::{Down, Redis, PREFIX};

/// The hash holding every owner.
fn hash() -> String {
    format!("{PREFIX}owners")
}

impl Redis {
    /// Records `owner` for object `id`.
    pub fn set_owner(&self, id: &str, owner: &str) -> Result<(), Down> {
        self.run(|c| {
            redis::cmd("HSET")
                .arg(hash())
                .arg(id)
                .arg(owner)
                .query::<()>(c)
        })
    }

    /// Forgets the owner of a deleted object.
    pub fn forget_owner(&self, id: &str) -> Result<(), Down> {
        self.run(|c| redis::cmd("HDEL").arg(hash()).arg(id).query::<()>(c))
    }

    /// The owners of `ids`, in one round trip.
    pub fn owners_of(&self, ids: &[&str]) -> Result<Vec<Option<String>>, Down> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|c| redis::cmd("HMGET").arg(hash()).arg(ids).query(c))
    }
}
