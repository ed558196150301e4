//! Delivery does not depend on where an alert is raised (a thread with no tokio runtime, as the drift
//! detector's), and one-off alerts that recur after an acknowledgement notify again.
use super::tests::raised;
use super::webhook_tests::{config, serve, Receiver};
use super::*;
use std::sync::atomic::Ordering;

fn events_for(receiver: &Receiver, key: &str) -> Vec<String> {
    receiver
        .received()
        .iter()
        .filter(|(_, body)| body["alert"]["key"] == key)
        .map(|(_, body)| body["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn an_alert_raised_on_a_thread_without_a_runtime_is_delivered_with_retries() {
    let receiver = Receiver { fail_first: 1, ..Receiver::default() };
    let url = serve(receiver.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = AlertManager::open(&dir.path().join("state.db"), vec![config(&url, 3)]).expect("open");

    // As the drift thread does: a plain OS thread, outside any runtime.
    let raiser = alerts.clone();
    let raised_on_thread = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err(), "the thread has no runtime");
        let a = raiser.raise(raised("drift:chat:output_tokens:shift", Severity::Warning));
        raiser.resolve("drift:chat:output_tokens:shift", "no further shift");
        a
    })
    .join()
    .expect("raising thread");
    assert_eq!(raised_on_thread.deliveries[0].status, DeliveryStatus::Pending, "{:?}", raised_on_thread.deliveries);
    alerts.wait_idle().await;

    assert_eq!(events_for(&receiver, "drift:chat:output_tokens:shift"), ["raised", "resolved"]);
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 3, "the first attempt failed and was retried");
    let stored = alerts.get(&raised_on_thread.id).expect("get").expect("stored");
    let d = &stored.deliveries[0];
    assert_eq!((d.event, d.status, d.attempts), (AlertEventKind::Resolved, DeliveryStatus::Delivered, 1));
}

#[test]
fn a_manager_opened_outside_a_runtime_delivers_on_a_runtime_of_its_own() {
    // The receiver runs on a runtime of the test's; the manager sees none where it is opened or used.
    let serving = tokio::runtime::Runtime::new().expect("receiver runtime");
    let receiver = Receiver::default();
    let url = serving.block_on(serve(receiver.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = AlertManager::open(&dir.path().join("state.db"), vec![config(&url, 2)]).expect("open");
    let a = alerts.raise(raised("k", Severity::Critical));
    serving.block_on(alerts.wait_idle());

    assert_eq!(events_for(&receiver, "k"), ["raised"]);
    let d = &alerts.get(&a.id).expect("get").expect("stored").deliveries[0];
    assert_eq!((d.status, d.attempts, d.last_error.as_deref()), (DeliveryStatus::Delivered, 1, None));
    drop(alerts);
}

#[tokio::test]
async fn an_acknowledged_one_off_alert_that_recurs_fires_and_notifies_again() {
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = AlertManager::open(&dir.path().join("state.db"), vec![config(&url, 2)]).expect("open");
    let mut watch = alerts.subscribe();

    let first = alerts.raise_recurring(raised("shift", Severity::Warning));
    let folded = alerts.raise_recurring(raised("shift", Severity::Warning));
    assert_eq!((folded.id.as_str(), folded.occurrences), (first.id.as_str(), 2), "a firing alert absorbs it");
    alerts.acknowledge(&first.id, "ops").expect("ack");
    let again = alerts.raise_recurring(raised("shift", Severity::Warning));
    assert_eq!((again.id.as_str(), again.state, again.occurrences), (first.id.as_str(), AlertState::Firing, 3));
    assert!(again.acknowledged_at_unix_ms.is_none() && again.acknowledged_by.is_none(), "{again:?}");

    // A condition that still holds stays acknowledged, silently.
    let hot = alerts.raise(raised("hot", Severity::Warning));
    alerts.acknowledge(&hot.id, "ops").expect("ack");
    let still = alerts.raise(raised("hot", Severity::Warning));
    assert_eq!((still.state, still.occurrences), (AlertState::Acknowledged, 2));
    alerts.wait_idle().await;

    assert_eq!(events_for(&receiver, "shift"), ["raised", "acknowledged", "raised"]);
    assert_eq!(events_for(&receiver, "hot"), ["raised", "acknowledged"]);
    let kinds: Vec<AlertEventKind> =
        std::iter::from_fn(|| watch.try_recv().ok()).filter(|e| e.alert.key == "shift").map(|e| e.kind).collect();
    use AlertEventKind::*;
    assert_eq!(kinds, [Raised, Updated, Acknowledged, Raised]);
    let stored = alerts.get(&first.id).expect("get").expect("stored");
    assert_eq!((stored.state, stored.deliveries[0].event), (AlertState::Firing, Raised));
}
