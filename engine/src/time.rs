//! Timestamps are stored as Unix milliseconds (`BIGINT`) on both backends:
//! one representation, sortable, and decodable through `sqlx::Any`.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-28 22:17 UTC`, for display.
pub fn format_ms(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::from("—");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2026-11-28T22:17:00.000Z` (RFC 3339, UTC), for machines.
pub fn rfc3339_ms(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The start of a UTC day given as `YYYY-MM-DD` (a date input's value),
/// in Unix ms; `None` for anything else.
pub fn parse_date_ms(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let at = date.midnight().assume_utc();
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_known_instant() {
        assert_eq!(format_ms(1_795_904_220_000), "2026-11-28 22:17 UTC");
        assert_eq!(rfc3339_ms(1_795_904_220_042), "2026-11-28T22:17:00.042Z");
        assert_eq!(parse_date_ms("2026-11-28"), Some(1_795_824_000_000));
        assert_eq!(parse_date_ms("2026-02-30"), None);
        assert_eq!(parse_date_ms("yesterday"), None);
    }
}
