//! The OTLP outbox: ids of traces and scores still to export, written in the same transaction as the traces
//! and scores themselves (so one in the store is never missing from the outbox, whatever happens to the
//! process), bounded by dropping the oldest (counted), and emptied from the front as the receiver acknowledges
//! batches.
//! Rows leave only from the front, so `seq` has no holes and the count is `max - min + 1`.
use super::{Store, StoreError};
use rusqlite::{params, Transaction};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How the writer bounds the outbox.
#[derive(Debug, Clone)]
pub struct OutboxBound {
    pub capacity: u64,
    /// Traces dropped (oldest first) because the outbox was full.
    pub dropped: Arc<AtomicU64>,
}

/// What a row refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Trace,
    Score,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Trace => "trace",
            Kind::Score => "score",
        }
    }
}

/// One trace or score waiting: its outbox position, kind and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub kind: Kind,
    pub id: String,
}

/// Adds what was just written, then drops the oldest rows past the bound.
pub(super) fn enqueue<'a>(
    tx: &Transaction<'_>,
    bound: &OutboxBound,
    ids: impl Iterator<Item = (Kind, &'a str)>,
    now_ms: i64,
) -> Result<(), StoreError> {
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO otlp_outbox (kind, ref_id, enqueued_at_ms) VALUES (?, ?, ?)")?;
        for (kind, id) in ids {
            insert.execute(params![kind.as_str(), id, now_ms])?;
        }
    }
    let held = count(tx)?;
    let capacity = i64::try_from(bound.capacity).unwrap_or(i64::MAX);
    if held > capacity {
        let excess = held - capacity;
        let removed =
            tx.execute("DELETE FROM otlp_outbox WHERE seq < (SELECT min(seq) FROM otlp_outbox) + ?", [excess])?;
        bound.dropped.fetch_add(removed as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn count(conn: &rusqlite::Connection) -> Result<i64, StoreError> {
    let (low, high): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT min(seq), max(seq) FROM otlp_outbox", [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(match (low, high) {
        (Some(low), Some(high)) => high - low + 1,
        _ => 0,
    })
}

impl Store {
    /// From now on, every trace written is also queued for export, at most `bound.capacity` waiting.
    pub fn enable_outbox(&mut self, bound: OutboxBound) {
        self.outbox = Some(bound);
    }

    /// The oldest rows waiting, at most `limit`.
    pub fn outbox_front(&self, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT seq, kind, ref_id FROM otlp_outbox ORDER BY seq LIMIT ?")?;
        let rows = stmt.query_map([limit as i64], |row| {
            let kind = if row.get::<_, String>(1)? == "score" { Kind::Score } else { Kind::Trace };
            Ok(Pending { seq: row.get(0)?, kind, id: row.get(2)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Queues scores just written in `tx` (when export is on).
    pub(super) fn outbox_scores<'a>(
        bound: Option<&OutboxBound>,
        tx: &Transaction<'_>,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        match bound {
            Some(bound) => enqueue(tx, bound, ids.map(|id| (Kind::Score, id)), crate::clock::unix_ms()),
            None => Ok(()),
        }
    }

    /// Removes every waiting trace up to and including `seq` (a batch the receiver has, or refused for good).
    pub fn outbox_remove_through(&mut self, seq: i64) -> Result<u64, StoreError> {
        Ok(self.conn.execute("DELETE FROM otlp_outbox WHERE seq <= ?", [seq])? as u64)
    }

    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(count(&self.conn)?.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, TraceStatus};

    fn trace(id: &str) -> Trace {
        Trace { id: id.into(), started_at_unix_ms: 1, status: TraceStatus::Ok, ..Trace::default() }
    }

    #[test]
    fn written_traces_wait_in_order_and_leave_from_the_front() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("t.db")).expect("open");
        store.insert_batch(&[trace("before")]).expect("insert");
        let dropped = Arc::new(AtomicU64::new(0));
        store.enable_outbox(OutboxBound { capacity: 3, dropped: dropped.clone() });
        store.insert_batch(&[trace("a"), trace("b")]).expect("insert");
        let front = store.outbox_front(10).expect("front");
        assert_eq!(front.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["a", "b"], "only traces after");
        store.insert_batch(&[trace("c"), trace("d"), trace("e")]).expect("insert");
        assert_eq!(dropped.load(Ordering::Relaxed), 2, "the two oldest made room");
        let front = store.outbox_front(2).expect("front");
        assert_eq!(front.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(store.outbox_len().expect("len"), 3);
        store.outbox_remove_through(front[1].seq).expect("ack");
        assert_eq!(store.outbox_len().expect("len"), 1);
        assert_eq!(store.outbox_front(10).expect("front")[0].id, "e");
    }

    #[test]
    fn scores_wait_beside_traces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("t.db")).expect("open");
        store.enable_outbox(OutboxBound { capacity: 10, dropped: Arc::default() });
        store.insert_batch(&[trace("t1")]).expect("insert");
        let score = crate::trace::Score {
            id: "s1".into(),
            trace_id: "t1".into(),
            name: "helpful".into(),
            value: crate::trace::ScoreValue::Number(1.0),
            comment: String::new(),
            source: crate::trace::ScoreSource::Human,
            created_at_unix_ms: 2,
        };
        store.insert_scores(std::slice::from_ref(&score)).expect("scores");
        let front = store.outbox_front(10).expect("front");
        assert_eq!(
            front.iter().map(|p| (p.kind, p.id.as_str())).collect::<Vec<_>>(),
            [(Kind::Trace, "t1"), (Kind::Score, "s1")]
        );
        assert_eq!(store.score(&front[1].id).expect("read"), Some(score));
    }

    #[test]
    fn the_outbox_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        {
            let mut store = Store::open(&path).expect("open");
            store.enable_outbox(OutboxBound { capacity: 10, dropped: Arc::default() });
            store.insert_batch(&[trace("kept")]).expect("insert");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.outbox_front(10).expect("front")[0].id, "kept");
    }
}
