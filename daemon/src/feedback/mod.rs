//! Feedback: named scores on traces, from the HTTP API (`POST /v1/feedback`, in `gateway/feedback.rs`) and
//! gRPC (`FeedbackService`). One service for both: it checks the score ([`validate`]), finds the trace (running,
//! finished or stored; a running one is waited for briefly so the score counts under its route), hands the
//! score to the recorder's writer and waits for its answer (which enforces the per-trace limit), then counts
//! it in the score metrics and, for pass/fail scores, the drift detector.
pub mod validate;

use crate::drift::{DriftMonitor, ScoreObservation};
use crate::telemetry::Telemetry;
use crate::trace::{EventKind, Located, Recorder, Score, ScoreRefused, ScoreValue, Store, StoreError, TraceLabels};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use validate::{Invalid, NewScore};

/// How long a score for a running request waits for it to end (a streamed answer the client scored as its
/// last chunk arrived, a GPU request waiting for its energy share).
const RUNNING_WAIT: Duration = Duration::from_secs(10);
/// How long a score waits for the writer's answer before the client is told to retry.
const WRITE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("no trace with id {0:?} (the x-request-id of a request this daemon answered; old traces are removed by retention)")]
    UnknownTrace(String),
    #[error("trace {0} is still running after {secs} s; score it once its answer has ended", secs = RUNNING_WAIT.as_secs())]
    StillRunning(String),
    #[error("{0}")]
    TooMany(String),
    /// The write queue is full or the writer is slow: nothing was stored, or it was not confirmed in time.
    #[error("{0}")]
    Busy(String),
    #[error("trace store: {0}")]
    Store(String),
}

pub struct Feedback {
    recorder: Recorder,
    /// The read connection the gRPC queries use.
    store: Arc<Mutex<Store>>,
    telemetry: Arc<Telemetry>,
    drift: Arc<DriftMonitor>,
    /// Privacy mode: comments are client text about the request, so they are not kept.
    hash_content: bool,
}

impl Feedback {
    pub fn new(
        recorder: Recorder,
        store: Arc<Mutex<Store>>,
        telemetry: Arc<Telemetry>,
        drift: Arc<DriftMonitor>,
        hash_content: bool,
    ) -> Self {
        Self { recorder, store, telemetry, drift, hash_content }
    }

    /// Stores a score. `tenant` is the caller's when it is a client (a client scores only its own tenant's
    /// traces; another tenant's trace is answered as unknown), `None` for the operator's gRPC API.
    pub async fn add(&self, new: NewScore, tenant: Option<&str>) -> Result<Score, FeedbackError> {
        let new = new.checked()?;
        let labels = self.find_trace(&new.trace_id).await?;
        if tenant.is_some_and(|tenant| tenant != labels.tenant) {
            return Err(FeedbackError::UnknownTrace(new.trace_id));
        }
        let score = Score {
            id: uuid::Uuid::now_v7().to_string(),
            trace_id: new.trace_id,
            name: new.name,
            value: new.value,
            comment: if self.hash_content { String::new() } else { new.comment },
            source: new.source,
            created_at_unix_ms: crate::clock::unix_ms(),
        };
        let outcome = self
            .recorder
            .add_score(score.clone())
            .map_err(|full| FeedbackError::Busy(format!("{full}; nothing was stored, try again shortly")))?;
        match tokio::time::timeout(WRITE_WAIT, outcome).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(ScoreRefused::TooMany(_)))) => {
                return Err(FeedbackError::TooMany(ScoreRefused::TooMany(score.trace_id).to_string()))
            }
            Ok(Ok(Err(ScoreRefused::Write(error)))) => return Err(FeedbackError::Store(error)),
            Ok(Err(_)) => return Err(FeedbackError::Store("the trace writer has stopped (shutting down)".into())),
            Err(_) => {
                let secs = WRITE_WAIT.as_secs();
                return Err(FeedbackError::Busy(format!("the trace store did not confirm the score within {secs} s")));
            }
        }
        self.count(&labels, &score);
        Ok(score)
    }

    /// A trace's scores, oldest first.
    pub async fn list(&self, trace_id: &str) -> Result<Vec<Score>, FeedbackError> {
        let id = trace_id.to_owned();
        let scores = self.on_store(move |store| store.scores(&id)).await?;
        if scores.is_empty() && matches!(self.recorder.locate(trace_id), Located::Elsewhere) {
            let id = trace_id.to_owned();
            if self.on_store(move |store| store.trace_labels(&id)).await?.is_none() {
                return Err(FeedbackError::UnknownTrace(trace_id.to_owned()));
            }
        }
        Ok(scores)
    }

    /// Metrics per route and prompt, and the drift detector for pass/fail scores.
    fn count(&self, labels: &TraceLabels, score: &Score) {
        self.telemetry.scores.observe(labels, score);
        if let ScoreValue::Passed(passed) = score.value {
            self.drift.observe_score(ScoreObservation {
                route: labels.route.clone(),
                model: labels.model.clone(),
                prompt_version: labels.prompt_version.clone(),
                name: self.telemetry.scores.name_label(&score.name),
                passed,
            });
        }
    }

    /// The labels of trace `id`: from the recorder while it is finished but unwritten, else from the store. A
    /// running request is waited for (up to [`RUNNING_WAIT`]), since only its end says its route and tenant.
    async fn find_trace(&self, id: &str) -> Result<TraceLabels, FeedbackError> {
        let deadline = tokio::time::Instant::now() + RUNNING_WAIT;
        let mut events = None;
        loop {
            match self.recorder.locate(id) {
                Located::Finished(trace) => return Ok(TraceLabels::of(&trace)),
                Located::Elsewhere => {
                    let lookup = id.to_owned();
                    let stored = self.on_store(move |store| store.trace_labels(&lookup)).await?;
                    return stored.ok_or_else(|| FeedbackError::UnknownTrace(id.to_owned()));
                }
                Located::Running => {}
            }
            match &mut events {
                // Subscribed only now (a subscriber makes every request copy its trace for viewers), then looked
                // at again: a request that ended in between is found, one that ends later is heard of.
                None => events = Some(self.recorder.subscribe()),
                Some(events) => {
                    if tokio::time::timeout_at(deadline, finished(events, id)).await.is_err() {
                        return Err(FeedbackError::StillRunning(id.to_owned()));
                    }
                }
            }
        }
    }

    /// Runs a query on the read connection, off the async threads.
    async fn on_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, FeedbackError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let guard = store.lock().map_err(|_| FeedbackError::Store("trace store lock poisoned".into()))?;
            work(&guard).map_err(|error| FeedbackError::Store(error.to_string()))
        })
        .await
        .map_err(|error| FeedbackError::Store(format!("query task failed: {error}")))?
    }
}

/// Until trace `id` finishes (or this viewer lagged and may have missed it: look again).
async fn finished(events: &mut broadcast::Receiver<crate::trace::TraceEvent>, id: &str) {
    loop {
        match events.recv().await {
            Ok(event) if event.kind == EventKind::Finished && event.trace.id == id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // The recorder is gone (shutting down): nothing more will finish; the deadline answers.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// A stored score as the HTTP API returns it: `kind` says what `value` is (a number, a boolean or a string).
pub fn score_json(score: &Score) -> serde_json::Value {
    let value = match &score.value {
        ScoreValue::Number(number) => serde_json::json!(number),
        ScoreValue::Passed(passed) => serde_json::json!(passed),
        ScoreValue::Label(label) => serde_json::json!(label),
    };
    serde_json::json!({
        "id": score.id,
        "object": "score",
        "trace_id": score.trace_id,
        "name": score.name,
        "kind": score.value.kind(),
        "value": value,
        "comment": score.comment,
        "source": score.source.as_str(),
        "created_at_unix_ms": score.created_at_unix_ms,
    })
}

#[cfg(test)]
mod tests;
