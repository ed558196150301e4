//! SQLite persistence of alerts, one row per alert (evidence, labels and deliveries as JSON columns).
//!
//! The table lives in the daemon's `state.db` next to other stores, each with its own connection: WAL and a
//! busy timeout let them take turns writing. `PRAGMA user_version` is left to the trace store.
use super::model::{Alert, AlertError, AlertFilter, AlertState, DeliveryStatus, Severity};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    labels TEXT NOT NULL,
    deliveries TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    acknowledged_at_ms INTEGER,
    acknowledged_by TEXT,
    resolved_at_ms INTEGER,
    resolution TEXT,
    occurrences INTEGER NOT NULL
);
-- The dedup invariant, enforced: one active alert per key.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active_key ON alerts (key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at_ms);";

const COLUMNS: &str = "id, key, rule, severity, state, title, message, evidence, labels, deliveries, started_at_ms,
    updated_at_ms, acknowledged_at_ms, acknowledged_by, resolved_at_ms, resolution, occurrences";

/// The last error of a delivery that a restart cut short (it is not resumed).
pub(super) const INTERRUPTED: &str = "daemon stopped before the delivery finished";

pub(super) struct Store {
    conn: Connection,
}

/// A row as SQLite returns it, before the text columns are parsed (rusqlite closures can't return our errors).
struct RawRow {
    id: String,
    key: String,
    rule: String,
    severity: String,
    state: String,
    title: String,
    message: String,
    evidence: String,
    labels: String,
    deliveries: String,
    started_at_ms: i64,
    updated_at_ms: i64,
    acknowledged_at_ms: Option<i64>,
    acknowledged_by: Option<String>,
    resolved_at_ms: Option<i64>,
    resolution: Option<String>,
    occurrences: i64,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        key: r.get(1)?,
        rule: r.get(2)?,
        severity: r.get(3)?,
        state: r.get(4)?,
        title: r.get(5)?,
        message: r.get(6)?,
        evidence: r.get(7)?,
        labels: r.get(8)?,
        deliveries: r.get(9)?,
        started_at_ms: r.get(10)?,
        updated_at_ms: r.get(11)?,
        acknowledged_at_ms: r.get(12)?,
        acknowledged_by: r.get(13)?,
        resolved_at_ms: r.get(14)?,
        resolution: r.get(15)?,
        occurrences: r.get(16)?,
    })
}

impl RawRow {
    fn parse(self) -> Result<Alert, AlertError> {
        let corrupt = |reason: String| AlertError::Corrupt { id: self.id.clone(), reason };
        let json = |what: &str, e: serde_json::Error| corrupt(format!("{what}: {e}"));
        Ok(Alert {
            severity: Severity::parse(&self.severity).ok_or_else(|| corrupt(format!("severity {}", self.severity)))?,
            state: AlertState::parse(&self.state).ok_or_else(|| corrupt(format!("state {}", self.state)))?,
            evidence: serde_json::from_str(&self.evidence).map_err(|e| json("evidence", e))?,
            labels: serde_json::from_str(&self.labels).map_err(|e| json("labels", e))?,
            deliveries: serde_json::from_str(&self.deliveries).map_err(|e| json("deliveries", e))?,
            occurrences: u64::try_from(self.occurrences).unwrap_or(0),
            id: self.id,
            key: self.key,
            rule: self.rule,
            title: self.title,
            message: self.message,
            started_at_unix_ms: self.started_at_ms,
            updated_at_unix_ms: self.updated_at_ms,
            acknowledged_at_unix_ms: self.acknowledged_at_ms,
            acknowledged_by: self.acknowledged_by,
            resolved_at_unix_ms: self.resolved_at_ms,
            resolution: self.resolution,
        })
    }
}

fn to_json<T: serde::Serialize>(id: &str, what: &str, value: &T) -> Result<String, AlertError> {
    serde_json::to_string(value).map_err(|e| AlertError::Corrupt { id: id.to_string(), reason: format!("{what}: {e}") })
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, AlertError> {
        let conn = crate::state_db::open(path, SCHEMA).map_err(|error| match error {
            crate::state_db::OpenError::CreateDir { path, source } => AlertError::CreateDir { path, source },
            crate::state_db::OpenError::Private { path, source } => AlertError::Private { path, source },
            crate::state_db::OpenError::Open { path, source } => AlertError::Open { path, source },
        })?;
        Ok(Store { conn })
    }

    /// Inserts or replaces the whole row.
    pub fn save(&self, a: &Alert) -> Result<(), AlertError> {
        let evidence = to_json(&a.id, "evidence", &a.evidence)?;
        let labels = to_json(&a.id, "labels", &a.labels)?;
        let deliveries = to_json(&a.id, "deliveries", &a.deliveries)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO alerts ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ))?;
        stmt.execute(params![
            a.id,
            a.key,
            a.rule,
            a.severity.as_str(),
            a.state.as_str(),
            a.title,
            a.message,
            evidence,
            labels,
            deliveries,
            a.started_at_unix_ms,
            a.updated_at_unix_ms,
            a.acknowledged_at_unix_ms,
            a.acknowledged_by,
            a.resolved_at_unix_ms,
            a.resolution,
            i64::try_from(a.occurrences).unwrap_or(i64::MAX),
        ])?;
        Ok(())
    }

    pub fn load(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"))?;
        stmt.query_row([id], raw).optional()?.map(RawRow::parse).transpose()
    }

    /// Firing first, then acknowledged, then resolved; newest first within each.
    pub fn list(&self, filter: AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE (?1 IS NULL OR state = ?1)
             ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END,
                      started_at_ms DESC, id DESC
             LIMIT ?2"
        ))?;
        let limit = filter.limit.map_or(-1, i64::from);
        let rows = stmt.query_map(params![filter.state.map(AlertState::as_str), limit], raw)?;
        rows.map(|r| r.map_err(AlertError::from).and_then(RawRow::parse)).collect()
    }

    pub fn active(&self) -> Result<Vec<Alert>, AlertError> {
        let mut all = self.list(AlertFilter { state: Some(AlertState::Firing), limit: None })?;
        all.extend(self.list(AlertFilter { state: Some(AlertState::Acknowledged), limit: None })?);
        Ok(all)
    }

    /// Deliveries left pending by a previous run are not retried: mark them failed so the status is truthful.
    pub fn fail_interrupted(&self) -> Result<usize, AlertError> {
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare("SELECT id FROM alerts WHERE deliveries LIKE '%\"pending\"%'")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            ids
        };
        let mut changed = 0;
        for id in ids {
            let Some(mut alert) = self.load(&id)? else { continue };
            for d in alert.deliveries.iter_mut().filter(|d| d.status == DeliveryStatus::Pending) {
                d.status = DeliveryStatus::Failed;
                d.last_error = Some(INTERRUPTED.to_string());
                changed += 1;
            }
            self.save(&alert)?;
        }
        Ok(changed)
    }
}
