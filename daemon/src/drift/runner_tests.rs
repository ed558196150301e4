//! The detector thread's work with an injected clock: one-off alerts end after the timeout (also those left by a
//! previous run), not before, and an acknowledged one that recurs fires again.
use super::*;
use crate::alerts::{AlertFilter, AlertState};
use std::sync::atomic::AtomicI64;

const T0: i64 = 1_700_000_000_000;

fn config() -> DriftConfig {
    DriftConfig {
        reference_size: 30,
        window_size: 1000,
        event_alert_timeout_secs: 60,
        input_anomaly_factor: 5.0,
        ..DriftConfig::default()
    }
}

/// A request with this many output tokens; everything else steady.
fn request(output_tokens: f64, input_tokens: f64) -> Observation {
    Observation {
        route: "chat".into(),
        model: "fake-model".into(),
        prompt_version: String::new(),
        numbers: [Some(output_tokens), Some(input_tokens), Some(5.0), Some(20.0), Some(500.0)],
        flags: [false; 4],
    }
}

fn worker(dir: &tempfile::TempDir, now: &Arc<AtomicI64>) -> (Worker, AlertManager) {
    let alerts = AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("open");
    let clock = now.clone();
    let worker = Worker::new(config(), alerts.clone(), Box::new(move || clock.load(Ordering::SeqCst)));
    (worker, alerts)
}

/// Feeds `n` requests of `output_tokens` and returns the active shift alert, if any.
fn feed(worker: &mut Worker, alerts: &AlertManager, n: usize, output_tokens: f64) -> Option<crate::alerts::Alert> {
    for _ in 0..n {
        worker.observe(&request(output_tokens, 100.0));
    }
    alerts.active().into_iter().find(|a| a.key.ends_with(":output_tokens:shift"))
}

#[test]
fn expiry_tracks_the_last_occurrence_of_each_key() {
    let mut expiry = Expiry::new(60);
    assert_eq!(expiry.next_due(), None);
    expiry.occurred("a", 1_000);
    expiry.occurred("b", 5_000);
    expiry.occurred("a", 3_000);
    expiry.occurred("a", 2_000); // out of order: the latest wins
    assert_eq!(expiry.next_due(), Some(63_000));
    assert!(expiry.take_due(62_999).is_empty());
    assert_eq!(expiry.take_due(63_000), ["a"]);
    assert_eq!(expiry.next_due(), Some(65_000));
    assert_eq!(expiry.take_due(i64::MAX), ["b"]);
    assert_eq!(expiry.next_due(), None);
}

#[test]
fn a_shift_alert_ends_after_the_timeout_and_fires_again_after_an_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicI64::new(T0));
    let (mut worker, alerts) = worker(&dir, &now);
    assert!(feed(&mut worker, &alerts, 60, 40.0).is_none(), "a steady stream raises nothing");
    let shift = feed(&mut worker, &alerts, 10, 60.0).expect("the shift raises an alert");
    assert_eq!((shift.rule.as_str(), shift.state), ("drift", AlertState::Firing));
    assert!(shift.message.contains("resolves 1 min after the last shift"), "{}", shift.message);

    now.store(T0 + 59_000, Ordering::SeqCst);
    worker.expire();
    alerts.acknowledge(&shift.id, "ops").expect("ack");
    // The detector re-learns the new level (30 requests), then answers grow again.
    feed(&mut worker, &alerts, 30, 60.0);
    let again = feed(&mut worker, &alerts, 10, 90.0).expect("still active");
    assert_eq!((again.id.as_str(), again.state, again.occurrences), (shift.id.as_str(), AlertState::Firing, 2));

    // 60 s after the second shift, not after the first.
    now.store(T0 + 61_000, Ordering::SeqCst);
    worker.expire();
    assert!(alerts.active().iter().any(|a| a.id == shift.id), "the recurrence restarted the timeout");
    now.store(T0 + 59_000 + 60_000, Ordering::SeqCst);
    worker.expire();
    let ended = alerts.get(&shift.id).expect("get").expect("stored");
    assert_eq!(ended.state, AlertState::Resolved);
    assert_eq!(ended.resolution.as_deref(), Some("no recurrence within 1 min of the last one"));
}

#[test]
fn one_off_alerts_left_by_a_previous_run_still_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicI64::new(T0));
    let id = {
        let (mut worker, alerts) = worker(&dir, &now);
        feed(&mut worker, &alerts, 30, 100.0);
        worker.observe(&request(100.0, 5_000.0));
        let anomaly = alerts.active().into_iter().find(|a| a.rule == "input_anomaly").expect("an input anomaly");
        assert!(anomaly.message.contains("5000 tokens"), "{}", anomaly.message);
        anomaly.id
    };
    let stored = AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("open");
    let updated = stored.get(&id).expect("get").expect("stored").updated_at_unix_ms;
    drop(stored);
    now.store(updated + 59_999, Ordering::SeqCst);
    let (mut worker, alerts) = worker(&dir, &now);
    worker.expire();
    assert_eq!(alerts.list(AlertFilter::default()).expect("list")[0].state, AlertState::Firing, "not yet");
    now.store(updated + 60_000, Ordering::SeqCst);
    worker.expire();
    assert_eq!(alerts.get(&id).expect("get").map(|a| a.state), Some(AlertState::Resolved));
}
