//! Keeps the entries of routes with `persist = true` in `<data_dir>/state.db` across restarts. The request path
//! never waits on disk: writes go over a bounded queue to one writer thread that owns the connection; when the
//! queue is full a write is dropped and counted (the entry still serves from memory, it just may not survive a
//! restart). Rows the store evicted are deleted when the queue has room; any left behind expire, and [`load`]
//! deletes expired rows and those of routes no longer persisted.
use super::key::Key;
use super::store::{CachedBody, Entry};
use rusqlite::{params, Connection, Transaction};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache_entries (
    route TEXT NOT NULL,
    key BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    source_trace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    offsets_json TEXT,
    PRIMARY KEY (route, key)
);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires_ms);
";

/// Queued writes before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Writes committed in one transaction: one fsync for many entries when the queue is busy.
const BATCH: usize = 256;

enum Write {
    Put { route: String, key: Key, entry: Arc<Entry> },
    Delete { route: String, key: Key },
    SetCost { route: String, key: Key, created_ms: i64, cost_usd: f64 },
    Clear { route: Option<String> },
    PurgeExpired { now_ms: i64 },
    Flush(SyncSender<()>),
    Stop,
}

/// The writer thread's handle. Usually attached to the store, which calls it for persisted routes.
pub struct Persister {
    tx: SyncSender<Write>,
    dropped: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Persister {
    /// Creates the table if needed and starts the writer, which owns `conn` (opened with WAL and a busy
    /// timeout, as `state_db::open` does).
    pub fn start(conn: Connection) -> Result<Self, rusqlite::Error> {
        Self::start_with_capacity(conn, DEFAULT_CAPACITY)
    }

    pub fn start_with_capacity(conn: Connection, capacity: usize) -> Result<Self, rusqlite::Error> {
        Self::spawn(conn, capacity, None)
    }

    /// `gate`: the writer waits for it before its first write (tests fill the queue deterministically).
    fn spawn(conn: Connection, capacity: usize, gate: Option<Receiver<()>>) -> Result<Self, rusqlite::Error> {
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let writer = std::thread::Builder::new().name("cache-persist".into()).spawn(move || {
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            run(conn, rx);
        });
        // rusqlite's error type, as the callers' other state.db errors; the thread is the only other thing
        // that can fail here.
        let writer = writer.map_err(|e| {
            let message = format!("cannot start the cache persistence thread: {e}");
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR), Some(message))
        })?;
        Ok(Persister { tx, dropped: AtomicU64::new(0), writer: Mutex::new(Some(writer)) })
    }

    /// Stores or replaces the row. Never waits; copies the entry (the store's attached path shares it).
    pub fn put(&self, route: &str, key: &Key, entry: &Entry) {
        self.put_shared(route, key, Arc::new(entry.clone()));
    }

    pub(super) fn put_shared(&self, route: &str, key: &Key, entry: Arc<Entry>) {
        self.offer(Write::Put { route: route.to_string(), key: *key, entry });
    }

    /// Never waits.
    pub fn delete(&self, route: &str, key: &Key) {
        self.offer(Write::Delete { route: route.to_string(), key: *key });
    }

    /// Waits for room in the queue (startup and admin paths only).
    pub(super) fn delete_waiting(&self, route: &str, key: &Key) {
        self.wait(Write::Delete { route: route.to_string(), key: *key });
    }

    /// Updates the cost of the row stored at `created_ms` only. Never waits.
    pub fn set_cost(&self, route: &str, key: &Key, created_ms: i64, cost_usd: f64) {
        self.offer(Write::SetCost { route: route.to_string(), key: *key, created_ms, cost_usd });
    }

    /// Deletes rows expired at `now_ms`. Never waits.
    pub fn purge_expired(&self, now_ms: i64) {
        self.offer(Write::PurgeExpired { now_ms });
    }

    /// Deletes one route's rows, or all. Waits for room in the queue (never dropped: cleared answers must not
    /// come back after a restart); an admin call, not the request path.
    pub fn clear(&self, route: Option<&str>) {
        self.wait(Write::Clear { route: route.map(str::to_string) });
    }

    /// Waits until every write queued before it is committed. `false` if the writer has stopped.
    pub fn flush(&self) -> bool {
        let (reply, done) = sync_channel(1);
        self.tx.send(Write::Flush(reply)).is_ok() && done.recv().is_ok()
    }

    /// Writes dropped because the queue was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Commits what is queued and stops the writer; later writes are dropped. Also run on drop.
    pub fn shutdown(&self) {
        let Some(writer) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let _ = self.tx.send(Write::Stop);
        if writer.join().is_err() {
            tracing::error!("cache persistence thread panicked");
        }
    }

    fn offer(&self, write: Write) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(write) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "response cache persistence queue full or stopped: write dropped");
            }
        }
    }

    fn wait(&self, write: Write) {
        if self.tx.send(write).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(mut conn: Connection, rx: Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let mut replies = Vec::new();
        let mut stop = false;
        let mut writes = Vec::with_capacity(batch.len());
        for write in batch {
            match write {
                Write::Flush(reply) => replies.push(reply),
                Write::Stop => stop = true,
                write => writes.push(write),
            }
        }
        if let Err(error) = commit(&mut conn, writes) {
            tracing::warn!(%error, "response cache persistence: writes lost");
        }
        for reply in replies {
            // A waiter that gave up is no error.
            let _ = reply.send(());
        }
        if stop {
            return;
        }
    }
}

fn commit(conn: &mut Connection, writes: Vec<Write>) -> rusqlite::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for write in writes {
        if let Err(error) = apply(&tx, write) {
            tracing::warn!(%error, "response cache persistence: write failed");
        }
    }
    tx.commit()
}

fn apply(tx: &Transaction<'_>, write: Write) -> rusqlite::Result<()> {
    match write {
        Write::Put { route, key, entry } => {
            let (kind, body, offsets) = match &entry.body {
                CachedBody::Whole(bytes) => ("whole", bytes.to_vec(), None),
                CachedBody::Stream { events, offsets_ms } => {
                    let offsets: Vec<f64> = offsets_ms.iter().map(|o| if o.is_finite() { *o } else { 0.0 }).collect();
                    let body =
                        serde_json::to_vec(events).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                    let offsets = serde_json::to_string(&offsets)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                    ("stream", body, Some(offsets))
                }
            };
            tx.prepare_cached(
                "INSERT OR REPLACE INTO cache_entries (route, key, created_ms, expires_ms, model, input_tokens,
                 output_tokens, cost_usd, source_trace_id, kind, body, offsets_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                route,
                &key[..],
                entry.created_ms,
                entry.expires_ms,
                entry.model,
                i64::try_from(entry.input_tokens).unwrap_or(i64::MAX),
                i64::try_from(entry.output_tokens).unwrap_or(i64::MAX),
                entry.cost_usd,
                entry.source_trace_id,
                kind,
                body,
                offsets,
            ])?;
        }
        Write::Delete { route, key } => {
            tx.prepare_cached("DELETE FROM cache_entries WHERE route = ?1 AND key = ?2")?
                .execute(params![route, &key[..]])?;
        }
        Write::SetCost { route, key, created_ms, cost_usd } => {
            tx.prepare_cached(
                "UPDATE cache_entries SET cost_usd = ?4 WHERE route = ?1 AND key = ?2 AND created_ms = ?3",
            )?
            .execute(params![route, &key[..], created_ms, cost_usd])?;
        }
        Write::Clear { route: Some(route) } => {
            tx.execute("DELETE FROM cache_entries WHERE route = ?1", [route])?;
        }
        Write::Clear { route: None } => {
            tx.execute("DELETE FROM cache_entries", [])?;
        }
        Write::PurgeExpired { now_ms } => {
            tx.execute("DELETE FROM cache_entries WHERE expires_ms <= ?1", [now_ms])?;
        }
        Write::Flush(_) | Write::Stop => {}
    }
    Ok(())
}

/// The persisted entries still valid at `now_ms` of the routes that still persist, oldest first (so the newest
/// end up most recently used in [`CacheStore::restore`](super::store::CacheStore::restore)). Deletes expired
/// rows, rows of other routes and rows that do not decode. Run before [`Persister::start`] on the same
/// connection. Memory: the table holds at most what the store kept (it deletes what it evicts) plus writes
/// whose delete was dropped, until they expire.
pub fn load(
    conn: &Connection,
    now_ms: i64,
    persisted_routes: &[&str],
) -> Result<Vec<(String, Key, Entry)>, rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    conn.execute("DELETE FROM cache_entries WHERE expires_ms <= ?1", [now_ms])?;
    let stored: Vec<String> = conn
        .prepare("SELECT DISTINCT route FROM cache_entries")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for route in stored.iter().filter(|route| !persisted_routes.contains(&route.as_str())) {
        conn.execute("DELETE FROM cache_entries WHERE route = ?1", [route])?;
    }
    let mut entries = Vec::new();
    let mut bad: Vec<i64> = Vec::new();
    let mut select = conn.prepare(
        "SELECT rowid, route, key, created_ms, expires_ms, model, input_tokens, output_tokens, cost_usd,
         source_trace_id, kind, body, offsets_json FROM cache_entries ORDER BY created_ms, rowid",
    )?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        match decode(row) {
            Some((route, key, entry)) => entries.push((route, key, entry)),
            None => bad.push(rowid),
        }
    }
    if !bad.is_empty() {
        tracing::warn!(rows = bad.len(), "response cache: deleting persisted rows that do not decode");
    }
    for rowid in bad {
        conn.execute("DELETE FROM cache_entries WHERE rowid = ?1", [rowid])?;
    }
    Ok(entries)
}

fn decode(row: &rusqlite::Row<'_>) -> Option<(String, Key, Entry)> {
    let key: Vec<u8> = row.get(2).ok()?;
    let key: Key = key.try_into().ok()?;
    let tokens = |i: usize| row.get::<_, i64>(i).ok().and_then(|n| u64::try_from(n).ok());
    let body_bytes: Vec<u8> = row.get(11).ok()?;
    let body = match row.get::<_, String>(10).ok()?.as_str() {
        "whole" => CachedBody::Whole(body_bytes.into()),
        "stream" => {
            let events: Vec<String> = serde_json::from_slice(&body_bytes).ok()?;
            let offsets_ms: Vec<f64> = serde_json::from_str(&row.get::<_, String>(12).ok()?).ok()?;
            if events.len() != offsets_ms.len() {
                return None;
            }
            CachedBody::Stream { events, offsets_ms }
        }
        _ => return None,
    };
    let cost_usd: f64 = row.get(8).ok().filter(|c: &f64| c.is_finite() && *c >= 0.0)?;
    let entry = Entry {
        body,
        created_ms: row.get(3).ok()?,
        expires_ms: row.get(4).ok()?,
        model: row.get(5).ok()?,
        input_tokens: tokens(6)?,
        output_tokens: tokens(7)?,
        cost_usd,
        source_trace_id: row.get(9).ok()?,
    };
    Some((row.get(1).ok()?, key, entry))
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
