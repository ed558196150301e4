//! The recorder's tests: everything queued is written, overflow is counted, privacy mode applies before
//! viewers and store, no trace is lost between the ring and the store, and scores are written and bounded.
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

fn uuid_trace() -> Trace {
    Trace { id: uuid::Uuid::now_v7().to_string(), ..Trace::default() }
}

fn score(trace_id: &str) -> Score {
    Score {
        id: uuid::Uuid::now_v7().to_string(),
        trace_id: trace_id.into(),
        name: "thumbs".into(),
        value: crate::trace::ScoreValue::Passed(true),
        comment: String::new(),
        source: crate::trace::ScoreSource::Human,
        created_at_unix_ms: 1,
    }
}

#[test]
fn locate_follows_a_trace_from_running_to_finished_to_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (recorder, writer) = Recorder::start(Store::open(&path).expect("open"), settings(100, false)).expect("start");
    let trace = uuid_trace();
    assert!(matches!(recorder.locate(&trace.id), Located::Elsewhere), "not announced yet");
    recorder.started(&trace);
    assert!(matches!(recorder.locate(&trace.id), Located::Running));
    recorder.finished(trace.clone());
    // In the ring until written, then in the store: never running again, never lost.
    assert!(matches!(recorder.locate(&trace.id), Located::Finished(_) | Located::Elsewhere));
    writer.shutdown();
    assert!(matches!(recorder.locate(&trace.id), Located::Elsewhere));
    assert!(Store::open(&path).expect("reopen").get(&trace.id).expect("get").is_some());
}

#[test]
fn scores_are_written_and_answered_and_a_trace_takes_at_most_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (recorder, writer) = Recorder::start(Store::open(&path).expect("open"), settings(1000, false)).expect("start");
    for _ in 0..crate::trace::MAX_SCORES_PER_TRACE {
        let answer = recorder.add_score(score("t")).expect("queued");
        assert_eq!(answer.blocking_recv(), Ok(Ok(())));
    }
    let over = recorder.add_score(score("t")).expect("queued").blocking_recv();
    assert_eq!(over, Ok(Err(crate::trace::ScoreRefused::TooMany("t".into()))));
    writer.shutdown();
    let stored = Store::open(&path).expect("reopen").scores("t").expect("scores");
    assert_eq!(stored.len() as u64, crate::trace::MAX_SCORES_PER_TRACE);
}

#[test]
fn a_score_is_refused_at_once_when_the_queue_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (recorder, writer) = Recorder::start(Store::open(&path).expect("open"), settings(1, false)).expect("start");
    // The writer takes the first trace and then waits on the write lock another connection holds.
    let lock = rusqlite::Connection::open(&path).expect("lock connection");
    lock.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
    recorder.finished(uuid_trace());
    let stats = recorder.stats();
    wait_for("the writer takes the trace", || stats.queued.load(Ordering::Relaxed) == 0);
    recorder.finished(uuid_trace());
    assert_eq!(recorder.add_score(score("t")).err(), Some(QueueFull), "a full queue refuses, never blocks");
    lock.execute_batch("ROLLBACK").expect("release the write lock");
    writer.shutdown();
}

#[test]
fn a_barrier_is_answered_once_everything_queued_before_it_is_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (recorder, writer) =
        Recorder::start(Store::open(&path).expect("open"), settings(10_000, false)).expect("start");
    let reader = Store::open(&path).expect("reader");
    for i in 0..300 {
        recorder.finished(Trace { id: format!("t{i}"), ..Trace::default() });
    }
    recorder.written().expect("queued").blocking_recv().expect("answered");
    assert_eq!(reader.count().expect("count"), 300, "a reader sees every trace finished before the barrier");
    writer.shutdown();
}
