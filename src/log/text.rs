//! The text of log lines: fields cleaned of control characters, RFC 3339 timestamps and
//! numbers written digit by digit (no formatter: they are on every access line).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `s` on one line of at most 2,000 characters: control characters escaped, so a message that
/// quotes client input cannot forge log lines.
pub(super) fn one_line(s: &str) -> String {
    escaped(s, 2000, |c| c.is_control())
}

/// Replaces control characters and spaces so one field stays one token.
#[cfg(test)]
fn clean(s: &str) -> String {
    let mut out = String::new();
    clean_into(&mut out, s);
    out
}

/// [`clean`], appended to `out`.
pub(super) fn clean_into(out: &mut String, s: &str) {
    // the usual field (a method, a path, a model name): printable ASCII, copied at once
    if s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()) {
        return out.push_str(s);
    }
    escape_into(out, s, 256, |c| c.is_control() || c == ' ');
}

/// The first `max` characters of `s`, each one `escape` picks written as `\xNN`.
fn escaped(s: &str, max: usize, escape: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    escape_into(&mut out, s, max, escape);
    out
}

/// [`escaped`], appended to `out`.
fn escape_into(out: &mut String, s: &str, max: usize, escape: impl Fn(char) -> bool) {
    for c in s.chars().take(max) {
        if escape(c) {
            let _ = write!(out, "\\x{:02x}", c as u32 & 0xff);
        } else {
            out.push(c);
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-22T20:40:01.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_timestamp(&mut out, t);
    out
}

/// [`timestamp`], appended to `out` digit by digit (no formatter: it is on every access line).
pub(super) fn write_timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = crate::utc::civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    if (0..=9999).contains(&y) {
        digits(out, y.unsigned_abs(), 4);
    } else {
        let _ = write!(out, "{y:04}");
    }
    out.push('-');
    digits(out, u64::from(m), 2);
    out.push('-');
    digits(out, u64::from(day), 2);
    out.push('T');
    digits(out, rem / 3600, 2);
    out.push(':');
    digits(out, rem % 3600 / 60, 2);
    out.push(':');
    digits(out, rem % 60, 2);
    out.push('.');
    digits(out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
}

/// Appends `n` in decimal digits.
pub(super) fn decimal(out: &mut String, n: u64) {
    out.push_str(crate::util::decimal(n, &mut [0; 20]));
}

/// Appends `d` in milliseconds with one decimal, rounded half up (`12.3`).
pub(super) fn tenths(out: &mut String, d: Duration) {
    let tenths = (d.as_nanos() + 50_000) / 100_000;
    decimal(out, u64::try_from(tenths / 10).unwrap_or(u64::MAX));
    out.push('.');
    out.push(char::from(b'0' + (tenths % 10) as u8));
}

/// The last `width` decimal digits of `n`, zero-padded.
fn digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        let digit = (n / 10u64.pow(i) % 10) as u8;
        out.push(char::from(b'0' + digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_379_401_123);
        assert_eq!(timestamp(t), "2026-11-22T20:30:01.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\nb c"), "a\\x0ab\\x20c");
        assert_eq!(one_line("a\nb c\r"), "a\\x0ab c\\x0d");
    }

    #[test]
    fn numbers_are_written_as_the_formatter_writes_them() {
        for n in [0u64, 9, 10, 200, 65_535, u64::MAX] {
            let mut out = String::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for (nanos, text) in [
            (0, "0.0"),
            (49_999, "0.0"),
            (50_000, "0.1"),
            (1_234_567, "1.2"),
            (9_960_000, "10.0"),
            (123_456_789_000, "123456.8"),
        ] {
            let mut out = String::new();
            tenths(&mut out, Duration::from_nanos(nanos));
            assert_eq!(out, text, "{nanos} ns");
        }
    }

    #[test]
    fn a_field_is_cleaned_the_same_on_the_fast_path_and_the_slow() {
        assert_eq!(clean("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(clean(&"m".repeat(300)), "m".repeat(256));
        assert_eq!(clean("caf\u{e9}\u{85}x"), "caf\u{e9}\\x85x");
        assert_eq!(clean("a\u{7f}b"), "a\\x7fb");
    }
}
