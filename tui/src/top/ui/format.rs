//! Value formatting the console needs beyond `crate::text`, `crate::when` and `crate::report`: short
//! durations, money, counts, relative times, and text bars and sparklines that honour `--ascii`.
use chrono::{Local, TimeZone, Utc};

use super::theme::Theme;
pub use crate::report::{amount, count, dollars};
use crate::text::UNSET;

/// Which clock wall times are shown in: the user's (`Local`), or UTC so snapshot tests do not depend on the
/// machine's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
}

impl Zone {
    /// `HH:MM:SS`, "-" for an unset time.
    pub fn clock(self, unix_ms: i64) -> String {
        self.format(unix_ms, "%H:%M:%S")
    }

    /// `YYYY-MM-DD HH:MM:SS`, "-" for an unset time.
    pub fn date_time(self, unix_ms: i64) -> String {
        self.format(unix_ms, "%Y-%m-%d %H:%M:%S")
    }

    fn format(self, unix_ms: i64, pattern: &str) -> String {
        if unix_ms <= 0 {
            return UNSET.to_owned();
        }
        let text = match self {
            Zone::Local => Local.timestamp_millis_opt(unix_ms).single().map(|t| t.format(pattern).to_string()),
            Zone::Utc => Utc.timestamp_millis_opt(unix_ms).single().map(|t| t.format(pattern).to_string()),
        };
        text.unwrap_or_else(|| UNSET.to_owned())
    }
}

/// "840 ms", "1.2 s", "2m 05s".
pub fn millis(ms: f64) -> String {
    if !ms.is_finite() {
        return UNSET.to_owned();
    }
    let magnitude = ms.abs();
    let sign = if ms < 0.0 { "-" } else { "" };
    if magnitude < 1000.0 {
        format!("{sign}{magnitude:.0} ms")
    } else if magnitude < 60_000.0 {
        format!("{sign}{:.1} s", magnitude / 1000.0)
    } else {
        let seconds = (magnitude / 1000.0).round() as u64;
        format!("{sign}{}m {:02}s", seconds / 60, seconds % 60)
    }
}

pub fn opt_millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| UNSET.to_owned(), millis)
}

/// A difference with its sign: "+120 ms", "-1.2 s", "0 ms".
pub fn signed_millis(ms: f64) -> String {
    if ms > 0.0 {
        format!("+{}", millis(ms))
    } else {
        millis(ms)
    }
}

pub fn signed_dollars(value: f64) -> String {
    if value > 0.0 {
        format!("+{}", dollars(value))
    } else {
        dollars(value)
    }
}

/// "3h 12m", "45m", "30s", "2d 3h": the two largest units of a span.
pub fn span(ms: i64) -> String {
    let seconds = (ms.max(0) / 1000) as u64;
    let (days, hours, minutes, secs) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// "3m 05s ago", "-" for an unset time.
pub fn ago(now_unix_ms: i64, at_unix_ms: i64) -> String {
    if at_unix_ms <= 0 {
        return UNSET.to_owned();
    }
    format!("{} ago", span(now_unix_ms - at_unix_ms))
}

/// Where a budget runs out at its burn rate: "in 3h 12m", "now", or "not before reset".
pub fn exhaustion(now_unix_ms: i64, projected: Option<i64>) -> String {
    match projected {
        Some(at) if at <= now_unix_ms => "now".to_owned(),
        Some(at) => format!("in {}", span(at - now_unix_ms)),
        None => "not before reset".to_owned(),
    }
}

/// "41.2/80.0 GiB": both in the total's binary unit so they compare at a glance.
pub fn bytes_of(used: u64, total: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut divisor = 1.0_f64;
    let mut unit = 0;
    while total as f64 / divisor >= 1024.0 && unit + 1 < UNITS.len() {
        divisor *= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{used}/{total} B");
    }
    format!("{:.1}/{:.1} {}", used as f64 / divisor, total as f64 / divisor, UNITS[unit])
}

/// Part used of a whole, clamped to 0..=1; `None` when the whole is unknown or zero.
pub fn fraction(used: f64, total: f64) -> Option<f64> {
    (total > 0.0 && used.is_finite()).then(|| (used / total).clamp(0.0, 1.0))
}

/// A `width`-cell bar filled to `fraction` (empty cells only when unknown).
pub fn bar(theme: &Theme, fraction: Option<f64>, width: usize) -> String {
    let (full, empty) = theme.bar_cells();
    let filled = fraction.map_or(0, |f| ((f * width as f64).round() as usize).min(width));
    let mut text = String::with_capacity(width * 3);
    text.extend(std::iter::repeat_n(full, filled));
    text.extend(std::iter::repeat_n(empty, width - filled));
    text
}

/// The newest `width` values as a sparkline scaled to `max` (percentages use 100).
pub fn sparkline<'a>(
    theme: &Theme,
    values: impl DoubleEndedIterator<Item = &'a u64>,
    max: u64,
    width: usize,
) -> String {
    let levels = theme.spark_levels();
    let mut newest: Vec<char> = values
        .rev()
        .take(width)
        .map(|&value| {
            let scaled = value.min(max) as f64 / max.max(1) as f64;
            levels[((scaled * (levels.len() - 1) as f64).round() as usize).min(levels.len() - 1)]
        })
        .collect();
    newest.reverse();
    newest.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        assert_eq!(millis(3.2), "3 ms");
        assert_eq!(millis(1040.0), "1.0 s");
        assert_eq!(millis(125_000.0), "2m 05s");
        assert_eq!(signed_millis(-40.0), "-40 ms");
        assert_eq!(signed_millis(40.0), "+40 ms");
        assert_eq!(span(3 * 3_600_000 + 12 * 60_000), "3h 12m");
        assert_eq!(bytes_of(3 << 29, 8 << 30), "1.5/8.0 GiB");
    }

    #[test]
    fn bars_and_sparklines_fit_their_width() {
        let ascii = Theme { no_color: true, ascii: true };
        assert_eq!(bar(&ascii, Some(0.5), 4), "##..");
        assert_eq!(bar(&ascii, None, 3), "...");
        assert_eq!(sparkline(&ascii, [0, 50, 100].iter(), 100, 2), "=#");
    }
}
