//! Stored translated responses in Redis: one key per response, `llm-relay:response:<id>`,
//! expiring by itself (see `store/responses.rs`).

use super::{Down, Redis, PREFIX};

fn key(id: &str) -> String {
    format!("{PREFIX}response:{id}")
}

impl Redis {
    /// Keeps `json` under response `id` for `ttl` seconds.
    pub fn put_response(&self, id: &str, json: &[u8], ttl: u64) -> Result<(), Down> {
        self.run(|c| {
            redis::cmd("SET")
                .arg(key(id))
                .arg(json)
                .arg("EX")
                .arg(ttl)
                .query::<()>(c)
        })
    }

    /// The stored response `id`.
    pub fn response(&self, id: &str) -> Result<Option<Vec<u8>>, Down> {
        self.run(|c| redis::cmd("GET").arg(key(id)).query(c))
    }

    /// Removes the stored response `id`; true if it was kept.
    pub fn delete_response(&self, id: &str) -> Result<bool, Down> {
        self.run(|c| redis::cmd("DEL").arg(key(id)).query::<u64>(c))
            .map(|n| n > 0)
    }
}
