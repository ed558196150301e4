//! The evaluation tables in `state.db` (own connection, WAL, busy timeout, like the other state stores):
//! datasets, their items (each stored in its JSONL shape), runs and their per-item results (JSON). Count
//! bounds are checked inside the write transaction. A run still marked running when the daemon opens the
//! store was cut short by a stop, and is marked cancelled.
use super::evaluate::judge::PairOutcome;
use super::evaluate::stats::Comparison;
use super::item::{DatasetItem, NewItem};
use super::{limits, EvalError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS eval_datasets (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    route TEXT NOT NULL,
    evaluators TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS eval_items (
    dataset TEXT NOT NULL,
    id INTEGER NOT NULL,
    -- the JSONL shape
    item TEXT NOT NULL,
    -- '' for imported items
    source_trace TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (dataset, id)
);
CREATE INDEX IF NOT EXISTS eval_items_by_trace ON eval_items (dataset, source_trace);
CREATE TABLE IF NOT EXISTS eval_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    status TEXT NOT NULL,
    -- JSON: RunRecord
    run TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS eval_runs_by_dataset ON eval_runs (dataset, seq);
CREATE TABLE IF NOT EXISTS eval_results (
    run INTEGER NOT NULL,
    item INTEGER NOT NULL,
    -- JSON: StoredResult
    result TEXT NOT NULL,
    PRIMARY KEY (run, item)
);";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub name: String,
    pub description: String,
    pub route: String,
    pub evaluators_json: String,
    pub items: u32,
    pub created_at_unix_ms: i64,
    pub updated_at_unix_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Running,
    Passed,
    Failed,
    Error,
    Cancelled,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SummaryRecord {
    pub name: String,
    pub kind: String,
    pub passed: u32,
    pub scored: u32,
    pub pass_rate: f64,
    pub mean_score: f64,
    pub threshold: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ComparisonRecord {
    /// A run id, or `route:NAME`.
    pub baseline: String,
    /// Stored beside `baseline`, as one flat object.
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A run as stored (the gRPC `EvalRun`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub dataset: String,
    pub route: String,
    pub prompt: String,
    pub baseline_run: String,
    pub against_route: String,
    pub status: RunStatus,
    pub verdict: String,
    pub items_total: u32,
    pub items_done: u32,
    pub items_passed: u32,
    pub items_errored: u32,
    pub evaluators: Vec<SummaryRecord>,
    pub comparison: Option<ComparisonRecord>,
    pub started_at_unix_ms: i64,
    pub finished_at_unix_ms: i64,
    pub evaluators_json: String,
    pub parameters_json: String,
    pub by: String,
    pub judge_input_tokens: u64,
    pub judge_output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub name: String,
    pub passed: bool,
    pub score: f64,
    pub reasoning: String,
}

/// One item's result in a run (the gRPC `EvalItemResult`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StoredResult {
    pub item_id: u32,
    pub trace_id: String,
    pub output: String,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    /// Why the request failed; empty when answered.
    pub error: String,
    pub passed: bool,
    /// The fraction of the item's evaluators that passed (what paired comparisons compare).
    pub score: f64,
    pub results: Vec<OutcomeRecord>,
    pub reference: String,
    pub input_preview: String,
    pub against_trace_id: String,
    pub against_output: String,
    /// The against route's answer's score (the fraction of its evaluators that passed).
    #[serde(default)]
    pub against_score: Option<f64>,
    /// For the candidate; `None` without a pairwise judge.
    pub pairwise: Option<PairOutcome>,
    pub pairwise_reasoning: String,
}

pub struct EvalStore {
    conn: Connection,
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// `run-17` -> 17.
pub fn run_seq(id: &str) -> Option<i64> {
    id.strip_prefix("run-").and_then(|n| n.parse().ok()).filter(|n: &i64| *n > 0)
}

impl EvalStore {
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let conn = crate::state_db::open(path, SCHEMA).map_err(|error| EvalError::Store(error.to_string()))?;
        let store = Self { conn };
        store.cancel_interrupted()?;
        Ok(store)
    }

    fn cancel_interrupted(&self) -> Result<(), EvalError> {
        let mut statement = self.conn.prepare("SELECT seq, run FROM eval_runs WHERE status = 'running'")?;
        let interrupted: Vec<(i64, String)> =
            statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        for (seq, json) in interrupted {
            let mut run: RunRecord = serde_json::from_str(&json).unwrap_or_default();
            run.status = RunStatus::Cancelled;
            run.verdict = "cancelled: the daemon stopped during the run".into();
            self.update_run(seq, &run)?;
        }
        Ok(())
    }

    pub fn create_dataset(&mut self, dataset: &Dataset, update_existing: bool) -> Result<Dataset, EvalError> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM eval_datasets WHERE name = ?1", [&dataset.name], |_| Ok(true))
            .optional()?
            .is_some();
        if exists && !update_existing {
            return Err(EvalError::DatasetExists(dataset.name.clone()));
        }
        let now = crate::clock::unix_ms();
        if exists {
            tx.execute(
                "UPDATE eval_datasets SET description = ?2, route = ?3, evaluators = ?4, updated_at_ms = ?5 WHERE name = ?1",
                params![dataset.name, dataset.description, dataset.route, dataset.evaluators_json, now],
            )?;
        } else {
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM eval_datasets", [], |r| r.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= limits::MAX_DATASETS {
                return Err(EvalError::Full(format!("at most {} datasets may exist", limits::MAX_DATASETS)));
            }
            tx.execute(
                "INSERT INTO eval_datasets VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![dataset.name, dataset.description, dataset.route, dataset.evaluators_json, now],
            )?;
        }
        tx.commit()?;
        self.dataset(&dataset.name)?.ok_or_else(|| EvalError::NoSuchDataset(dataset.name.clone()))
    }

    pub fn dataset(&self, name: &str) -> Result<Option<Dataset>, EvalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, description, route, evaluators, created_at_ms, updated_at_ms,
                   (SELECT COUNT(*) FROM eval_items WHERE dataset = ?1)
                 FROM eval_datasets WHERE name = ?1",
                [name],
                dataset_row,
            )
            .optional()?)
    }

    pub fn datasets(&self) -> Result<Vec<Dataset>, EvalError> {
        let mut statement = self.conn.prepare(
            "SELECT name, description, route, evaluators, created_at_ms, updated_at_ms,
               (SELECT COUNT(*) FROM eval_items i WHERE i.dataset = d.name)
             FROM eval_datasets d ORDER BY name",
        )?;
        let rows = statement.query_map([], dataset_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a dataset and its items; its runs stay. Returns the items deleted.
    pub fn delete_dataset(&mut self, name: &str) -> Result<u32, EvalError> {
        let tx = self.conn.transaction()?;
        if tx.execute("DELETE FROM eval_datasets WHERE name = ?1", [name])? == 0 {
            return Err(EvalError::NoSuchDataset(name.to_string()));
        }
        let items = tx.execute("DELETE FROM eval_items WHERE dataset = ?1", [name])?;
        tx.commit()?;
        Ok(u32::try_from(items).unwrap_or(u32::MAX))
    }

    /// Appends items in order; an item made from a trace already in the dataset is skipped (its trace id is
    /// returned among the skipped). Refuses the whole batch when the dataset would pass its item bound.
    pub fn add_items(&mut self, name: &str, items: &[NewItem]) -> Result<(u32, Vec<String>), EvalError> {
        let tx = self.conn.transaction()?;
        if tx.query_row("SELECT 1 FROM eval_datasets WHERE name = ?1", [name], |_| Ok(())).optional()?.is_none() {
            return Err(EvalError::NoSuchDataset(name.to_string()));
        }
        let (count, last): (i64, i64) =
            tx.query_row("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM eval_items WHERE dataset = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count.saturating_add(items.len()) > limits::MAX_ITEMS_PER_DATASET {
            return Err(EvalError::Full(format!(
                "dataset `{name}` has {count} items; adding {} would pass the bound of {}",
                items.len(),
                limits::MAX_ITEMS_PER_DATASET
            )));
        }
        let now = crate::clock::unix_ms();
        let mut next = last;
        let mut skipped = Vec::new();
        for item in items {
            if !item.source_trace_id.is_empty() {
                let known = tx
                    .query_row(
                        "SELECT 1 FROM eval_items WHERE dataset = ?1 AND source_trace = ?2",
                        [name, &item.source_trace_id],
                        |_| Ok(()),
                    )
                    .optional()?;
                if known.is_some() {
                    skipped.push(item.source_trace_id.clone());
                    continue;
                }
            }
            next += 1;
            tx.execute(
                "INSERT INTO eval_items VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, next, item.to_json(), item.source_trace_id, now],
            )?;
        }
        tx.execute("UPDATE eval_datasets SET updated_at_ms = ?2 WHERE name = ?1", params![name, now])?;
        tx.commit()?;
        Ok((to_u32(next - last), skipped))
    }

    /// Items in order from `offset`, at most `limit`.
    pub fn items(&self, name: &str, offset: u32, limit: u32) -> Result<Vec<DatasetItem>, EvalError> {
        let mut statement = self.conn.prepare(
            "SELECT id, item, source_trace, created_at_ms FROM eval_items WHERE dataset = ?1 ORDER BY id
             LIMIT ?2 OFFSET ?3",
        )?;
        let rows = statement.query_map(params![name, limit, offset], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (id, json, source_trace_id, created_at_unix_ms) = row?;
            let mut item: NewItem =
                serde_json::from_str(&json).map_err(|e| EvalError::Store(format!("item {id} of `{name}`: {e}")))?;
            item.source_trace_id = source_trace_id;
            items.push(DatasetItem { id: to_u32(id), item, created_at_unix_ms });
        }
        Ok(items)
    }

    /// Stores a new run (its id is set here) and drops the oldest finished runs past the bound.
    pub fn insert_run(&mut self, run: &mut RunRecord) -> Result<(), EvalError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO eval_runs (dataset, status, run) VALUES (?1, ?2, '{}')",
            params![run.dataset, run.status.as_str()],
        )?;
        let seq = tx.last_insert_rowid();
        run.id = format!("run-{seq}");
        tx.execute(
            "UPDATE eval_runs SET run = ?2 WHERE seq = ?1",
            params![seq, serde_json::to_string(run).unwrap_or_default()],
        )?;
        let cutoff = seq - i64::try_from(limits::MAX_RUNS).unwrap_or(i64::MAX);
        if cutoff > 0 {
            tx.execute("DELETE FROM eval_results WHERE run <= ?1", [cutoff])?;
            tx.execute("DELETE FROM eval_runs WHERE seq <= ?1", [cutoff])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn update_run(&self, seq: i64, run: &RunRecord) -> Result<(), EvalError> {
        self.conn.execute(
            "UPDATE eval_runs SET status = ?2, run = ?3 WHERE seq = ?1",
            params![seq, run.status.as_str(), serde_json::to_string(run).unwrap_or_default()],
        )?;
        Ok(())
    }

    pub fn save_result(&self, seq: i64, result: &StoredResult) -> Result<(), EvalError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO eval_results VALUES (?1, ?2, ?3)",
            params![seq, result.item_id, serde_json::to_string(result).unwrap_or_default()],
        )?;
        Ok(())
    }

    pub fn run(&self, id: &str) -> Result<RunRecord, EvalError> {
        let seq = run_seq(id).ok_or_else(|| EvalError::NoSuchRun(super::truncate(id, 64).to_string()))?;
        let json: Option<String> =
            self.conn.query_row("SELECT run FROM eval_runs WHERE seq = ?1", [seq], |r| r.get(0)).optional()?;
        let json = json.ok_or_else(|| EvalError::NoSuchRun(id.to_string()))?;
        serde_json::from_str(&json).map_err(|e| EvalError::Store(format!("run {id}: {e}")))
    }

    /// Runs, newest first; `dataset` empty: all.
    pub fn runs(&self, dataset: &str, limit: u32) -> Result<Vec<RunRecord>, EvalError> {
        let mut statement =
            self.conn.prepare("SELECT run FROM eval_runs WHERE ?1 = '' OR dataset = ?1 ORDER BY seq DESC LIMIT ?2")?;
        let rows = statement.query_map(params![dataset, limit], |r| r.get::<_, String>(0))?;
        let mut runs = Vec::new();
        for json in rows {
            runs.push(serde_json::from_str(&json?).map_err(|e| EvalError::Store(format!("a run: {e}")))?);
        }
        Ok(runs)
    }

    /// A run's item results, by item id.
    pub fn results(&self, id: &str) -> Result<Vec<StoredResult>, EvalError> {
        let seq = run_seq(id).ok_or_else(|| EvalError::NoSuchRun(super::truncate(id, 64).to_string()))?;
        let mut statement = self.conn.prepare("SELECT result FROM eval_results WHERE run = ?1 ORDER BY item")?;
        let rows = statement.query_map([seq], |r| r.get::<_, String>(0))?;
        let mut results = Vec::new();
        for json in rows {
            results.push(serde_json::from_str(&json?).map_err(|e| EvalError::Store(format!("a result: {e}")))?);
        }
        Ok(results)
    }
}

fn dataset_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dataset> {
    Ok(Dataset {
        name: r.get(0)?,
        description: r.get(1)?,
        route: r.get(2)?,
        evaluators_json: r.get(3)?,
        created_at_unix_ms: r.get(4)?,
        updated_at_unix_ms: r.get(5)?,
        items: to_u32(r.get(6)?),
    })
}
