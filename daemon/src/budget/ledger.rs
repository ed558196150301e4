//! The ledger: per-budget counters for the current calendar window, reservations made before a request runs,
//! settlement after it ends.
//!
//! Admission rule: a request is admitted by a budget while `used + reserved < limit` (in the limit's unit), and
//! admission adds its estimate to `reserved` under the same lock. Overspend bound: admission only happens while
//! `committed = used + reserved < limit`, so right after it `committed < limit + estimate`; settling replaces an
//! estimate by the actual, which does not raise `committed` when `actual <= estimate`; a window reset only lowers
//! it. Hence `used <= committed < limit + max estimate` at all times, plus whatever actuals exceed their estimates.
//! Requests and concurrent limits reserve exactly 1, so they are never exceeded.
use super::model::{Action, Amount, BudgetSpec, RequestKey, Row};
use super::slot::Slot;
pub use super::slot::{BudgetAlert, BudgetUsage, Denied};
use super::store::Store;
use super::BudgetError;
use crate::sync::MutexExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub(super) struct State {
    slots: Vec<Slot>,
    /// Dirty counters of windows that have ended, waiting for the next flush.
    pub(super) retired: Vec<Row>,
}

pub(super) struct Shared {
    state: Mutex<State>,
    store: Option<Mutex<Store>>,
}

/// Budget counters shared by every request; cheap to clone (all clones are one ledger).
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

impl Ledger {
    /// Opens (or creates) the SQLite file and loads each budget's latest stored window; counters of a window that
    /// has since ended are dropped at first use.
    pub fn open(path: &Path, specs: Vec<BudgetSpec>) -> Result<Ledger, BudgetError> {
        let store = Store::open(path)?;
        let mut slots = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut slot = Slot::new(spec);
            if let Some(row) = store.load_latest(&slot.spec.name, &slot.spec.scope.to_string())? {
                (slot.window_start, slot.used, slot.requests, slot.alerted) =
                    (row.window_start, row.used, row.requests, row.alerted);
            }
            slots.push(slot);
        }
        Ok(Ledger::build(slots, Some(store)))
    }

    /// Counters that live only as long as the ledger (tests, or no data directory).
    pub fn in_memory(specs: Vec<BudgetSpec>) -> Ledger {
        Ledger::build(specs.into_iter().map(Slot::new).collect(), None)
    }

    fn build(slots: Vec<Slot>, store: Option<Store>) -> Ledger {
        let state = Mutex::new(State { slots, retired: Vec::new() });
        Ledger { shared: Arc::new(Shared { state, store: store.map(Mutex::new) }) }
    }

    pub fn specs(&self) -> Vec<BudgetSpec> {
        self.shared.state.locked().slots.iter().map(|s| s.spec.clone()).collect()
    }

    /// Checks every budget matching `key` and, if all admit, reserves `estimate` (prompt tokens + `max_tokens`,
    /// priced) in each. The returned reservation must be settled; dropping it releases it.
    pub fn reserve(&self, key: &RequestKey, estimate: Amount, now_unix_ms: i64) -> Result<Reservation, Denied> {
        let estimate = estimate.sanitized();
        let mut guard = self.shared.state.locked();
        let State { slots, retired } = &mut *guard;
        let matching: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].spec.scope.matches(key)).collect();
        let mut denied: Option<Denied> = None;
        for &i in &matching {
            slots[i].roll(now_unix_ms, retired);
            if let Some(d) = slots[i].check(estimate, now_unix_ms) {
                let rank = |d: &Denied| (d.action == Action::Reject, d.resets_at_unix_ms);
                if denied.as_ref().is_none_or(|best| rank(&d) > rank(best)) {
                    denied = Some(d);
                }
            }
        }
        if let Some(d) = denied {
            return Err(d);
        }
        for &i in &matching {
            let s = &mut slots[i];
            s.in_flight += 1;
            s.reserved.usd += estimate.usd;
            s.reserved.tokens = s.reserved.tokens.saturating_add(estimate.tokens);
        }
        Ok(Reservation { shared: Arc::clone(&self.shared), slots: matching, estimate, open: true })
    }

    /// Current window of every budget, in configuration order.
    pub fn usage(&self, now_unix_ms: i64) -> Vec<BudgetUsage> {
        let mut guard = self.shared.state.locked();
        let State { slots, retired } = &mut *guard;
        slots
            .iter_mut()
            .map(|s| {
                s.roll(now_unix_ms, retired);
                s.usage(now_unix_ms)
            })
            .collect()
    }

    /// Writes changed counters (one transaction). Called by a timer and at shutdown; the request path only
    /// touches memory. No-op for an in-memory ledger.
    pub fn flush(&self) -> Result<(), BudgetError> {
        flush_shared(&self.shared)
    }
}

pub(super) fn flush_shared(shared: &Shared) -> Result<(), BudgetError> {
    let Some(store) = &shared.store else { return Ok(()) };
    // The store lock is taken first and held while snapshotting, so two flushes cannot write out of order; the
    // state lock is held only to copy the dirty rows.
    let mut store = store.locked();
    let rows: Vec<Row> = {
        let mut st = shared.state.locked();
        let mut rows = std::mem::take(&mut st.retired);
        rows.extend(st.slots.iter_mut().filter(|s| s.dirty).map(|s| {
            s.dirty = false;
            s.row()
        }));
        rows
    };
    if rows.is_empty() {
        return Ok(());
    }
    store.write(&rows).inspect_err(|_| {
        // Keep the rows for the next attempt: re-mark current windows dirty, requeue ended ones.
        let mut st = shared.state.locked();
        for row in rows {
            match st.slots.iter_mut().find(|s| s.spec.name == row.budget && s.window_start == row.window_start) {
                Some(slot) => slot.dirty = true,
                None => st.retired.push(row),
            }
        }
    })
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(error) = flush_shared(self) {
            tracing::error!(%error, "could not save budget counters");
        }
    }
}

/// Budget held for one request. Settle it with the real usage; dropping it unsettled releases it (the request
/// never ran), so concurrency slots cannot leak.
#[must_use = "settle the reservation with the real usage"]
pub struct Reservation {
    shared: Arc<Shared>,
    slots: Vec<usize>,
    estimate: Amount,
    open: bool,
}

impl Reservation {
    pub fn estimate(&self) -> Amount {
        self.estimate
    }

    /// Replaces the estimate by `actual` in the current window (streams: the final usage), counts one request,
    /// and returns the alert thresholds this crossed.
    pub fn settle(mut self, actual: Amount, now_unix_ms: i64) -> Vec<BudgetAlert> {
        self.open = false;
        let actual = actual.sanitized();
        let mut alerts = Vec::new();
        let mut guard = self.shared.state.locked();
        let State { slots, retired } = &mut *guard;
        for &i in &self.slots {
            let s = &mut slots[i];
            s.roll(now_unix_ms, retired);
            s.unreserve(self.estimate);
            s.used.usd += actual.usd;
            s.used.tokens = s.used.tokens.saturating_add(actual.tokens);
            s.requests += 1;
            s.dirty = true;
            s.alerts(&mut alerts);
        }
        alerts
    }

    /// Gives the reservation back without counting anything (the request did not run, e.g. it was downgraded).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if std::mem::take(&mut self.open) {
            let mut st = self.shared.state.locked();
            for &i in &self.slots {
                st.slots[i].unreserve(self.estimate);
            }
        }
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (slots, estimate, open) = (&self.slots, self.estimate, self.open);
        f.debug_struct("Reservation").field("slots", slots).field("estimate", &estimate).field("open", &open).finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_now();
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
