//! One budget's counters: the current calendar window's usage, live reservations, and the admission rule.
use super::model::{rfc3339, Action, Amount, BudgetSpec, Limit, Row};

const ALERT_80: u8 = 1;
const ALERT_100: u8 = 2;
/// A full concurrency budget frees up when a request ends, not at a window edge; this is the retry hint.
const CONCURRENT_RETRY_MS: i64 = 1000;

/// A budget refused the request. `Reject` wins over `Downgrade`; among equals, the latest reset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    pub budget: String,
    pub action: Action,
    pub resets_at_unix_ms: i64,
    /// Names the budget, its limit, usage and when it resets (RFC 3339 UTC).
    pub message: String,
}

impl Denied {
    /// Whole seconds for the `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self, now_unix_ms: i64) -> u64 {
        let ms = (self.resets_at_unix_ms - now_unix_ms).max(1);
        (ms as u64).div_ceil(1000)
    }
}

/// A budget's usage crossed 80% (action `alert` only) or 100% (every action) of its limit; once per window.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetAlert {
    pub budget: String,
    pub action: Action,
    pub threshold: f64,
    pub used: f64,
    pub limit: f64,
    /// What `used` and `limit` count.
    pub kind: Limit,
    pub window_start: i64,
}

impl BudgetAlert {
    /// "$2.20 of $2.50" or "1200 of 1500 tokens": the amounts with their unit.
    pub fn amounts(&self) -> String {
        match self.kind {
            Limit::Usd(_) => format!("${:.2} of ${:.2}", self.used, self.limit),
            Limit::Tokens(_) => format!("{:.0} of {:.0} tokens", self.used, self.limit),
            Limit::Requests(_) => format!("{:.0} of {:.0} requests", self.used, self.limit),
            Limit::Concurrent(_) => format!("{:.0} of {:.0} concurrent requests", self.used, self.limit),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetUsage {
    pub spec: BudgetSpec,
    pub window_start: i64,
    pub resets_at_unix_ms: i64,
    pub used: Amount,
    /// Settled requests in this window.
    pub requests: u64,
    pub in_flight: u64,
    pub reserved: Amount,
    /// `limit - used` in the limit's unit (`limit - in_flight` for concurrency), never below 0.
    pub remaining: f64,
    /// Limit units per hour over the elapsed part of the window (0 for concurrency).
    pub burn_rate_per_hour: f64,
    /// When `used` reaches the limit at that rate, if before the reset; `now` once exhausted.
    pub projected_exhaustion_unix_ms: Option<i64>,
}

pub(super) struct Slot {
    pub(super) spec: BudgetSpec,
    pub(super) window_start: i64,
    pub(super) used: Amount,
    pub(super) requests: u64,
    pub(super) alerted: u8,
    pub(super) dirty: bool,
    // Reservations are live, not windowed: one started before a reset settles into the window current then.
    pub(super) reserved: Amount,
    pub(super) in_flight: u64,
}

impl Slot {
    pub(super) fn roll(&mut self, now: i64, retired: &mut Vec<Row>) {
        let start = self.spec.window.start_of(now);
        // Only forward: a clock stepping back keeps counting into the newer window.
        if start > self.window_start {
            if self.dirty {
                retired.push(self.row());
            }
            (self.window_start, self.used, self.requests, self.alerted, self.dirty) =
                (start, Amount::default(), 0, 0, false);
        }
    }

    pub(super) fn row(&self) -> Row {
        Row {
            budget: self.spec.name.clone(),
            scope_key: self.spec.scope.to_string(),
            window_start: self.window_start,
            used: self.used,
            requests: self.requests,
            alerted: self.alerted,
        }
    }

    /// Usage in the limit's unit.
    pub(super) fn used_units(&self) -> f64 {
        match self.spec.limit {
            Limit::Usd(_) => self.used.usd,
            Limit::Tokens(_) => self.used.tokens as f64,
            Limit::Requests(_) => self.requests as f64,
            Limit::Concurrent(_) => self.in_flight as f64,
        }
    }

    pub(super) fn check(&self, estimate: Amount, now: i64) -> Option<Denied> {
        let spec = &self.spec;
        let full = match spec.limit {
            _ if spec.action == Action::Alert => return None,
            // Free requests (local models priced at 0) never touch a USD budget.
            Limit::Usd(_) if estimate.usd == 0.0 => return None,
            Limit::Usd(l) => self.used.usd + self.reserved.usd >= l,
            Limit::Tokens(l) => self.used.tokens.saturating_add(self.reserved.tokens) >= l,
            Limit::Requests(l) => self.requests + self.in_flight >= l,
            Limit::Concurrent(l) => self.in_flight >= l,
        };
        if !full {
            return None;
        }
        // Only a denial needs words: admitted requests (the common case) format nothing under the lock.
        let usage = match spec.limit {
            Limit::Usd(l) => format!("${:.4} used + ${:.4} reserved of ${l:.4}", self.used.usd, self.reserved.usd),
            Limit::Tokens(l) => format!("{} tokens used + {} reserved of {l}", self.used.tokens, self.reserved.tokens),
            Limit::Requests(l) => format!("{} requests done + {} in flight of {l}", self.requests, self.in_flight),
            Limit::Concurrent(l) => format!("{} requests in flight of {l}", self.in_flight),
        };
        let (resets_at, when) = match spec.limit {
            Limit::Concurrent(_) => (now + CONCURRENT_RETRY_MS, "frees up when a request in flight ends".to_string()),
            _ => {
                let at = spec.window.next_reset(now);
                (at, format!("resets at {}", rfc3339(at)))
            }
        };
        let window = match spec.limit {
            Limit::Concurrent(_) => String::new(),
            _ => format!(" per {} (UTC)", spec.window.as_str()),
        };
        let message = format!(
            "budget {:?} ({}, {} limit{window}) exhausted: {usage}; {when}",
            spec.name,
            spec.scope,
            spec.limit.unit()
        );
        Some(Denied { budget: spec.name.clone(), action: spec.action, resets_at_unix_ms: resets_at, message })
    }

    pub(super) fn alerts(&mut self, out: &mut Vec<BudgetAlert>) {
        if matches!(self.spec.limit, Limit::Concurrent(_)) {
            return;
        }
        let (used, limit) = (self.used_units(), self.spec.limit.value());
        for (threshold, bit) in [(0.8, ALERT_80), (1.0, ALERT_100)] {
            let wanted = bit == ALERT_100 || self.spec.action == Action::Alert;
            if wanted && self.alerted & bit == 0 && used >= threshold * limit {
                self.alerted |= bit;
                let (budget, action, window_start) = (self.spec.name.clone(), self.spec.action, self.window_start);
                let kind = self.spec.limit;
                out.push(BudgetAlert { budget, action, threshold, used, limit, kind, window_start });
            }
        }
    }

    pub(super) fn unreserve(&mut self, estimate: Amount) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.reserved.tokens = self.reserved.tokens.saturating_sub(estimate.tokens);
        // Float sums drift; with nothing in flight the reservation is exactly zero.
        self.reserved.usd = if self.in_flight == 0 { 0.0 } else { (self.reserved.usd - estimate.usd).max(0.0) };
    }

    pub(super) fn new(spec: BudgetSpec) -> Slot {
        Slot {
            spec,
            window_start: i64::MIN,
            used: Amount::default(),
            requests: 0,
            alerted: 0,
            dirty: false,
            reserved: Amount::default(),
            in_flight: 0,
        }
    }

    pub(super) fn usage(&self, now: i64) -> BudgetUsage {
        let s = self;
        let limit = s.spec.limit.value();
        let used = s.used_units();
        let concurrent = matches!(s.spec.limit, Limit::Concurrent(_));
        let resets_at = s.spec.window.next_reset(now);
        // At least a second elapsed, so the first request of a window does not project an absurd rate.
        let elapsed_h = (now - s.window_start).max(1000) as f64 / 3_600_000.0;
        let rate = if concurrent { 0.0 } else { used / elapsed_h };
        let projected = if concurrent {
            None
        } else if used >= limit {
            Some(now)
        } else if rate > 0.0 {
            let at = now.saturating_add(((limit - used) / rate * 3_600_000.0).ceil().min(i64::MAX as f64) as i64);
            (at < resets_at).then_some(at)
        } else {
            None
        };
        BudgetUsage {
            spec: s.spec.clone(),
            window_start: s.window_start,
            resets_at_unix_ms: resets_at,
            used: s.used,
            requests: s.requests,
            in_flight: s.in_flight,
            reserved: s.reserved,
            remaining: (limit - used).max(0.0),
            burn_rate_per_hour: rate,
            projected_exhaustion_unix_ms: projected,
        }
    }
}
