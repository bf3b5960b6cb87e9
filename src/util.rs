//! Small helpers more than one module needs, each written once: lowercase hex, Unix time, an
//! atomic file write, decimal and hex digits appended without a `String`, the token of an
//! `Authorization: Bearer` value, the credential `forward_auth` sends, an API route without
//! its `/v1` prefix, a query parameter of a URL (percent-decoded), fast random numbers and
//! bytes appended without a copy where they can be taken whole. A leaf: it imports nothing of
//! ours.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The suffix of the temp files [`write_atomic`] leaves behind if killed mid-write.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // two digits a byte from a table, as bytes (a `char` push per digit was ~1 k instructions
    // for a cache key's 64 digits; the formatter ~10 k)
    let digit = |nibble: u8| DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
    let mut out = vec![0; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&[digit(b >> 4), digit(b & 0xf)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `n` in lowercase hex without leading zeros (`0` for zero): a chunk's size line,
/// once per relayed event (the formatter's `{:x}` was ~260 instructions of it).
pub fn push_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let nibble = (n >> (i * 4)) & 0xf;
        out.push(DIGITS.get(nibble).copied().unwrap_or(b'0'));
    }
}

/// Appends `n` in decimal, as a `Value`'s number is written: an index or sequence number of
/// each translated event, without a `String` for it.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]).as_bytes());
}

/// `n` in decimal digits, written at the end of `buf` (`u64::MAX` has 20), as the formatter
/// writes it.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(digit) = buf.get_mut(at) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(buf.get(at..).unwrap_or_default()).unwrap_or("0")
}

/// Appends `bytes` to `out`, or takes them whole while `out` is empty: the events of a line
/// added to what a chunk's lines gave before, with no copy for the one line that gives them all.
pub fn append(out: &mut Vec<u8>, bytes: Vec<u8>) {
    if out.is_empty() {
        *out = bytes;
    } else {
        out.extend_from_slice(&bytes);
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never part of
/// one: a temp file beside it (named by [`temp_name`], created exclusively with `mode` on
/// Unix), fsync, rename. Returns the temp file's metadata as written (a rename keeps a file's
/// inode and modification time, so it identifies what was published at `path`). The temp file
/// is removed if a step fails.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<fs::Metadata> {
    write_atomic_synced(path, bytes, mode, true)
}

/// [`write_atomic`], fsyncing the temp file before its rename only with `sync` (without it the
/// file survives a `kill -9`, not a power loss).
pub fn write_atomic_synced(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> io::Result<fs::Metadata> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other(format!("{} is not a file name", path.display())))?;
    let tmp = path.with_file_name(temp_name(name));
    let result = (|| {
        let mut opts = OpenOptions::new();
        // never share a temp file: a name already taken is an error, not a file to truncate
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f: File = opts.open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        let written = f.metadata()?;
        fs::rename(&tmp, path)?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The name of a temp file for `name`: `.NAME.HOST.PID.NONCE.N.tmp`. Unique across hosts and
/// containers sharing a directory: replicas in containers all run as PID 1, so the host name
/// (a container's own), a random per-process nonce and the time it started tell them apart,
/// and a counter tells this process's writes apart.
pub fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{name}.{}.{}.{}{TEMP_SUFFIX}",
        process_tag(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// This process among all that may share a directory: the host name (at most 32 characters
/// of `[A-Za-z0-9-]`) and a random nonce in hex ([`random`], seeded from `/dev/urandom`),
/// fixed for the life of the process.
pub fn process_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host: String = fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default()
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(32)
            .collect();
        let host = if host.is_empty() { "host" } else { &host };
        format!("{host}.{:016x}", random())
    })
}

/// The token of an `Authorization` value `Bearer TOKEN` (scheme case-insensitive, as RFC 9110
/// says), trimmed; `None` for any other scheme.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let v = authorization.trim();
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| v.get(7..).map(str::trim))
        .flatten()
}

/// The client credential `forward_auth` sends upstream: the first `Authorization` or
/// `x-api-key` header, as sent.
pub fn forwarded_credential<'a>(
    mut headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<(&'a str, &'a str)> {
    headers.find(|(n, _)| is_forwarded_credential(n))
}

/// Whether `name` is one of the headers [`forwarded_credential`] chooses from.
pub fn is_forwarded_credential(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("x-api-key")
}

/// The API route of a request path: `/v1/chat/completions` and `/chat/completions` are both
/// `/chat/completions` (clients send either, depending on the base URL they were given).
pub fn api_route(path: &str) -> &str {
    path.strip_prefix("/v1")
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path)
}

/// A random u64: splitmix64 over one process-wide counter, seeded once from `/dev/urandom`
/// (the clock and std's hash keys where it cannot be read). Fast and lock-free; plenty for
/// spreading load and for trace and span ids, not for secrets.
pub fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let _ = STATE.compare_exchange(0, seed() | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of [`random`]: 8 bytes of `/dev/urandom`, else the clock mixed with std's
/// randomly keyed hasher.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The value of `name` in the URL's query string, percent-decoded.
pub fn query(url: &str, name: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|&c| (c as char).to_digit(16))
                .map(|d| d as u8)
        };
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_hex_writes_what_the_formatter_writes() {
        let mut cases: Vec<usize> = (0..4200).collect();
        cases.extend([0xffff, 0x10000, 1 << 31, usize::MAX, usize::MAX >> 4]);
        for n in cases {
            let mut out = b"x".to_vec();
            push_hex(&mut out, n);
            assert_eq!(out, format!("x{n:x}").into_bytes(), "{n}");
        }
    }

    #[test]
    fn push_decimal_writes_what_a_value_writes() {
        let mut cases: Vec<u64> = (0..4200).collect();
        cases.extend([u64::from(u32::MAX), u64::MAX - 1, u64::MAX]);
        for n in cases {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(
                out,
                format!("x{}", serde_json::json!(n)).into_bytes(),
                "{n}"
            );
        }
    }

    #[test]
    fn append_takes_the_first_bytes_whole_and_adds_the_rest() {
        let mut out = Vec::new();
        let first = b"event: a\n\n".to_vec();
        let at = first.as_ptr();
        append(&mut out, first);
        assert_eq!(out.as_ptr(), at, "taken, not copied");
        append(&mut out, Vec::new());
        append(&mut out, b"event: b\n\n".to_vec());
        assert_eq!(out, b"event: a\n\nevent: b\n\n");
    }

    #[test]
    fn helpers() {
        assert_eq!(hex(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(
            query("/a?x=1&q=%22two%22+3", "q").as_deref(),
            Some("\"two\" 3")
        );
        assert_eq!(query("/a?x=1", "q"), None);
        assert_eq!(query("/a?q=%zz%4", "q").as_deref(), Some("%zz%4"));
        assert_eq!(bearer_token("Bearer sk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("  bearer   sk-2"), Some("sk-2"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("sk-3"), None);
        let h = [
            ("Accept", "x"),
            ("X-Api-Key", "k1"),
            ("Authorization", "Basic b"),
        ];
        assert_eq!(
            forwarded_credential(h.iter().copied()),
            Some(("X-Api-Key", "k1"))
        );
        assert_eq!(forwarded_credential(h[..1].iter().copied()), None);
        assert_eq!(api_route("/v1/models"), "/models");
        assert_eq!(api_route("/models"), "/models");
        assert_eq!(api_route("/v1"), "/v1");
        assert_eq!(api_route("/v1x/a"), "/v1x/a");
        assert!(now_secs() > 1_700_000_000);
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("llm-relay-util-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_names_are_unique_across_hosts_containers_and_writes() {
        let (a, b) = (temp_name("k.request"), temp_name("k.request"));
        assert_ne!(a, b, "two writes of one process");
        assert!(
            a.starts_with(".k.request.") && a.ends_with(TEMP_SUFFIX),
            "{a}"
        );
        // the host name and a random nonce come before the PID, which containers share
        let tag = process_tag();
        let (host, nonce) = tag.split_once('.').unwrap();
        assert!(!host.is_empty() && nonce.len() == 16, "{tag}");
        assert!(
            a.contains(&format!(".{tag}.{}.", std::process::id())),
            "{a}"
        );
        // a second process (a replica as PID 1 in another container on the same host) draws
        // another nonce: std seeds each process's hash keys at random
        let other = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "util::tests::print_process_tag", "--nocapture"])
            .env("LLM_RELAY_PRINT_TAG", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&other.stdout);
        let theirs = text.lines().find_map(|l| l.strip_prefix("tag=")).unwrap();
        assert_ne!(theirs, tag);
    }

    #[test]
    fn print_process_tag() {
        if std::env::var("LLM_RELAY_PRINT_TAG").is_ok() {
            println!("tag={}", process_tag());
        }
    }
}
