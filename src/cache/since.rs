//! `--since` and `--unused-since` of the `cache` commands: Unix seconds or an RFC 3339 date or
//! UTC time, as Unix seconds.

/// Parses `--since`: Unix seconds, or an RFC 3339 date (`2026-11-01`) or UTC time
/// (`2026-11-01T12:00:00Z`).
pub fn parse_since(s: &str) -> Result<f64, String> {
    if let Ok(n) = s.parse::<f64>() {
        return Ok(n);
    }
    let bad = || {
        format!(
            "--since {s}: give Unix seconds, a date like 2026-11-01 or a UTC time like \
             2026-11-01T12:00:00Z"
        )
    };
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let num = |p: Option<&str>| p.and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut secs = 0i64;
    if let Some(t) = time {
        let mut p = t.split(':');
        let (h, min) = (num(p.next())?, num(p.next())?);
        let sec = p
            .next()
            .map_or(Ok(0.0), |x| x.parse::<f64>().map_err(|_| bad()))?;
        if p.next().is_some() || h > 23 || min > 59 {
            return Err(bad());
        }
        secs = h * 3600 + min * 60;
        return Ok((days_from_civil(y, m, day) * 86_400 + secs) as f64 + sec);
    }
    secs += days_from_civil(y, m, day) * 86_400;
    Ok(secs as f64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_formats() {
        assert_eq!(parse_since("1800000000"), Ok(1_800_000_000.0));
        assert_eq!(parse_since("1970-01-02"), Ok(86_400.0));
        assert_eq!(parse_since("2026-11-29"), Ok(1_795_910_400.0));
        assert_eq!(parse_since("2026-11-29T01:02:03Z"), Ok(1_795_914_123.0));
        for bad in ["yesterday", "2026-13-01", "2026-11-29T01:02:03", "2026-11"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
