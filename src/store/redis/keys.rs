//! Keys created through the admin API, in Redis: one hash, `llm-relay:keys`, id → key
//! record, shared by every replica.

use std::collections::HashMap;

use super::{Down, Redis, PREFIX};
use crate::keys_file::StoredKey;
use crate::log;

impl Redis {
    /// Keys created through the admin API on any replica.
    pub fn keys(&self) -> Result<Vec<StoredKey>, Down> {
        let all: HashMap<String, String> =
            self.run(|c| redis::cmd("HGETALL").arg(format!("{PREFIX}keys")).query(c))?;
        let mut keys: Vec<StoredKey> = all
            .values()
            .filter_map(|v| match serde_json::from_str(v) {
                Ok(k) => Some(k),
                Err(e) => {
                    log::error(&format!(
                        "a key record in Redis is unreadable, skipped: {e}"
                    ));
                    None
                }
            })
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    /// Creates or replaces a key record.
    pub fn put_key(&self, key: &StoredKey) -> Result<(), Down> {
        let json = serde_json::to_string(key).map_err(|_| Down)?;
        self.run(|c| {
            redis::cmd("HSET")
                .arg(format!("{PREFIX}keys"))
                .arg(&key.id)
                .arg(json)
                .query::<()>(c)
        })
    }

    /// Deletes a key record; `false` if there was none.
    pub fn delete_key(&self, id: &str) -> Result<bool, Down> {
        let n: u64 = self.run(|c| {
            redis::cmd("HDEL")
                .arg(format!("{PREFIX}keys"))
                .arg(id)
                .query(c)
        })?;
        Ok(n > 0)
    }
}
