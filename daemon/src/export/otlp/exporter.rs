//! The export loop: every `flush_interval_ms`, take the oldest traces and scores from the outbox, send them as one OTLP
//! request, and remove them only once the receiver has them. Failures wait (doubling up to `retry_max_ms`,
//! or the receiver's `Retry-After`) and try the same traces again; a batch the receiver refuses as malformed is
//! split until the one trace it refuses is found, and only that one is dropped (counted). Span ids are derived
//! from trace ids, so a batch sent twice (a crash between send and removal) is the same spans again.
use super::config::OtlpConfig;
use super::stats::{OtlpExport, State};
use super::transport::{Outcome, Transport};
use super::{export_request, ResourceInfo, SpanSettings, TraceToExport};
use crate::shutdown::Shutdown;
use crate::trace::store::{OutboxKind, Pending};
use crate::trace::{Score, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the loop needs besides its configuration.
pub struct ExportJob {
    pub config: OtlpConfig,
    pub transport: Transport,
    pub store_path: PathBuf,
    pub resource: ResourceInfo,
    /// Engine name to `gen_ai.provider.name`.
    pub providers: BTreeMap<String, String>,
    pub stats: Arc<OtlpExport>,
}

pub fn spawn(job: ExportJob, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(job, shutdown))
}

async fn run(mut job: ExportJob, mut shutdown: Shutdown) {
    let store = match Store::open(&job.store_path) {
        Ok(store) => Arc::new(Mutex::new(store)),
        Err(error) => {
            job.stats.failed(&format!("cannot open the trace store: {error}"));
            tracing::error!(%error, "OTLP export stopped: cannot open the trace store");
            return;
        }
    };
    let settings = SpanSettings {
        profile: job.config.profile,
        content: job.config.content,
        max_content_chars: job.config.max_content_chars,
    };
    let flush = Duration::from_millis(job.config.flush_interval_ms);
    let first_retry = Duration::from_millis(job.config.retry_initial_ms);
    let last_retry = Duration::from_millis(job.config.retry_max_ms);
    let mut retry = first_retry;
    let mut limit = job.config.batch_size;
    loop {
        let front = match blocking(&store, move |s| Ok((s.outbox_front(limit)?, s.outbox_len()?))).await {
            Ok((front, pending)) => {
                job.stats.pending.store(pending, Ordering::Relaxed);
                front
            }
            Err(error) => {
                job.stats.failed(&format!("reading the outbox: {error}"));
                Vec::new()
            }
        };
        if front.is_empty() {
            job.stats.set_state(State::Idle, 0);
            if pause(&mut shutdown, flush).await {
                return;
            }
            continue;
        }
        job.stats.set_state(State::Sending, 0);
        let wanted = front.clone();
        let (items, scores) = match blocking(&store, move |s| load(s, &wanted)).await {
            Ok(loaded) => loaded,
            Err(error) => {
                job.stats.failed(&format!("reading traces: {error}"));
                if pause(&mut shutdown, retry).await {
                    return;
                }
                continue;
            }
        };
        let Some(last_seq) = front.last().map(|p: &Pending| p.seq) else { continue };
        let missing = front.len().saturating_sub(items.len() + scores.len()) as u64;
        let request = export_request(&job.resource, &items, &scores, &settings, &job.providers);
        let outcome = tokio::select! {
            outcome = job.transport.send(request) => outcome,
            _ = shutdown.wait() => return,
        };
        let done = || blocking(&store, move |s| s.outbox_remove_through(last_seq).map(|_| ()));
        match outcome {
            Outcome::Accepted { rejected_spans } => {
                if let Err(error) = done().await {
                    job.stats.failed(&format!("removing sent traces from the outbox: {error}"));
                }
                job.stats.exported.fetch_add(items.len() as u64, Ordering::Relaxed);
                job.stats.exported_scores.fetch_add(scores.len() as u64, Ordering::Relaxed);
                // Deleted by retention before they could go: nothing left to send.
                job.stats.rejected.fetch_add(missing, Ordering::Relaxed);
                job.stats.last_success_unix_ms.store(crate::clock::unix_ms(), Ordering::Relaxed);
                if rejected_spans > 0 {
                    job.stats
                        .failed(&format!("the receiver refused {rejected_spans} spans of a batch (partial success)"));
                }
                retry = first_retry;
                limit = job.config.batch_size;
            }
            Outcome::Refused { error } if front.len() > 1 => {
                // Something in this batch is unacceptable: halve until it is found, sending the rest.
                job.stats.failed(&error);
                limit = (front.len() / 2).max(1);
            }
            Outcome::Refused { error } => {
                tracing::warn!(id = %front[0].id, %error, "OTLP receiver refused a trace or score; dropped");
                job.stats.failed(&error);
                if let Err(error) = done().await {
                    job.stats.failed(&format!("removing a refused trace from the outbox: {error}"));
                }
                job.stats.rejected.fetch_add(1, Ordering::Relaxed);
                limit = job.config.batch_size;
            }
            Outcome::Retry { error, after } => {
                job.stats.failed(&error);
                // The receiver's Retry-After wins over our own schedule, up to retry_max_ms.
                let wait = after.map_or(retry, |after| after.min(last_retry));
                tracing::debug!(%error, wait_ms = wait.as_millis() as u64, "OTLP export failed; retrying");
                job.stats.set_state(State::Retrying, wait.as_millis() as u64);
                retry = (retry * 2).min(last_retry);
                if pause(&mut shutdown, wait).await {
                    return;
                }
            }
        }
    }
}

type Loaded = (Vec<TraceToExport>, Vec<Score>);

/// The traces and scores still in the store; what retention already deleted is skipped.
fn load(store: &mut Store, pending: &[Pending]) -> Result<Loaded, crate::trace::StoreError> {
    let (mut traces, mut scores) = (Vec::new(), Vec::new());
    for row in pending {
        match row.kind {
            OutboxKind::Trace => traces.extend(store.get(&row.id)?.map(|trace| TraceToExport { trace })),
            OutboxKind::Score => scores.extend(store.score(&row.id)?),
        }
    }
    Ok((traces, scores))
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    call: impl FnOnce(&mut Store) -> Result<T, crate::trace::StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().map_err(|_| "trace store lock poisoned".to_string())?;
        call(&mut guard).map_err(|e| e.to_string())
    })
    .await;
    joined.map_err(|e| e.to_string())?
}

/// Waits `delay`; true when shutdown came first.
async fn pause(shutdown: &mut Shutdown, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = shutdown.wait() => true,
    }
}
