//! Budgets: spend and rate limits per scope (global, tenant, route, model) over calendar windows in UTC.
//!
//! The guard reserves an estimate ([`Ledger::reserve`]: prompt tokens + `max_tokens`, priced) before a request
//! runs and settles the real usage after it ends, streams included ([`Reservation::settle`]); a denial says which
//! budget refused and when it resets, and its [`Action`] tells the gateway to reject (429 `budget_exceeded`) or to
//! downgrade to the route's fallback target. `alert` budgets never deny; they raise [`BudgetAlert`]s at 80% and
//! 100%. Counters persist in SQLite ([`Flusher`]). Per-key token buckets ([`RateLimiter`]) cap requests and
//! tokens per minute.
mod config;
mod flusher;
mod ledger;
mod model;
mod rate_limit;
mod slot;
mod store;

pub use config::{specs_from_config, BudgetConfig};
pub use flusher::Flusher;
pub use ledger::{BudgetAlert, BudgetUsage, Denied, Ledger, Reservation};
pub use model::{rfc3339, Action, Amount, BudgetError, BudgetSpec, Limit, RequestKey, Scope, Window};
pub use rate_limit::{RateKind, RateLimited, RateLimiter};
