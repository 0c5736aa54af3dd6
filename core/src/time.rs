//! Timestamps: microseconds since the Unix epoch, UTC, everywhere.
//!
//! The parser is hand-written because it is on the decode hot path (every CloudTrail record has
//! an `eventTime`). It accepts ISO-8601 / RFC 3339 (`2024-05-01T12:00:00Z`,
//! `2024-05-01T12:00:00.123456Z`, `+02:00` offsets) and the space-separated form some exporters
//! write (`2021-10-29 23:50:09`, taken as UTC).

use thiserror::Error;

/// A timestamp that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid timestamp {text:?}: {reason}")]
pub struct TimestampError {
    /// The text, cut to at most 64 bytes.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn err(text: &str, reason: &'static str) -> TimestampError {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    TimestampError {
        text: text[..end].to_string(),
        reason,
    }
}

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`,
/// <https://howardhinnant.github.io/date_algorithms.html>).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day number since 1970-01-01 (inverse of
/// [`days_from_civil`], same source).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an ISO-8601 / RFC 3339 timestamp, or `YYYY-MM-DD HH:MM:SS[.frac]` (UTC), into
/// microseconds since the Unix epoch, UTC. Fractions beyond microseconds are truncated; a
/// missing zone means UTC.
///
/// # Errors
/// [`TimestampError`] when the text is not one of these forms or a field is out of range.
pub fn parse_timestamp_micros(text: &str) -> Result<i64, TimestampError> {
    let b = text.trim().as_bytes();
    if b.len() < 19 {
        return Err(err(text, "too short"));
    }
    let year = digits(b, 0, 4).ok_or_else(|| err(text, "bad year"))?;
    let month = digits(b, 5, 2).ok_or_else(|| err(text, "bad month"))?;
    let day = digits(b, 8, 2).ok_or_else(|| err(text, "bad day"))?;
    if b[4] != b'-' || b[7] != b'-' {
        return Err(err(text, "bad date separator"));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err(text, "bad date/time separator"));
    }
    let hour = digits(b, 11, 2).ok_or_else(|| err(text, "bad hour"))?;
    let minute = digits(b, 14, 2).ok_or_else(|| err(text, "bad minute"))?;
    let second = digits(b, 17, 2).ok_or_else(|| err(text, "bad second"))?;
    if b[13] != b':' || b[16] != b':' {
        return Err(err(text, "bad time separator"));
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return Err(err(text, "date out of range"));
    }
    // Leap second 60 is accepted and folded into the next second, as most systems do.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err(text, "time out of range"));
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if i < b.len() && (b[i] == b'.' || b[i] == b',') {
        i += 1;
        let start = i;
        let mut scale = 100_000i64;
        while i < b.len() && b[i].is_ascii_digit() {
            micros += i64::from(b[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return Err(err(text, "empty fraction"));
        }
    }
    let at_end_or_zulu = i == b.len() || ((b[i] == b'Z' || b[i] == b'z') && i + 1 == b.len());
    let offset_secs: i64 = if at_end_or_zulu {
        0
    } else if b[i] == b'+' || b[i] == b'-' {
        let sign = if b[i] == b'-' { -1 } else { 1 };
        let oh = digits(b, i + 1, 2).ok_or_else(|| err(text, "bad offset"))?;
        let rest = &b[i + 3..];
        let om = match rest {
            [] => 0,
            [b':', m1, m2] | [m1, m2] if m1.is_ascii_digit() && m2.is_ascii_digit() => {
                u32::from(m1 - b'0') * 10 + u32::from(m2 - b'0')
            }
            _ => return Err(err(text, "bad offset")),
        };
        if oh > 23 || om > 59 {
            return Err(err(text, "offset out of range"));
        }
        sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
    } else {
        return Err(err(text, "trailing characters"));
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_secs;
    Ok(secs * MICROS_PER_SEC + micros)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// Formats microseconds since the Unix epoch as RFC 3339 UTC with microseconds, e.g.
/// `2024-05-01T12:00:00.000000Z`.
pub fn format_rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// The Hive partition values of a timestamp: (`YYYY-MM-DD`, `HH`), UTC.
pub fn partition_of(micros: i64) -> (String, String) {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hour:02}"))
}

/// The current wall-clock time in microseconds since the Unix epoch, UTC (0 if the clock is
/// before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_cloudtrail_forms() {
        assert_eq!(parse_timestamp_micros("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp_micros("2021-10-29T23:50:09Z"),
            Ok(1_635_551_409_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2021-10-29 23:50:09"),
            Ok(1_635_551_409_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2021-10-29T23:50:09.123Z"),
            Ok(1_635_551_409_123_000)
        );
        assert_eq!(
            parse_timestamp_micros("2021-10-30T01:50:09+02:00"),
            Ok(1_635_551_409_000_000)
        );
        assert!(parse_timestamp_micros("2021-02-30T00:00:00Z").is_err());
        assert!(parse_timestamp_micros("yesterday").is_err());
        assert!(parse_timestamp_micros("2021-10-29T23:50:09Zjunk").is_err());
    }

    #[test]
    fn formats_and_partitions() {
        assert_eq!(
            format_rfc3339_micros(1_635_551_409_123_456),
            "2021-10-29T23:50:09.123456Z"
        );
        assert_eq!(
            partition_of(1_635_551_409_000_000),
            ("2021-10-29".to_string(), "23".to_string())
        );
        assert_eq!(
            partition_of(-1),
            ("1969-12-31".to_string(), "23".to_string())
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(m in -10_000_000_000_000_000i64..10_000_000_000_000_000i64) {
            prop_assert_eq!(parse_timestamp_micros(&format_rfc3339_micros(m)), Ok(m));
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_timestamp_micros(&s);
        }
    }
}
