//! Times as people type them (`--since 10m`) and read them (local clock times).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone};

/// Parses a humantime duration such as "10m", "2h", "1d" or "1h30m" (clap value parser).
pub fn parse_ago(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| format!("{err} (expected a duration like 30s, 10m, 2h or 1d)"))
}

pub fn now_unix_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// `ago` before `now_unix_ms`, never below 1: the API reads 0 as "unbounded", which would turn
/// `--until 100y` (nothing that old) into "no upper bound".
pub fn unix_ms_ago(now_unix_ms: i64, ago: Duration) -> i64 {
    let ago_ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
    now_unix_ms.saturating_sub(ago_ms).max(1)
}

/// `HH:MM:SS` for times on `now`'s date, `YYYY-MM-DD HH:MM:SS` otherwise; "-" for an unset time.
pub fn short_time<Tz: TimeZone>(unix_ms: i64, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let Some(time) = at(unix_ms, &now.timezone()) else {
        return "-".to_owned();
    };
    if time.date_naive() == now.date_naive() {
        time.format("%H:%M:%S").to_string()
    } else {
        time.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` with the zone offset, for detailed views; "-" for an unset time.
pub fn full_time<Tz: TimeZone>(unix_ms: i64, zone: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match at(unix_ms, zone) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S%.3f %:z").to_string(),
        None => "-".to_owned(),
    }
}

fn at<Tz: TimeZone>(unix_ms: i64, zone: &Tz) -> Option<DateTime<Tz>> {
    if unix_ms <= 0 {
        return None;
    }
    zone.timestamp_millis_opt(unix_ms).single()
}

/// Whole seconds as "2h 3m 4s".
pub fn format_uptime(seconds: f64) -> String {
    // `as` saturates and maps NaN to 0, which is what a garbled uptime deserves.
    let whole = Duration::from_secs(seconds.max(0.0) as u64);
    humantime::format_duration(whole).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn ago_accepts_humantime_durations() {
        assert_eq!(parse_ago("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ago("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ago("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ago(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ago("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn ago_rejects_non_durations() {
        for bad in ["", "ten minutes", "10", "-5m", "10 parsecs"] {
            let err = parse_ago(bad).expect_err(bad);
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn ago_counts_back_from_now_and_stays_bounded() {
        let now = 1_717_000_000_000;
        assert_eq!(unix_ms_ago(now, Duration::from_secs(600)), now - 600_000);
        assert_eq!(unix_ms_ago(now, Duration::from_secs(u64::MAX)), 1);
    }

    #[test]
    fn short_time_shows_the_date_only_for_other_days() {
        let now = Utc.with_ymd_and_hms(2024, 5, 29, 16, 0, 0).single().expect("valid date");
        let same_day = Utc.with_ymd_and_hms(2024, 5, 29, 9, 5, 7).single().expect("valid date");
        let day_before = Utc.with_ymd_and_hms(2024, 5, 28, 23, 59, 59).single().expect("valid date");
        assert_eq!(short_time(same_day.timestamp_millis(), &now), "09:05:07");
        assert_eq!(short_time(day_before.timestamp_millis(), &now), "2024-05-28 23:59:59");
        assert_eq!(short_time(0, &now), "-");
    }

    #[test]
    fn full_time_has_millis_and_offset() {
        assert_eq!(full_time(1_717_000_000_123, &Utc), "2024-05-29 16:26:40.123 +00:00");
        assert_eq!(full_time(0, &Utc), "-");
    }

    #[test]
    fn uptime_is_readable() {
        assert_eq!(format_uptime(7384.9), "2h 3m 4s");
        assert_eq!(format_uptime(-1.0), "0s");
    }
}
