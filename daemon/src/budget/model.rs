//! Budget vocabulary: scopes, calendar windows (UTC), limits, actions, and the `[[budgets]]` config form.
use crate::clock::{civil_from_days, days_from_civil};
use serde::{Deserialize, Serialize};
use std::fmt;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget {name:?}: {message}")]
    Invalid { name: String, message: String },
    #[error("budget ledger {path}: {source}")]
    Open { path: std::path::PathBuf, source: rusqlite::Error },
    #[error("cannot create the directory of the budget ledger {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("budget ledger: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Who a request is, as far as budgets care. `model` is the model of the target about to serve it, so a
/// downgrade re-reserves under the fallback's model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub tenant: String,
    pub route: String,
    pub model: String,
}

/// What a budget counts. A scoped budget is one counter for that one tenant/route/model (no per-tenant expansion
/// of a wildcard: give each tenant its own budget).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    #[default]
    Global,
    Tenant(String),
    Route(String),
    Model(String),
}

impl Scope {
    pub fn matches(&self, key: &RequestKey) -> bool {
        match self {
            Scope::Global => true,
            Scope::Tenant(t) => *t == key.tenant,
            Scope::Route(r) => *r == key.route,
            Scope::Model(m) => *m == key.model,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Tenant(t) => write!(f, "tenant:{t}"),
            Scope::Route(r) => write!(f, "route:{r}"),
            Scope::Model(m) => write!(f, "model:{m}"),
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("invalid scope {s:?}: expected \"global\", \"tenant:NAME\", \"route:NAME\" or \"model:NAME\"");
        if s == "global" {
            return Ok(Scope::Global);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let name = name.to_string();
        match kind {
            "tenant" => Ok(Scope::Tenant(name)),
            "route" => Ok(Scope::Route(name)),
            "model" => Ok(Scope::Model(name)),
            _ => Err(bad()),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

/// Calendar windows in UTC: a day budget resets at 00:00Z, a month budget at 00:00Z on the 1st (not rolling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    /// Start (Unix ms) of the window containing `unix_ms`.
    pub fn start_of(self, unix_ms: i64) -> i64 {
        match self {
            Window::Minute => unix_ms.div_euclid(MINUTE_MS) * MINUTE_MS,
            Window::Hour => unix_ms.div_euclid(HOUR_MS) * HOUR_MS,
            Window::Day => unix_ms.div_euclid(DAY_MS) * DAY_MS,
            Window::Month => {
                let (y, m, _) = civil_from_days(unix_ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    /// Start (Unix ms) of the window after the one containing `unix_ms`: when the counters reset.
    pub fn next_reset(self, unix_ms: i64) -> i64 {
        match self {
            Window::Minute => self.start_of(unix_ms) + MINUTE_MS,
            Window::Hour => self.start_of(unix_ms) + HOUR_MS,
            Window::Day => self.start_of(unix_ms) + DAY_MS,
            Window::Month => {
                let (y, m, _) = civil_from_days(unix_ms.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }
}

/// RFC 3339 UTC, second precision: `2024-03-01T00:00:00Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Usd(f64),
    Tokens(u64),
    Requests(u64),
    /// In-flight requests; not windowed.
    Concurrent(u64),
}

impl Limit {
    pub fn value(self) -> f64 {
        match self {
            Limit::Usd(v) => v,
            Limit::Tokens(v) | Limit::Requests(v) | Limit::Concurrent(v) => v as f64,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Limit::Usd(_) => "usd",
            Limit::Tokens(_) => "tokens",
            Limit::Requests(_) => "requests",
            Limit::Concurrent(_) => "concurrent",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// OpenAI-shaped 429 `budget_exceeded` with `Retry-After`.
    #[default]
    Reject,
    /// Serve from the route's cheaper fallback target.
    Downgrade,
    /// Never denies; raises alerts at 80% and 100%.
    Alert,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    pub name: String,
    pub scope: Scope,
    /// Ignored by `Limit::Concurrent`.
    pub window: Window,
    pub limit: Limit,
    pub action: Action,
}

/// Cost of a request: an estimate at reservation, the real usage at settlement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amount {
    pub usd: f64,
    pub tokens: u64,
}

impl Amount {
    /// NaN, negative or infinite USD count as 0: a pricing bug must not poison the counters.
    pub(crate) fn sanitized(self) -> Amount {
        let usd = if self.usd.is_finite() && self.usd > 0.0 { self.usd } else { 0.0 };
        Amount { usd, tokens: self.tokens }
    }
}

/// One budget's counters for one window.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub budget: String,
    /// The scope as configured: a budget renamed to another scope starts from zero.
    pub scope_key: String,
    pub window_start: i64,
    pub used: Amount,
    pub requests: u64,
    pub alerted: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    #[test]
    fn month_windows_across_month_ends_and_leap_years() {
        let w = Window::Month;
        // 2024 is a leap year: Feb 29 belongs to February, the reset is March 1.
        assert_eq!(w.start_of(1_709_164_800 * S + 5), 1_706_745_600 * S);
        assert_eq!(w.next_reset(1_709_164_800 * S + 5), 1_709_251_200 * S);
        assert_eq!(w.start_of(1_709_251_200 * S), 1_709_251_200 * S);
        assert_eq!(w.start_of(1_709_251_200 * S - 1), 1_706_745_600 * S);
        // 2023 is not: February ends on the 28th.
        assert_eq!(w.next_reset(1_675_209_600 * S), 1_677_628_800 * S);
        // December rolls into the next year.
        assert_eq!(w.next_reset(1_733_011_200 * S + 12_345), 1_735_689_600 * S);
        // 2000 is a leap year (divisible by 400), 1900 is not.
        assert_eq!(w.next_reset(949_363_200 * S), 951_868_800 * S);
        assert_eq!(w.next_reset(-2_206_310_400 * S), -2_203_891_200 * S);
        assert_eq!(w.start_of(-1), -2_678_400 * S);
    }

    #[test]
    fn fixed_windows() {
        let t = 1_709_164_800 * S + 3_723_456; // 2024-02-29T01:02:03.456Z
        assert_eq!(Window::Minute.start_of(t), 1_709_164_800 * S + 3_720_000);
        assert_eq!(Window::Minute.next_reset(t), 1_709_164_800 * S + 3_780_000);
        assert_eq!(Window::Hour.start_of(t), 1_709_164_800 * S + 3_600_000);
        assert_eq!(Window::Day.start_of(t), 1_709_164_800 * S);
        assert_eq!(Window::Day.next_reset(t), 1_709_251_200 * S);
        assert_eq!(Window::Day.start_of(-1), -DAY_MS);
        assert_eq!(rfc3339(t), "2024-02-29T01:02:03Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
