//! The recorder: the request path hands it finished traces without ever waiting on disk. A bounded queue feeds
//! one writer thread that writes in batched transactions; when the queue is full the trace is dropped and
//! counted. Live viewers get every event through a broadcast channel that never blocks the sender.
//!
//! Feedback scores go through the same queue and writer (one writer per database); whoever adds one waits for
//! the writer's answer, which says whether the trace had room for it. The recorder also knows which requests
//! are running, so a score for a trace not yet written can be told from one for a trace that never was.
use super::model::Trace;
use super::score::{Score, ScoreRefused};
use super::store::Store;
use crate::sync::MutexExt;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Events buffered per live viewer before it counts as too slow.
pub const WATCH_BUFFER: usize = 1024;
/// Finished traces not yet in the store, kept for viewers that list and then watch (`subscribe_with_recent`);
/// a trace leaves once written. More than the writer falls behind by in its gather window at thousands of
/// requests per second; past it the oldest go (a full queue's dropped traces, never written, leave that way).
pub const RECENT_FINISHED: usize = 256;
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How long the writer gathers traces into one transaction after the first arrives.
const GATHER_WINDOW: Duration = Duration::from_millis(25);
/// Running requests remembered at most (far more than connections allowed); past it a new one is not, and a
/// score for it waits until it is written.
const LIVE_CAPACITY: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Started,
    Finished,
}

#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub kind: EventKind,
    pub trace: Arc<Trace>,
}

#[derive(Debug, Default)]
pub struct RecorderStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub retention_deleted: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub struct RecorderSettings {
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub hash_content: bool,
    pub retention_days: u32,
    pub max_traces: u64,
}

enum Message {
    /// Shared with the live viewers' events and the recent ring: one copy per trace.
    Trace(Arc<Trace>),
    /// A score to write, and who waits for the outcome.
    Score(Score, oneshot::Sender<Result<(), ScoreRefused>>),
    /// Answered once everything queued before it is written (a reader that must see recent traces).
    Barrier(oneshot::Sender<()>),
    /// Write what is queued, then stop.
    Shutdown,
}

type Recent = Arc<Mutex<VecDeque<Arc<Trace>>>>;

/// Where a trace is, as far as the recorder knows (the store is the caller's to ask next).
#[derive(Debug, Clone)]
pub enum Located {
    /// Its request is still running, or its trace waits for its energy share.
    Running,
    /// Finished, not written yet.
    Finished(Arc<Trace>),
    /// Neither: in the store, or unknown.
    Elsewhere,
}

/// The score queue was full; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the trace store's write queue is full")]
pub struct QueueFull;

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct Recorder {
    queue: SyncSender<Message>,
    events: broadcast::Sender<TraceEvent>,
    /// Finished traces the writer has not written yet (at most `RECENT_FINISHED`), oldest first.
    recent: Recent,
    /// Ids (as UUIDs) of requests announced and not yet finished, at most `LIVE_CAPACITY`.
    live: Arc<Mutex<HashSet<u128>>>,
    stats: Arc<RecorderStats>,
    settings: RecorderSettings,
}

/// Owned by whoever shuts the daemon down.
pub struct WriterHandle {
    queue: SyncSender<Message>,
    thread: std::thread::JoinHandle<()>,
}

impl Recorder {
    pub fn start(store: Store, settings: RecorderSettings) -> std::io::Result<(Recorder, WriterHandle)> {
        let (queue, receiver) = sync_channel(settings.queue_capacity.max(1));
        let stats = Arc::new(RecorderStats::default());
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let writer_stats = stats.clone();
        let recent: Recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_FINISHED)));
        let unwritten = recent.clone();
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || write_loop(store, receiver, (writer_stats, unwritten), settings))?;
        let live = Arc::new(Mutex::new(HashSet::new()));
        let recorder = Recorder { queue: queue.clone(), events, recent, live, stats, settings };
        Ok((recorder, WriterHandle { queue, thread }))
    }

    /// Announces a request that has started (live viewers only; nothing is stored yet).
    pub fn started(&self, trace: &Trace) {
        if let Some(id) = uuid_of(&trace.id) {
            let mut live = self.live.locked();
            if live.len() < LIVE_CAPACITY {
                live.insert(id);
            }
        }
        if self.events.receiver_count() == 0 {
            return; // Nobody watching: skip the copy.
        }
        let mut trace = trace.clone();
        self.apply_privacy(&mut trace);
        let _ = self.events.send(TraceEvent { kind: EventKind::Started, trace: Arc::new(trace) });
    }

    /// Queues a finished trace for writing and tells live viewers. Never blocks.
    pub fn finished(&self, mut trace: Trace) {
        self.apply_privacy(&mut trace);
        let trace = Arc::new(trace);
        {
            // Into the ring before the broadcast: a viewer that subscribes and then reads the ring sees every
            // trace in one or the other (or both).
            let mut recent = self.recent.locked();
            if recent.len() == RECENT_FINISHED {
                recent.pop_front();
            }
            recent.push_back(trace.clone());
        }
        // Out of the running set only once in the ring, so `locate` always finds it in one or the other.
        if let Some(id) = uuid_of(&trace.id) {
            self.live.locked().remove(&id);
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(TraceEvent { kind: EventKind::Finished, trace: trace.clone() });
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(Message::Trace(trace)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then every thousandth, so a flood does not flood the log too.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::warn!(dropped, "trace queue full: trace dropped (raise store.queue_capacity)");
                }
            }
        }
    }

    fn apply_privacy(&self, trace: &mut Trace) {
        if self.settings.hash_content {
            trace.redact();
        } else {
            trace.measure();
        }
    }

    /// Where trace `id` is now. Looked at in the order a trace moves (running, finished, stored), so a trace
    /// that moves on meanwhile is found in the next place.
    pub fn locate(&self, id: &str) -> Located {
        if uuid_of(id).is_some_and(|uuid| self.live.locked().contains(&uuid)) {
            return Located::Running;
        }
        match self.recent.locked().iter().rev().find(|trace| trace.id == id) {
            Some(trace) => Located::Finished(trace.clone()),
            None => Located::Elsewhere,
        }
    }

    /// Queues a score for the writer; the receiver gets the outcome once it is committed (or refused).
    pub fn add_score(&self, score: Score) -> Result<oneshot::Receiver<Result<(), ScoreRefused>>, QueueFull> {
        let (answer, outcome) = oneshot::channel();
        self.queue.try_send(Message::Score(score, answer)).map_err(|_| QueueFull)?;
        Ok(outcome)
    }

    /// Resolves once every trace and score queued before this call is written to the store (or the writer
    /// stopped), for readers that must find traces that finished a moment ago.
    pub fn written(&self) -> Result<oneshot::Receiver<()>, QueueFull> {
        let (answer, written) = oneshot::channel();
        self.queue.try_send(Message::Barrier(answer)).map_err(|_| QueueFull)?;
        Ok(written)
    }

    /// Live viewers subscribed now.
    pub fn viewers(&self) -> usize {
        self.events.receiver_count()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TraceEvent> {
        self.events.subscribe()
    }

    /// Live events, and the traces that finished just before (oldest first), which may not be in the store
    /// yet; a trace can be in both.
    pub fn subscribe_with_recent(&self) -> (broadcast::Receiver<TraceEvent>, Vec<Arc<Trace>>) {
        let receiver = self.events.subscribe();
        let recent = self.recent.locked().iter().cloned().collect();
        (receiver, recent)
    }

    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    pub fn queue_capacity(&self) -> usize {
        self.settings.queue_capacity
    }
}

impl WriterHandle {
    /// Writes everything queued and stops the writer thread.
    pub fn shutdown(self) {
        if self.queue.send(Message::Shutdown).is_ok() && self.thread.join().is_err() {
            tracing::error!("trace writer thread panicked during shutdown");
        }
    }
}

fn write_loop(
    mut store: Store,
    receiver: Receiver<Message>,
    (stats, unwritten): (Arc<RecorderStats>, Recent),
    settings: RecorderSettings,
) {
    let mut last_retention: Option<Instant> = None;
    let mut batch: Vec<Arc<Trace>> = Vec::with_capacity(settings.batch_size);
    let mut scores: Vec<PendingScore> = Vec::new();
    let mut barriers: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stopping = false;
    let mut backlog = false;
    while !stopping {
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            run_retention(&mut store, &stats, settings);
            last_retention = Some(Instant::now());
        }
        match receiver.recv_timeout(RETENTION_EVERY) {
            Ok(Message::Trace(trace)) => batch.push(trace),
            Ok(Message::Score(score, answer)) => scores.push((score, answer)),
            Ok(Message::Barrier(answer)) => barriers.push(answer),
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => continue,
        }
        // Gather what arrives within a short window, up to one batch: one transaction for many traces, and
        // at low rates one commit per window instead of one per request (less CPU taken from requests). The
        // thread sleeps through the window and then takes what queued up: parked on the queue instead, it
        // would be woken by every trace sent (a futex wake and a context switch per request under load).
        // With a backlog (the last batch filled up) there is no waiting: the queue already holds more.
        if !stopping && !backlog && barriers.is_empty() {
            std::thread::sleep(GATHER_WINDOW);
        }
        backlog = true;
        while !stopping && batch.len() + scores.len() < settings.batch_size.max(1) {
            match receiver.try_recv() {
                Ok(Message::Trace(trace)) => batch.push(trace),
                Ok(Message::Score(score, answer)) => scores.push((score, answer)),
                Ok(Message::Barrier(answer)) => barriers.push(answer),
                Ok(Message::Shutdown) | Err(TryRecvError::Disconnected) => stopping = true,
                Err(TryRecvError::Empty) => {
                    backlog = false;
                    break;
                }
            }
        }
        if stopping {
            // Drain the rest so nothing queued before shutdown is lost.
            while let Ok(message) = receiver.try_recv() {
                match message {
                    Message::Trace(trace) => batch.push(trace),
                    Message::Score(score, answer) => scores.push((score, answer)),
                    Message::Barrier(answer) => barriers.push(answer),
                    Message::Shutdown => {}
                }
            }
        }
        flush(&mut store, &mut batch, &stats, &unwritten);
        flush_scores(&mut store, &mut scores);
        for barrier in barriers.drain(..) {
            let _ = barrier.send(());
        }
    }
}

type PendingScore = (Score, oneshot::Sender<Result<(), ScoreRefused>>);

/// Writes the scores in one transaction and tells each waiter how it went.
fn flush_scores(store: &mut Store, scores: &mut Vec<PendingScore>) {
    if scores.is_empty() {
        return;
    }
    let (written, answers): (Vec<Score>, Vec<_>) = std::mem::take(scores).into_iter().unzip();
    let outcomes = store.insert_scores(&written).unwrap_or_else(|error| {
        tracing::error!(%error, scores = written.len(), "could not write scores");
        vec![Err(ScoreRefused::Write(error.to_string())); written.len()]
    });
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        // The waiter may have given up (its client went away); the score is stored all the same.
        let _ = answer.send(outcome);
    }
}

/// Gateway trace ids are UUIDs; anything else is never running.
fn uuid_of(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|uuid| uuid.as_u128())
}

fn flush(
    store: &mut Store,
    batch: &mut Vec<Arc<Trace>>,
    stats: &RecorderStats,
    unwritten: &Mutex<VecDeque<Arc<Trace>>>,
) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len() as u64;
    stats.queued.fetch_sub(count, Ordering::Relaxed);
    match store.insert_batch(batch) {
        Ok(()) => {
            stats.written.fetch_add(count, Ordering::Relaxed);
            // In the store now, so a listing finds them: the ring need not hold them (nor their bodies).
            let mut recent = unwritten.locked();
            recent.retain(|held| !batch.iter().any(|written| Arc::ptr_eq(held, written)));
        }
        Err(error) => {
            stats.write_errors.fetch_add(count, Ordering::Relaxed);
            tracing::error!(%error, traces = count, "could not write traces");
        }
    }
    batch.clear();
}

fn run_retention(store: &mut Store, stats: &RecorderStats, settings: RecorderSettings) {
    let now = crate::clock::unix_ms();
    match store.apply_retention(now, settings.retention_days, settings.max_traces) {
        Ok(0) => {}
        Ok(deleted) => {
            stats.retention_deleted.fetch_add(deleted, Ordering::Relaxed);
            tracing::info!(deleted, "retention deleted old traces");
        }
        Err(error) => tracing::error!(%error, "retention failed"),
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
