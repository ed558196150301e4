//! The recorder: the request path hands it finished traces without ever waiting on disk. A bounded queue feeds
//! one writer thread that writes in batched transactions; when the queue is full the trace is dropped and
//! counted. Live viewers get every event through a broadcast channel that never blocks the sender.
use super::model::Trace;
use super::store::Store;
use crate::sync::MutexExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Events buffered per live viewer before it counts as too slow.
pub const WATCH_BUFFER: usize = 1024;
/// Finished traces not yet in the store, kept for viewers that list and then watch (`subscribe_with_recent`);
/// a trace leaves once written. More than the writer falls behind by in its gather window at thousands of
/// requests per second; past it the oldest go (a full queue's dropped traces, never written, leave that way).
pub const RECENT_FINISHED: usize = 256;
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How long the writer gathers traces into one transaction after the first arrives.
const GATHER_WINDOW: Duration = Duration::from_millis(25);

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
    /// Write what is queued, then stop.
    Shutdown,
}

type Recent = Arc<Mutex<VecDeque<Arc<Trace>>>>;

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct Recorder {
    queue: SyncSender<Message>,
    events: broadcast::Sender<TraceEvent>,
    /// Finished traces the writer has not written yet (at most `RECENT_FINISHED`), oldest first.
    recent: Recent,
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
        let recorder = Recorder { queue: queue.clone(), events, recent, stats, settings };
        Ok((recorder, WriterHandle { queue, thread }))
    }

    /// Announces a request that has started (live viewers only; nothing is stored yet).
    pub fn started(&self, trace: &Trace) {
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
    let mut stopping = false;
    while !stopping {
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            run_retention(&mut store, &stats, settings);
            last_retention = Some(Instant::now());
        }
        match receiver.recv_timeout(RETENTION_EVERY) {
            Ok(Message::Trace(trace)) => batch.push(trace),
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => continue,
        }
        // Gather what arrives within a short window, up to one batch: one transaction for many traces, and
        // at low rates one commit per window instead of one per request (less CPU taken from requests).
        let window_end = Instant::now() + GATHER_WINDOW;
        while !stopping && batch.len() < settings.batch_size.max(1) {
            let wait = window_end.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(Message::Trace(trace)) => batch.push(trace),
                Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if stopping {
            // Drain the rest so nothing queued before shutdown is lost.
            while let Ok(Message::Trace(trace)) = receiver.try_recv() {
                batch.push(trace);
            }
        }
        flush(&mut store, &mut batch, &stats, &unwritten);
    }
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
mod tests {
    use super::*;

    fn settings(queue_capacity: usize, hash_content: bool) -> RecorderSettings {
        RecorderSettings { queue_capacity, batch_size: 64, hash_content, retention_days: 0, max_traces: 0 }
    }

    #[test]
    fn everything_queued_is_written_by_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let (recorder, writer) =
            Recorder::start(Store::open(&path).expect("open"), settings(10_000, false)).expect("start");
        for i in 0..2_000 {
            recorder.finished(Trace { id: format!("t{i}"), ..Trace::default() });
        }
        writer.shutdown();
        assert_eq!(recorder.stats().written.load(Ordering::Relaxed), 2_000);
        assert_eq!(recorder.stats().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(Store::open(&path).expect("reopen").count().expect("count"), 2_000);
    }

    #[test]
    fn overflow_is_counted_not_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open");
        let (recorder, writer) = Recorder::start(store, settings(1, false)).expect("start");
        for i in 0..500 {
            recorder.finished(Trace { id: format!("t{i}"), ..Trace::default() });
        }
        writer.shutdown();
        let stats = recorder.stats();
        let written = stats.written.load(Ordering::Relaxed);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert_eq!(written + dropped, 500, "every trace is either written or counted as dropped");
        assert!(dropped > 0, "a queue of one cannot absorb 500 traces sent at once");
    }

    #[test]
    fn privacy_mode_redacts_before_viewers_and_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let (recorder, writer) = Recorder::start(Store::open(&path).expect("open"), settings(10, true)).expect("start");
        let mut viewer = recorder.subscribe();
        recorder.finished(Trace { id: "p".into(), prompt_text: "secret".into(), ..Trace::default() });
        writer.shutdown();
        let event = viewer.try_recv().expect("viewer got the event");
        assert!(event.trace.prompt_text.is_empty());
        let stored = Store::open(&path).expect("reopen").get("p").expect("get").expect("stored");
        assert!(stored.prompt_text.is_empty());
        assert_eq!(stored.prompt_chars, 6);
        assert_eq!(stored.prompt_sha256.len(), 64);
    }

    #[test]
    fn a_late_viewer_gets_the_unwritten_traces_then_live_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        // Many more traces than the ring holds, finished faster than the writer can empty it: the ring keeps
        // the newest of those not written yet.
        let (recorder, writer) =
            Recorder::start(Store::open(&path).expect("open"), settings(10_000, false)).expect("start");
        for i in 0..RECENT_FINISHED * 4 {
            recorder.finished(Trace { id: format!("t{i}"), ..Trace::default() });
        }
        let (mut live, recent) = recorder.subscribe_with_recent();
        assert!(recent.len() <= RECENT_FINISHED);
        let numbers: Vec<usize> = recent.iter().filter_map(|t| t.id[1..].parse().ok()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "oldest first");
        recorder.finished(Trace { id: "after".into(), ..Trace::default() });
        assert_eq!(live.try_recv().expect("live event").trace.id, "after");
        writer.shutdown();
        // Every trace the ring no longer held is in the store: a listing after subscribing finds it.
        let store = Store::open(&path).expect("reopen");
        for i in 0..RECENT_FINISHED * 4 {
            let id = format!("t{i}");
            assert!(store.get(&id).expect("get").is_some() || recent.iter().any(|t| t.id == id), "{id} lost");
        }
        let (_, after_writes) = recorder.subscribe_with_recent();
        assert!(after_writes.is_empty(), "written traces leave the ring: {}", after_writes.len());
    }

    /// The traces among `ids` that a viewer would miss if it subscribed now and then listed the store: in
    /// neither the ring nor the store. (The ring first, then the store: a trace moves from one to the other.)
    fn missed(recorder: &Recorder, store: &Store, ids: &[String]) -> Vec<String> {
        let (_live, recent) = recorder.subscribe_with_recent();
        let in_store = |id: &String| store.get(id).expect("get").is_some();
        ids.iter().filter(|id| !recent.iter().any(|t| &t.id == *id) && !in_store(id)).cloned().collect()
    }

    /// Polls `condition` until it holds; panics after 30 s.
    fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn nothing_is_lost_between_ring_and_store_while_a_flush_is_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let (recorder, writer) =
            Recorder::start(Store::open(&path).expect("open"), settings(10_000, false)).expect("start");
        let reader = Store::open(&path).expect("reader");
        // Another connection holds the write lock: the writer's next transaction waits on it (busy timeout).
        let lock = rusqlite::Connection::open(&path).expect("lock connection");
        lock.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");

        let first: Vec<String> = (0..40).map(|i| format!("first{i}")).collect();
        for id in &first {
            recorder.finished(Trace { id: id.clone(), ..Trace::default() });
        }
        // The writer has taken them all off the queue into one batch and is inside the flush, waiting to commit.
        let stats = recorder.stats();
        wait_for("the writer takes the batch", || stats.queued.load(Ordering::Relaxed) == 0);
        assert_eq!(stats.written.load(Ordering::Relaxed), 0, "nothing can be committed under the lock");
        // More arrive during the flush, up to a full ring.
        let second: Vec<String> = (0..RECENT_FINISHED - first.len()).map(|i| format!("second{i}")).collect();
        for id in &second {
            recorder.finished(Trace { id: id.clone(), ..Trace::default() });
        }
        let all: Vec<String> = first.iter().chain(&second).cloned().collect();
        assert_eq!(missed(&recorder, &reader, &all), Vec::<String>::new(), "lost while the flush waits");

        // Release the lock and watch every step of the writer's progress from another thread.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (recorder, path, all, stop) = (recorder.clone(), path.clone(), all.clone(), stop.clone());
            std::thread::spawn(move || {
                let reader = Store::open(&path).expect("watcher's reader");
                let mut checks = 0_u64;
                let mut lost = Vec::new();
                while !stop.load(Ordering::Relaxed) && lost.is_empty() {
                    lost = missed(&recorder, &reader, &all);
                    checks += 1;
                }
                (checks, lost)
            })
        };
        lock.execute_batch("ROLLBACK").expect("release the write lock");
        let settled = || {
            let done = stats.written.load(Ordering::Relaxed) + stats.write_errors.load(Ordering::Relaxed);
            done == all.len() as u64
        };
        wait_for("the writer handles every trace", settled);
        stop.store(true, Ordering::Relaxed);
        let (checks, lost) = watcher.join().expect("watcher");
        assert!(checks > 0);
        assert_eq!(lost, Vec::<String>::new(), "lost while the writer committed ({checks} checks)");
        assert_eq!(missed(&recorder, &reader, &all), Vec::<String>::new(), "lost after the writes");

        // Written traces left the ring; only a failed write (the lock held past the 5 s busy timeout on a
        // stalled machine) would keep some there, and then still findable.
        let written = stats.written.load(Ordering::Relaxed);
        let (_, ring) = recorder.subscribe_with_recent();
        assert_eq!(ring.len() as u64, all.len() as u64 - written, "the ring holds exactly the unwritten");
        assert_eq!(reader.count().expect("count"), written);
        writer.shutdown();
    }
}
