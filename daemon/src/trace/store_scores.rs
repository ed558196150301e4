//! The `scores` table of the trace store: feedback scores written by the recorder's writer (at most
//! `MAX_SCORES_PER_TRACE` per trace, checked in the writing transaction), read per trace, and pruned with
//! their traces.
use super::{Store, StoreError};
use crate::trace::score::{Score, ScoreRefused, ScoreSource, ScoreValue, TraceLabels, MAX_SCORES_PER_TRACE};
use rusqlite::{params, OptionalExtension, Row, Transaction};

const COLUMNS: &str = "id, trace_id, name, kind, number, label, comment, source, created_at_ms";

/// A score whose trace never reached the store (its request was still running when scored, and the trace
/// was then dropped by a full queue) is deleted this long after it was made.
pub const ORPHAN_GRACE_MS: i64 = 3_600_000;

impl Store {
    /// Writes the scores in one transaction, each unless its trace has [`MAX_SCORES_PER_TRACE`] already (the
    /// writer is the only one writing, so the count and the insert cannot race). One result per score.
    pub fn insert_scores(&mut self, scores: &[Score]) -> Result<Vec<Result<(), ScoreRefused>>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut results = Vec::with_capacity(scores.len());
        {
            let mut count = tx.prepare_cached("SELECT count(*) FROM scores WHERE trace_id = ?")?;
            let mut insert = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO scores ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))?;
            for score in scores {
                let held: i64 = count.query_row([&score.trace_id], |row| row.get(0))?;
                if held >= MAX_SCORES_PER_TRACE as i64 {
                    results.push(Err(ScoreRefused::TooMany(score.trace_id.clone())));
                    continue;
                }
                let (number, label) = match &score.value {
                    ScoreValue::Number(value) => (Some(*value), ""),
                    ScoreValue::Passed(passed) => (Some(f64::from(u8::from(*passed))), ""),
                    ScoreValue::Label(label) => (None, label.as_str()),
                };
                insert.execute(params![
                    score.id,
                    score.trace_id,
                    score.name,
                    score.value.kind(),
                    number,
                    label,
                    score.comment,
                    score.source.as_str(),
                    score.created_at_unix_ms,
                ])?;
                results.push(Ok(()));
            }
        }
        let written = scores.iter().zip(&results).filter(|(_, result)| result.is_ok()).map(|(s, _)| s.id.as_str());
        Store::outbox_scores(self.outbox.as_ref(), &tx, written)?;
        tx.commit()?;
        Ok(results)
    }

    /// One score by its id.
    pub fn score(&self, id: &str) -> Result<Option<Score>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM scores WHERE id = ?"))?;
        Ok(stmt.query_row([id], row_to_score).optional()?)
    }

    /// A trace's scores, oldest first.
    pub fn scores(&self, trace_id: &str) -> Result<Vec<Score>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM scores WHERE trace_id = ? ORDER BY created_at_ms, id LIMIT {MAX_SCORES_PER_TRACE}"
        ))?;
        let scores = stmt.query_map([trace_id], row_to_score)?.collect::<Result<Vec<_>, _>>()?;
        Ok(scores)
    }

    /// What a stored trace's scores are counted under; `None` when the trace is not stored.
    pub fn trace_labels(&self, id: &str) -> Result<Option<TraceLabels>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT route, model_served, prompt_id, prompt_version, tenant FROM traces WHERE id = ?")?;
        let labels = stmt
            .query_row([id], |row| {
                Ok(TraceLabels {
                    route: row.get(0)?,
                    model: row.get(1)?,
                    prompt_id: row.get(2)?,
                    prompt_version: row.get(3)?,
                    tenant: row.get(4)?,
                })
            })
            .optional()?;
        Ok(labels)
    }
}

/// Deletes the scores of the traces retention is about to delete: those started before `cutoff_ms` (and
/// scores made before it), and those past the newest `keep` traces. Runs inside retention's transaction.
pub(super) fn prune(tx: &Transaction<'_>, cutoff_ms: Option<i64>, keep: Option<i64>) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    if let Some(cutoff) = cutoff_ms {
        deleted += tx.execute(
            "DELETE FROM scores WHERE created_at_ms < ?1 OR trace_id IN (SELECT id FROM traces WHERE started_at_ms < ?1)",
            [cutoff],
        )?;
    }
    if let Some(keep) = keep {
        deleted += tx.execute(
            "DELETE FROM scores WHERE trace_id IN (SELECT id FROM traces ORDER BY started_at_ms DESC, id DESC \
             LIMIT -1 OFFSET ?)",
            [keep],
        )?;
    }
    Ok(deleted)
}

/// Deletes scores made between two and one [`ORPHAN_GRACE_MS`] ago whose trace is not stored. Retention runs
/// every minute, so every orphan is looked at (many times) within its hour in that window, and the index on
/// the creation time keeps each sweep to that hour's scores.
pub(super) fn sweep_orphans(tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM scores WHERE created_at_ms >= ? AND created_at_ms < ? \
         AND NOT EXISTS (SELECT 1 FROM traces WHERE traces.id = scores.trace_id)",
        [now_ms - 2 * ORPHAN_GRACE_MS, now_ms - ORPHAN_GRACE_MS],
    )
}

fn row_to_score(row: &Row<'_>) -> rusqlite::Result<Score> {
    let kind: String = row.get(3)?;
    let number: Option<f64> = row.get(4)?;
    let value = match (kind.as_str(), number) {
        ("number", Some(value)) => ScoreValue::Number(value),
        ("boolean", Some(value)) => ScoreValue::Passed(value != 0.0),
        _ => ScoreValue::Label(row.get(5)?),
    };
    let source: String = row.get(7)?;
    Ok(Score {
        id: row.get(0)?,
        trace_id: row.get(1)?,
        name: row.get(2)?,
        value,
        comment: row.get(6)?,
        source: ScoreSource::parse(&source).unwrap_or_default(),
        created_at_unix_ms: row.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, TraceStatus};

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open store");
        (dir, store)
    }

    fn score(id: &str, trace_id: &str, value: ScoreValue, at: i64) -> Score {
        Score {
            id: id.into(),
            trace_id: trace_id.into(),
            name: "thumbs".into(),
            value,
            comment: "fine".into(),
            source: ScoreSource::Llm,
            created_at_unix_ms: at,
        }
    }

    fn trace(id: &str, started: i64) -> Trace {
        Trace { id: id.into(), started_at_unix_ms: started, status: TraceStatus::Ok, ..Trace::default() }
    }

    #[test]
    fn scores_round_trip_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let written = vec![
            score("s2", "t", ScoreValue::Label("helpful".into()), 20),
            score("s1", "t", ScoreValue::Number(-0.25), 10),
            score("s3", "t", ScoreValue::Passed(false), 30),
            score("other", "u", ScoreValue::Passed(true), 5),
        ];
        let mut store = Store::open(&path).expect("open");
        assert!(store.insert_scores(&written).expect("insert").iter().all(Result::is_ok));
        drop(store);
        let store = Store::open(&path).expect("reopen");
        let read = store.scores("t").expect("scores");
        assert_eq!(read, vec![written[1].clone(), written[0].clone(), written[2].clone()]);
        assert!(store.scores("nope").expect("scores").is_empty());
    }

    #[test]
    fn a_trace_keeps_at_most_the_limit_even_within_one_batch() {
        let (_dir, mut store) = open_temp();
        let first: Vec<Score> =
            (0..MAX_SCORES_PER_TRACE - 1).map(|i| score(&format!("a{i}"), "t", ScoreValue::Number(1.0), 1)).collect();
        assert!(store.insert_scores(&first).expect("insert").iter().all(Result::is_ok));
        let batch = [
            score("last", "t", ScoreValue::Passed(true), 2),
            score("over", "t", ScoreValue::Passed(true), 3),
            score("elsewhere", "u", ScoreValue::Passed(true), 3),
        ];
        let results = store.insert_scores(&batch).expect("insert");
        assert_eq!(results, vec![Ok(()), Err(ScoreRefused::TooMany("t".into())), Ok(())]);
        assert_eq!(store.scores("t").expect("scores").len() as u64, MAX_SCORES_PER_TRACE);
    }

    #[test]
    fn retention_takes_the_scores_of_the_traces_it_deletes() {
        let (_dir, mut store) = open_temp();
        let day = 86_400_000;
        store.insert_batch(&[trace("old", 0), trace("mid", 5 * day), trace("new", 9 * day)]).expect("traces");
        let scores = [
            score("s-old", "old", ScoreValue::Passed(true), 9 * day),
            score("s-mid", "mid", ScoreValue::Passed(true), 9 * day),
            score("s-new", "new", ScoreValue::Passed(true), 9 * day),
            // Scored while its request ran: its trace is not stored yet, and a young orphan is kept.
            score("s-running", "running", ScoreValue::Passed(true), 10 * day - 1000),
        ];
        store.insert_scores(&scores).expect("scores");
        store.apply_retention(10 * day, 7, 0).expect("by age");
        assert!(store.scores("old").expect("scores").is_empty());
        assert_eq!(store.scores("mid").expect("scores").len(), 1);
        store.apply_retention(10 * day, 0, 1).expect("by count");
        assert!(store.scores("mid").expect("scores").is_empty());
        assert_eq!(store.scores("new").expect("scores").len(), 1);
        assert_eq!(store.scores("running").expect("scores").len(), 1, "within its grace");
        // An hour and a half later its trace has still not arrived (dropped): the sweep takes it.
        store.apply_retention(10 * day + ORPHAN_GRACE_MS * 3 / 2, 0, 0).expect("sweep");
        assert!(store.scores("running").expect("scores").is_empty());
        assert_eq!(store.scores("new").expect("scores").len(), 1, "a stored trace's score is no orphan");
    }

    #[test]
    fn labels_of_a_stored_trace() {
        let (_dir, mut store) = open_temp();
        let mut t = trace("t", 1);
        (t.route, t.model_served, t.prompt_id, t.prompt_version, t.tenant) =
            ("chat".into(), "m".into(), "support".into(), "3".into(), "acme".into());
        store.insert_batch(&[t.clone()]).expect("insert");
        assert_eq!(store.trace_labels("t").expect("labels"), Some(TraceLabels::of(&t)));
        assert_eq!(store.trace_labels("u").expect("labels"), None);
    }
}
