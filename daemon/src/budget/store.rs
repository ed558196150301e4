//! SQLite persistence of budget counters, so a restart keeps the current window's spend.
//!
//! The request path only updates memory; [`super::Ledger::flush`] upserts the counters that changed (absolute values,
//! one transaction), driven by a [`super::Flusher`] thread every N ms and once more at shutdown. A crash loses at most
//! one flush interval of spend. The table may share a file with the trace store (own connection, WAL,
//! busy timeout; `PRAGMA user_version` is left to the trace store).
use super::model::{Amount, BudgetError, Row};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS budget_usage (
    budget TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    usd REAL NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    -- alert thresholds already raised in this window (bit 0: 80%, bit 1: 100%)
    alerted INTEGER NOT NULL,
    PRIMARY KEY (budget, scope_key, window_start)
)";
/// Rows of ended windows are kept this long (history for later queries), then deleted on flush.
const HISTORY_MS: i64 = 35 * 24 * 3_600_000;

pub(super) struct Store {
    conn: Connection,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, BudgetError> {
        let conn = crate::state_db::open(path, SCHEMA).map_err(|error| match error {
            crate::state_db::OpenError::CreateDir { path, source } => BudgetError::CreateDir { path, source },
            // Making the database 0600 failed (io::Error); BudgetError has no variant of its own for it yet.
            crate::state_db::OpenError::Private { path, source } => BudgetError::CreateDir { path, source },
            crate::state_db::OpenError::Open { path, source } => BudgetError::Open { path, source },
        })?;
        Ok(Store { conn })
    }

    pub fn load_latest(&self, budget: &str, scope_key: &str) -> Result<Option<Row>, BudgetError> {
        let row = self
            .conn
            .query_row(
                "SELECT window_start, usd, tokens, requests, alerted FROM budget_usage
                 WHERE budget = ?1 AND scope_key = ?2 ORDER BY window_start DESC LIMIT 1",
                params![budget, scope_key],
                |r| {
                    Ok(Row {
                        budget: budget.to_string(),
                        scope_key: scope_key.to_string(),
                        window_start: r.get(0)?,
                        used: Amount { usd: r.get(1)?, tokens: r.get::<_, i64>(2)?.max(0) as u64 },
                        requests: r.get::<_, i64>(3)?.max(0) as u64,
                        alerted: r.get::<_, i64>(4)?.clamp(0, 3) as u8,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn write(&mut self, rows: &[Row]) -> Result<(), BudgetError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO budget_usage (budget, scope_key, window_start, usd, tokens, requests, alerted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (budget, scope_key, window_start) DO UPDATE SET
                 usd = excluded.usd, tokens = excluded.tokens, requests = excluded.requests, alerted = excluded.alerted",
            )?;
            let mut prune = tx.prepare_cached("DELETE FROM budget_usage WHERE budget = ?1 AND window_start < ?2")?;
            for r in rows {
                let (tokens, requests) = (to_i64(r.used.tokens), to_i64(r.requests));
                upsert.execute(params![
                    r.budget,
                    r.scope_key,
                    r.window_start,
                    r.used.usd,
                    tokens,
                    requests,
                    r.alerted
                ])?;
                prune.execute(params![r.budget, r.window_start.saturating_sub(HISTORY_MS)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Action, BudgetSpec, Limit, RequestKey, Scope, Window};
    use crate::budget::{Flusher, Ledger};
    use std::time::Duration;

    const T0: i64 = 1_709_078_400_000; // 2024-02-28T00:00:00Z: the next day (leap day) is in the same month

    fn specs() -> Vec<BudgetSpec> {
        let spec = |name: &str, window, limit| BudgetSpec {
            name: name.into(),
            scope: Scope::Tenant("acme".into()),
            window,
            limit,
            action: Action::Alert,
        };
        vec![spec("usd", Window::Day, Limit::Usd(10.0)), spec("req", Window::Month, Limit::Requests(100))]
    }

    fn spend(ledger: &Ledger, usd: f64, now: i64) {
        let key = RequestKey { tenant: "acme".into(), ..Default::default() };
        let estimate = Amount { usd, tokens: 10 };
        let r = ledger.reserve(&key, estimate, now).expect("admitted");
        let _ = r.settle(estimate, now);
    }

    #[test]
    fn counters_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("budgets.db");
        {
            let ledger = Ledger::open(&path, specs()).expect("open");
            spend(&ledger, 8.5, T0 + 1000);
            spend(&ledger, 0.5, T0 + 2000);
            ledger.flush().expect("flush");
            spend(&ledger, 0.25, T0 + 3000); // saved by the flush on drop
        }
        let ledger = Ledger::open(&path, specs()).expect("reopen");
        let usage = ledger.usage(T0 + 4000);
        assert!((usage[0].used.usd - 9.25).abs() < 1e-9, "{:?}", usage[0]);
        assert_eq!((usage[0].requests, usage[0].used.tokens, usage[1].requests), (3, 30, 3));
        // 80% was raised before the restart and is not raised again in the same window.
        assert!(spend_alerts(&ledger, 0.1, T0 + 5000).is_empty());
        // Next day: the day budget starts from zero, the month budget keeps counting.
        let usage = ledger.usage(T0 + 86_400_000);
        assert_eq!((usage[0].used.usd, usage[0].requests, usage[1].requests), (0.0, 0, 4));
        ledger.flush().expect("flush after the reset");
        drop(ledger);
        let usage = Ledger::open(&path, specs()).expect("reopen").usage(T0 + 86_400_000 + 1);
        assert_eq!((usage[0].requests, usage[1].requests), (0, 4));
    }

    fn spend_alerts(ledger: &Ledger, usd: f64, now: i64) -> Vec<crate::budget::BudgetAlert> {
        let key = RequestKey { tenant: "acme".into(), ..Default::default() };
        let r = ledger.reserve(&key, Amount { usd, tokens: 1 }, now).expect("admitted");
        r.settle(Amount { usd, tokens: 1 }, now)
    }

    #[test]
    fn flusher_writes_on_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("budgets.db");
        let ledger = Ledger::open(&path, specs()).expect("open");
        let flusher = Flusher::start(ledger.clone(), Duration::from_secs(3600)).expect("start");
        spend(&ledger, 1.0, T0);
        drop(flusher);
        let store = Store::open(&path).expect("store");
        let row = store.load_latest("usd", "tenant:acme").expect("load").expect("row");
        assert_eq!((row.window_start, row.requests, row.used.usd), (T0, 1, 1.0));
        assert!(store.load_latest("usd", "tenant:other").expect("load").is_none());
    }
}
