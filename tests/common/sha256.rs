//! SHA-256 as lowercase hex, to write hashed keys the way `keys_file` stores them.

use sha2::{Digest, Sha256};

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
