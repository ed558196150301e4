//! SQLite trace store: WAL mode, versioned migrations, batched inserts, filtered cursor paging, retention.
//! Feedback scores are in the same database (`store_scores.rs`).
//! One connection writes (the recorder's thread); queries use a connection of their own.
use super::model::{Trace, TraceStatus};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};

// Scores live beside traces (same database, same writer, pruned together); their queries are in a file of
// their own, a child module so it can use the connection.
#[path = "store_scores.rs"]
mod scores;
pub use scores::ORPHAN_GRACE_MS;
#[path = "store_outbox.rs"]
mod outbox;
pub use outbox::{Kind as OutboxKind, OutboxBound, Pending};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("trace store {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create the directory of the trace store {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot make the trace store {path} private (mode 0600): {source}")]
    Private { path: PathBuf, source: std::io::Error },
    #[error("trace store was written by a newer llmopsd (schema {found}, this build knows {known})")]
    NewerSchema { found: i64, known: usize },
    #[error("trace store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("invalid page token {0:?}")]
    BadPageToken(String),
}

/// Each entry upgrades the schema by one version; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE traces (
    id TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    route TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    model_served TEXT NOT NULL,
    engine TEXT NOT NULL,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    session_id TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    stream INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    ttft_ms REAL,
    latency_ms REAL NOT NULL,
    prompt_text TEXT NOT NULL,
    response_text TEXT NOT NULL,
    request_json TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    prompt_chars INTEGER NOT NULL,
    response_sha256 TEXT NOT NULL,
    response_chars INTEGER NOT NULL,
    cost_usd REAL,
    energy_joules REAL,
    -- tags, attempts and chunk offsets, as JSON: read whole, never filtered on.
    detail_json TEXT NOT NULL
);
CREATE INDEX traces_by_start ON traces (started_at_ms DESC, id DESC);
CREATE INDEX traces_by_route ON traces (route, started_at_ms DESC);
"#,
    r#"
-- Feedback scores (store_scores.rs): kind is number, boolean (number 1 or 0) or label.
CREATE TABLE scores (
    id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    number REAL,
    label TEXT NOT NULL,
    comment TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX scores_by_trace ON scores (trace_id, created_at_ms);
CREATE INDEX scores_by_time ON scores (created_at_ms);
"#,
    r#"
-- Traces and scores still to export over OTLP (store_outbox.rs), oldest first; kind is trace or score.
CREATE TABLE otlp_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    enqueued_at_ms INTEGER NOT NULL
);
"#,
];

const COLUMNS: &str = "id, started_at_ms, ended_at_ms, endpoint, route, model_requested, model_served, engine, \
    tenant, user, session_id, prompt_id, prompt_version, status, http_status, error_type, error_message, stream, \
    finish_reason, input_tokens, output_tokens, tokens_estimated, ttft_ms, latency_ms, prompt_text, response_text, \
    request_json, prompt_sha256, prompt_chars, response_sha256, response_chars, cost_usd, energy_joules, detail_json";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Detail {
    tags: std::collections::BTreeMap<String, String>,
    attempts: Vec<super::model::Attempt>,
    chunk_offsets_ms: Vec<f64>,
    // Added after the first schema; absent in older rows.
    #[serde(default)]
    chunk_chars: Vec<u32>,
    #[serde(default)]
    replay_of: String,
    // The registry prompt's content hash: in the JSON detail rather than a column (never filtered on, no migration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt_hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    guardrails: Vec<super::model::GuardrailVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache: Option<super::model::CacheOutcome>,
}

/// Filters for listing traces, newest first.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub route: Option<String>,
    pub model: Option<String>,
    pub status: Option<TraceStatus>,
    pub search: Option<String>,
    pub min_latency_ms: Option<f64>,
    pub limit: usize,
    pub page_token: Option<String>,
}

/// What SQLite may keep in memory, all connections together, before it gives cached pages back. Without it
/// each connection's page cache grew with the database (the reader's and the writer's past 6 MiB each in a
/// 12-minute soak) and the daemon's memory with them.
const SQLITE_SOFT_HEAP_LIMIT: u64 = 8 << 20;

pub struct Store {
    conn: Connection,
    path: PathBuf,
    outbox: Option<OutboxBound>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        crate::state_db::create_parent(path)
            .map_err(|source| StoreError::CreateDir { path: path.parent().unwrap_or(path).to_path_buf(), source })?;
        // Prompts and answers: 0600 (and its -wal/-shm the same) before SQLite writes a byte, whatever the umask.
        crate::state_db::private_db_file(path)
            .map_err(|source| StoreError::Private { path: path.to_path_buf(), source })?;
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        // Process-wide (every connection, state.db's too): SQLite frees cached pages to stay near it.
        conn.query_row(&format!("PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_LIMIT}"), [], |_| Ok(()))
            .map_err(open_err)?;
        let mut store = Self { conn, path: path.to_path_buf(), outbox: None };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::NewerSchema { found: version, known: MIGRATIONS.len() });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all traces in one transaction; an existing id is replaced (a trace is final when written).
    pub fn insert_batch<T: std::borrow::Borrow<Trace>>(&mut self, traces: &[T]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let placeholders = vec!["?"; 34].join(", ");
            let mut stmt =
                tx.prepare_cached(&format!("INSERT OR REPLACE INTO traces ({COLUMNS}) VALUES ({placeholders})"))?;
            for t in traces.iter().map(std::borrow::Borrow::borrow) {
                let detail = serde_json::to_string(&Detail {
                    tags: t.tags.clone(),
                    attempts: t.attempts.clone(),
                    chunk_offsets_ms: t.chunk_offsets_ms.clone(),
                    chunk_chars: t.chunk_chars.clone(),
                    replay_of: t.replay_of.clone(),
                    prompt_hash: t.prompt_hash.clone(),
                    guardrails: t.guardrails.clone(),
                    cache: t.cache.clone(),
                })
                .unwrap_or_else(|_| "{}".into());
                stmt.execute(params![
                    t.id,
                    t.started_at_unix_ms,
                    t.ended_at_unix_ms,
                    t.endpoint,
                    t.route,
                    t.model_requested,
                    t.model_served,
                    t.engine,
                    t.tenant,
                    t.user,
                    t.session_id,
                    t.prompt_id,
                    t.prompt_version,
                    t.status.as_str(),
                    t.http_status,
                    t.error_type,
                    t.error_message,
                    t.stream,
                    t.finish_reason,
                    t.input_tokens as i64,
                    t.output_tokens as i64,
                    t.tokens_estimated,
                    t.ttft_ms,
                    t.latency_ms,
                    t.prompt_text,
                    t.response_text,
                    t.request_json,
                    t.prompt_sha256,
                    t.prompt_chars as i64,
                    t.response_sha256,
                    t.response_chars as i64,
                    t.cost_usd,
                    t.energy_joules,
                    detail,
                ])?;
            }
        }
        if let Some(bound) = &self.outbox {
            let now = crate::clock::unix_ms();
            let ids = traces.iter().map(|t| (outbox::Kind::Trace, t.borrow().id.as_str()));
            outbox::enqueue(&tx, bound, ids, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Trace>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM traces WHERE id = ?"))?;
        Ok(stmt.query_row([id], row_to_trace).optional()?)
    }

    /// A page of traces, newest first, and the token of the next page (None on the last).
    pub fn list(&self, query: &TraceQuery) -> Result<(Vec<Trace>, Option<String>), StoreError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        use rusqlite::types::Value;
        if let Some(since) = query.since_ms {
            clauses.push("started_at_ms >= ?");
            args.push(Value::Integer(since));
        }
        if let Some(until) = query.until_ms {
            clauses.push("started_at_ms < ?");
            args.push(Value::Integer(until));
        }
        if let Some(route) = &query.route {
            clauses.push("route = ?");
            args.push(Value::Text(route.clone()));
        }
        if let Some(model) = &query.model {
            clauses.push("(model_requested = ? OR model_served = ?)");
            args.push(Value::Text(model.clone()));
            args.push(Value::Text(model.clone()));
        }
        if let Some(status) = query.status {
            clauses.push("status = ?");
            args.push(Value::Text(status.as_str().into()));
        }
        if let Some(text) = &query.search {
            // instr(lower()) rather than LIKE, so % and _ in the search text are literal.
            clauses.push("(instr(lower(prompt_text), lower(?)) > 0 OR instr(lower(response_text), lower(?)) > 0)");
            args.push(Value::Text(text.clone()));
            args.push(Value::Text(text.clone()));
        }
        if let Some(min) = query.min_latency_ms {
            clauses.push("latency_ms >= ?");
            args.push(Value::Real(min));
        }
        if let Some(token) = &query.page_token {
            let (ms, id) = parse_page_token(token)?;
            clauses.push("(started_at_ms < ? OR (started_at_ms = ? AND id < ?))");
            args.extend([Value::Integer(ms), Value::Integer(ms), Value::Text(id)]);
        }
        let limit = query.limit.clamp(1, 1000);
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let sql =
            format!("SELECT {COLUMNS} FROM traces {filter} ORDER BY started_at_ms DESC, id DESC LIMIT {}", limit + 1);
        let mut stmt = self.conn.prepare(&sql)?;
        let mut traces = stmt.query_map(params_from_iter(args), row_to_trace)?.collect::<Result<Vec<_>, _>>()?;
        let next = if traces.len() > limit {
            traces.truncate(limit);
            traces.last().map(|t| format!("{}:{}", t.started_at_unix_ms, t.id))
        } else {
            None
        };
        Ok((traces, next))
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM traces", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Bytes on disk: the database, its WAL and shared-memory files.
    pub fn size_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                std::fs::metadata(name).ok().map(|m| m.len())
            })
            .sum()
    }

    /// Deletes traces older than the age limit and beyond the row limit, with their scores, and scores whose
    /// trace never arrived; returns how many traces went.
    pub fn apply_retention(&mut self, now_ms: i64, max_age_days: u32, max_traces: u64) -> Result<u64, StoreError> {
        let cutoff = (max_age_days > 0).then(|| now_ms - i64::from(max_age_days) * 86_400_000);
        let keep = (max_traces > 0).then(|| i64::try_from(max_traces).unwrap_or(i64::MAX));
        let tx = self.conn.transaction()?;
        // Scores first: they are found through the traces about to go.
        scores::prune(&tx, cutoff, keep)?;
        scores::sweep_orphans(&tx, now_ms)?;
        let mut deleted = 0;
        if let Some(cutoff) = cutoff {
            deleted += tx.execute("DELETE FROM traces WHERE started_at_ms < ?", [cutoff])? as u64;
        }
        if let Some(keep) = keep {
            deleted += tx.execute(
                "DELETE FROM traces WHERE rowid IN (SELECT rowid FROM traces ORDER BY started_at_ms DESC, id DESC \
                 LIMIT -1 OFFSET ?)",
                [keep],
            )? as u64;
        }
        tx.commit()?;
        Ok(deleted)
    }
}

fn parse_page_token(token: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::BadPageToken(token.to_string());
    let (ms, id) = token.split_once(':').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, id.to_string()))
}

fn row_to_trace(row: &Row<'_>) -> rusqlite::Result<Trace> {
    let detail: Detail = serde_json::from_str(&row.get::<_, String>(33)?).unwrap_or_default();
    let status: String = row.get(13)?;
    Ok(Trace {
        id: row.get(0)?,
        started_at_unix_ms: row.get(1)?,
        ended_at_unix_ms: row.get(2)?,
        endpoint: row.get(3)?,
        route: row.get(4)?,
        model_requested: row.get(5)?,
        model_served: row.get(6)?,
        engine: row.get(7)?,
        tenant: row.get(8)?,
        user: row.get(9)?,
        session_id: row.get(10)?,
        prompt_id: row.get(11)?,
        prompt_version: row.get(12)?,
        status: TraceStatus::parse(&status).unwrap_or_default(),
        http_status: row.get(14)?,
        error_type: row.get(15)?,
        error_message: row.get(16)?,
        stream: row.get(17)?,
        finish_reason: row.get(18)?,
        input_tokens: row.get::<_, i64>(19)? as u64,
        output_tokens: row.get::<_, i64>(20)? as u64,
        tokens_estimated: row.get(21)?,
        ttft_ms: row.get(22)?,
        latency_ms: row.get(23)?,
        prompt_text: row.get(24)?,
        response_text: row.get(25)?,
        request_json: row.get(26)?,
        prompt_sha256: row.get(27)?,
        prompt_chars: row.get::<_, i64>(28)? as u64,
        response_sha256: row.get(29)?,
        response_chars: row.get::<_, i64>(30)? as u64,
        cost_usd: row.get(31)?,
        energy_joules: row.get(32)?,
        tags: detail.tags,
        attempts: detail.attempts,
        chunk_offsets_ms: detail.chunk_offsets_ms,
        chunk_chars: detail.chunk_chars,
        replay_of: detail.replay_of,
        prompt_hash: detail.prompt_hash,
        guardrails: detail.guardrails,
        cache: detail.cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::Attempt;

    fn trace(id: &str, started: i64, route: &str, status: TraceStatus, prompt: &str) -> Trace {
        Trace {
            id: id.into(),
            started_at_unix_ms: started,
            route: route.into(),
            status,
            prompt_text: prompt.into(),
            latency_ms: started as f64,
            ..Trace::default()
        }
    }

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open store");
        (dir, store)
    }

    #[test]
    fn round_trips_every_field() {
        let (_dir, mut store) = open_temp();
        let mut t = trace("a", 5, "chat", TraceStatus::Ok, "user: hi");
        t.tags.insert("session".into(), "s1".into());
        t.attempts.push(Attempt { engine: "e".into(), ttft_ms: Some(1.5), upstream_status: 200, ..Attempt::default() });
        t.chunk_offsets_ms = vec![1.0, 2.5];
        t.chunk_chars = vec![2, 3];
        t.replay_of = "original".into();
        t.prompt_hash = "ab".repeat(32);
        t.ttft_ms = Some(1.5);
        t.cost_usd = Some(0.25);
        t.input_tokens = 7;
        store.insert_batch(&[t.clone()]).expect("insert");
        assert_eq!(store.get("a").expect("get"), Some(t));
        assert_eq!(store.get("missing").expect("get"), None);
    }

    #[test]
    fn lists_newest_first_with_filters_and_cursor() {
        let (_dir, mut store) = open_temp();
        let traces: Vec<Trace> = (0..25)
            .map(|i| {
                let status = if i % 5 == 0 { TraceStatus::Error } else { TraceStatus::Ok };
                let route = if i % 2 == 0 { "even" } else { "odd" };
                trace(&format!("t{i:02}"), 1000 + i, route, status, &format!("prompt number {i} 100%"))
            })
            .collect();
        store.insert_batch(&traces).expect("insert");

        let mut seen = Vec::new();
        let mut query = TraceQuery { limit: 10, ..TraceQuery::default() };
        loop {
            let (page, next) = store.list(&query).expect("list");
            seen.extend(page.into_iter().map(|t| t.id));
            match next {
                Some(token) => query.page_token = Some(token),
                None => break,
            }
        }
        let expected: Vec<String> = (0..25).rev().map(|i| format!("t{i:02}")).collect();
        assert_eq!(seen, expected);

        let only = |q: TraceQuery| -> Vec<String> {
            store.list(&TraceQuery { limit: 100, ..q }).expect("list").0.into_iter().map(|t| t.id).collect()
        };
        assert_eq!(
            only(TraceQuery { status: Some(TraceStatus::Error), ..Default::default() }),
            ["t20", "t15", "t10", "t05", "t00"]
        );
        assert_eq!(
            only(TraceQuery { route: Some("odd".into()), since_ms: Some(1020), ..Default::default() }),
            ["t23", "t21"]
        );
        assert_eq!(only(TraceQuery { search: Some("NUMBER 7 ".into()), ..Default::default() }), ["t07"]);
        // A literal % in the search is not a wildcard.
        assert_eq!(only(TraceQuery { search: Some("4 100%".into()), ..Default::default() }), ["t24", "t14", "t04"]);
        assert_eq!(only(TraceQuery { min_latency_ms: Some(1023.0), ..Default::default() }), ["t24", "t23"]);
        assert!(matches!(
            store.list(&TraceQuery { page_token: Some("nope".into()), ..Default::default() }),
            Err(StoreError::BadPageToken(_))
        ));
    }

    #[test]
    fn retention_by_age_and_count() {
        let (_dir, mut store) = open_temp();
        let day = 86_400_000;
        let traces: Vec<Trace> = (0..10).map(|i| trace(&format!("t{i}"), i * day, "r", TraceStatus::Ok, "")).collect();
        store.insert_batch(&traces).expect("insert");
        // Now is day 10; keep 3 days: t0..t6 are older than day 7.
        assert_eq!(store.apply_retention(10 * day, 3, 0).expect("retention"), 7);
        assert_eq!(store.count().expect("count"), 3);
        assert_eq!(store.apply_retention(10 * day, 0, 1).expect("retention"), 2);
        assert!(store.get("t9").expect("get").is_some());
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/t.db");
        Store::open(&path).expect("open").insert_batch(&[trace("x", 1, "r", TraceStatus::Ok, "")]).expect("insert");
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.count().expect("count"), 1);
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
