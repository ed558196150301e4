//! Retries of one target: bounded per request, spaced by "full jitter" exponential backoff so clients that failed
//! together do not retry together; and `Retry-After` parsing for targets that say when to come back.
use serde::{Deserialize, Serialize};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest `Retry-After` honoured: a provider asking for an hour should not take a target out of a
/// fallback chain for an hour on one response.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts at one target per request, the first included: 1 means no retry (the chain moves on).
    pub max_attempts_per_target: u32,
    /// Backoff before retry n (from 0) is random in [0, min(max, base * 2^n)).
    #[serde(rename = "base_ms", with = "super::serde_ms::millis")]
    pub base: Duration,
    #[serde(rename = "max_ms", with = "super::serde_ms::millis")]
    pub max: Duration,
    /// No retry is started that would wait past this much time since the request began.
    #[serde(rename = "max_total_ms", with = "super::serde_ms::opt_millis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts_per_target: 1,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_total: None,
        }
    }
}

impl RetryPolicy {
    /// Delay before retry `attempt` (0 for the first retry). "Full jitter" from the AWS Architecture Blog
    /// ("Exponential Backoff And Jitter"): uniform in [0, min(cap, base * 2^attempt)). `rng` yields values in
    /// [0, 1); values outside are clamped and NaN counts as 0, so the result is always within bounds.
    pub fn delay(&self, attempt: u32, rng: &mut impl FnMut() -> f64) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let r = rng();
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        ceiling.mul_f64(r).min(ceiling)
    }

    /// Whether a request that has made `attempts` attempts at this target, `elapsed` since it began, may try
    /// it again after waiting `delay`.
    pub fn may_retry(&self, attempts: u32, elapsed: Duration, delay: Duration) -> bool {
        attempts < self.max_attempts_per_target && self.max_total.is_none_or(|total| elapsed + delay <= total)
    }
}

/// A source of uniform values in [0, 1) for `RetryPolicy::delay`, seeded from the std hasher's random keys
/// (jitter needs spread across processes, not cryptographic quality).
pub fn jitter_rng() -> impl FnMut() -> f64 {
    let state = std::hash::RandomState::new();
    let mut counter = 0u64;
    move || {
        counter = counter.wrapping_add(1);
        let mut hasher = state.build_hasher();
        hasher.write_u64(counter);
        // The top 53 bits fill an f64 mantissa exactly.
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
/// A date in the past means "now" (zero); the result is capped at `RETRY_AFTER_CAP`. The obsolete RFC 850 and
/// asctime date forms are not accepted (no current provider sends them); unparseable values give None.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and an enormous delay is simply capped.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// Seconds since the Unix epoch of an IMF-fixdate; None unless it matches the format exactly.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // "Sun, 06 Nov 1994 08:49:37 GMT": fixed width, so fields are found by position.
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || &b[25..] != b" GMT" {
        return None;
    }
    if b[19] != b':' || b[22] != b':' || !DAYS.contains(&s.get(..3)?) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = s.get(range)?;
        digits.bytes().all(|c| c.is_ascii_digit()).then(|| digits.parse().ok()).flatten()
    };
    let month = MONTHS.iter().position(|m| Some(*m) == s.get(8..11))? as u64 + 1;
    let (day, year) = (num(5..7)?, num(12..16)?);
    let (hour, minute, second) = (num(17..19)?, num(20..22)?, num(23..25)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    // Second 60 is a leap second, which the format allows.
    if year < 1970 || day == 0 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Years from 1970 on (checked above): the day count is not negative.
    let days = u64::try_from(crate::clock::days_from_civil(year as i64, month as u32, day as u32)).ok()?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_and_toml() {
        let p: RetryPolicy = toml::from_str("").expect("empty");
        assert_eq!(p, RetryPolicy::default());
        assert_eq!((p.max_attempts_per_target, p.base, p.max, p.max_total), (1, ms(100), ms(2000), None));
        let p: RetryPolicy = toml::from_str("max_attempts_per_target = 3\nmax_total_ms = 5000").expect("set");
        assert_eq!((p.max_attempts_per_target, p.max_total), (3, Some(ms(5000))));
        assert!(toml::from_str::<RetryPolicy>("base = 1").is_err());
        let round_trip: RetryPolicy = toml::from_str(&toml::to_string(&p).expect("ser")).expect("de");
        assert_eq!(round_trip, p);
    }

    #[test]
    fn full_jitter_is_bounded_and_deterministic() {
        let p = RetryPolicy::default();
        // rng = 1.0 (just past the top) gives the ceiling: base * 2^n, capped at max.
        let mut top = || 1.0;
        let ceilings: Vec<_> = (0..7).map(|n| p.delay(n, &mut top)).collect();
        assert_eq!(ceilings, [ms(100), ms(200), ms(400), ms(800), ms(1600), ms(2000), ms(2000)]);
        assert_eq!(p.delay(u32::MAX, &mut top), ms(2000));
        assert_eq!(p.delay(3, &mut || 0.5), ms(400));
        for bad in [-1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(p.delay(3, &mut || bad), Duration::ZERO);
        }
        assert_eq!(p.delay(3, &mut || f64::INFINITY), ms(800));
        let mut rng = jitter_rng();
        for attempt in 0..40 {
            let d = p.delay(attempt, &mut rng);
            assert!(d <= p.max && d <= p.base.saturating_mul(1 << attempt.min(31)), "{attempt}: {d:?}");
        }
        let values: Vec<f64> = (0..1000).map(|_| rng()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        // Spread, not a constant: both halves of [0, 1) are hit.
        assert!(values.iter().any(|v| *v < 0.5) && values.iter().any(|v| *v >= 0.5));
    }

    #[test]
    fn retries_are_bounded() {
        let p = RetryPolicy { max_attempts_per_target: 3, max_total: Some(ms(1000)), ..RetryPolicy::default() };
        assert!(p.may_retry(1, ms(0), ms(100)));
        assert!(p.may_retry(2, ms(800), ms(200)));
        assert!(!p.may_retry(3, ms(0), ms(0)));
        assert!(!p.may_retry(1, ms(900), ms(101)));
        assert!(!RetryPolicy::default().may_retry(1, ms(0), ms(0)));
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3600", now), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(RETRY_AFTER_CAP));
        for bad in ["", "-1", "1.5", "+3", "soon", "12 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date() {
        // RFC 9110's example: 784111777 seconds after the epoch.
        assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_imf_fixdate("Tue, 29 Feb 2000 23:59:60 GMT"), Some(951_868_800));
        assert_eq!(parse_imf_fixdate("Wed, 31 Dec 2025 12:00:00 GMT"), Some(1_767_182_400));
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now), Some(RETRY_AFTER_CAP));
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:3x GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTé",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
