//! How many client connections the relay holds open at once (`max_connections`): the default
//! derived from the process's descriptor limit, so that the relay answers a connection too many
//! with a 503 instead of running out of descriptors. A leaf: `config.rs` calls it.

/// Descriptors one client connection may hold: its socket, tiny_http's second handle on it,
/// and an upstream connection while a miss is relayed.
const FDS_PER_CONNECTION: u64 = 3;
/// Descriptors kept for everything else: the listener, cache files, logs, the keys file.
const RESERVED_FDS: u64 = 64;
/// The default never exceeds this many connections (one thread each), whatever the fd limit.
const DEFAULT_CAP: u64 = 8192;
/// The soft fd limit assumed when `/proc/self/limits` cannot be read.
const ASSUMED_FD_LIMIT: u64 = 1024;

/// The checked `max_connections`: the configured value, or the default for this process.
pub fn max_connections(configured: Option<usize>) -> Result<usize, String> {
    match configured {
        Some(0) => Err("`max_connections` must be at least 1".to_string()),
        Some(n) => Ok(n),
        None => Ok(default_for(soft_fd_limit().unwrap_or(ASSUMED_FD_LIMIT))),
    }
}

/// `(limit - 64) / 3`, at least 1 and at most 8192.
fn default_for(fd_limit: u64) -> usize {
    let n = fd_limit.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    usize::try_from(n.clamp(1, DEFAULT_CAP)).unwrap_or(1)
}

/// The soft `RLIMIT_NOFILE` from `/proc/self/limits` (Linux); None elsewhere or if unlimited.
fn soft_fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_leaves_room_for_each_connection_and_the_rest() {
        assert_eq!(default_for(1024), 320);
        assert_eq!(default_for(20_000), 6645);
        assert_eq!(default_for(1_048_576), 8192);
        assert_eq!(default_for(10), 1);
        assert!(soft_fd_limit().is_some_and(|n| n > 0));
        assert_eq!(max_connections(Some(5)), Ok(5));
        assert!(max_connections(Some(0)).is_err());
    }
}
