//! The UTC calendar that usage and budgets count by: day and month names of unix seconds, their
//! starts, RFC 3339 times. No time-zone database: days and months are UTC.

/// `(year, month, day)` of a unix day number (Howard Hinnant's civil_from_days).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The unix day number of `(year, month, day)` (days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (UTC) of unix seconds `t`.
pub fn day(t: u64) -> String {
    let (y, m, d) = civil((t / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` (UTC) of unix seconds `t`.
pub fn month(t: u64) -> String {
    let (y, m, _) = civil((t / 86_400) as i64);
    format!("{y:04}-{m:02}")
}

/// Unix seconds of the start of `YYYY-MM-DD`, if it is a date.
pub fn parse_day(s: &str) -> Option<u64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // 2026-02-31 is not a date: it must come back as itself
    (civil(days) == (y, m, d)).then_some(days as u64 * 86_400)
}

/// Start of the next UTC day after `t`.
pub fn next_day(t: u64) -> u64 {
    (t / 86_400 + 1) * 86_400
}

/// Start of the next UTC month after `t`.
pub fn next_month(t: u64) -> u64 {
    let (y, m, _) = civil((t / 86_400) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) as u64 * 86_400
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds `t`.
pub fn rfc3339(t: u64) -> String {
    let s = t % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day(t),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(month(1_700_000_000), "2023-11");
        assert_eq!(parse_day("2023-11-14"), Some(1_699_920_000));
        assert_eq!(parse_day("2023-02-30"), None);
        assert_eq!(parse_day("yesterday"), None);
        assert_eq!(next_day(1_700_000_000), 1_700_006_400);
        assert_eq!(rfc3339(next_month(1_700_000_000)), "2023-12-01T00:00:00Z");
        assert_eq!(rfc3339(next_month(1_703_980_800)), "2024-01-01T00:00:00Z");
        assert_eq!(day(951_782_400), "2000-02-29");
    }
}
