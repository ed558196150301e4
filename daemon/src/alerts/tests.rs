//! Lifecycle, folding, persistence and watch events (no webhooks).
use super::*;
use std::collections::BTreeMap;
use tokio::sync::broadcast::error::TryRecvError;

pub(super) fn raised(key: &str, severity: Severity) -> Raised {
    Raised {
        key: key.to_string(),
        rule: "drift".to_string(),
        severity,
        title: format!("{key} drifted"),
        message: "p95 latency moved".to_string(),
        evidence: Evidence {
            statistic: "ks_p_value".to_string(),
            value: 0.001,
            threshold: 0.01,
            reference: Some(Summary { n: 500, mean: 120.0, p50: 110.0, p95: 200.0 }),
            current: Some(Summary { n: 80, mean: 180.0, p50: 170.0, p95: 320.0 }),
            reference_n: 500,
            current_n: 80,
            detail: String::new(),
        },
        labels: BTreeMap::from([("route".to_string(), "chat".to_string())]),
    }
}

fn open(dir: &tempfile::TempDir) -> AlertManager {
    AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("open")
}

#[tokio::test]
async fn lifecycle_firing_acknowledged_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir);
    let a = alerts.raise(raised("drift:route=chat", Severity::Warning));
    assert_eq!((a.state, a.occurrences, a.severity), (AlertState::Firing, 1, Severity::Warning));
    assert!(a.acknowledged_at_unix_ms.is_none() && a.resolved_at_unix_ms.is_none());

    let acked = alerts.acknowledge(&a.id, "alice").expect("ack");
    assert_eq!(acked.state, AlertState::Acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("alice"));
    let again = alerts.acknowledge(&a.id, "bob").expect("ack is idempotent");
    assert_eq!(again.acknowledged_by.as_deref(), Some("alice"));

    let resolved = alerts.resolve("drift:route=chat", "back to normal").expect("active");
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(resolved.resolution.as_deref(), Some("back to normal"));
    assert!(resolved.resolved_at_unix_ms >= resolved.acknowledged_at_unix_ms);
    assert!(alerts.resolve("drift:route=chat", "again").is_none(), "nothing left to resolve");
    assert_eq!(alerts.get(&a.id).expect("get"), Some(resolved));
    assert!(alerts.active().is_empty());

    match alerts.acknowledge(&a.id, "alice") {
        Err(AlertError::AlreadyResolved(id)) => assert_eq!(id, a.id),
        other => panic!("expected AlreadyResolved, got {other:?}"),
    }
    match alerts.acknowledge("no-such-id", "alice") {
        Err(AlertError::NotFound(id)) => assert_eq!(id, "no-such-id"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(alerts.get("no-such-id").expect("get"), None);
}

#[tokio::test]
async fn duplicates_fold_and_keep_the_highest_severity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir);
    let first = alerts.raise(raised("k", Severity::Warning));
    let mut worse = raised("k", Severity::Critical);
    worse.evidence.value = 0.0001;
    worse.labels.insert("model".to_string(), "x".to_string());
    let second = alerts.raise(worse);
    let third = alerts.raise(raised("k", Severity::Info));
    assert_eq!(second.id, first.id);
    assert_eq!(third.id, first.id);
    assert_eq!((third.occurrences, third.severity), (3, Severity::Critical));
    assert_eq!(third.evidence.value, 0.001, "latest evidence wins");
    assert_eq!(third.labels.get("model").map(String::as_str), Some("x"), "labels accumulate");
    assert_eq!(third.started_at_unix_ms, first.started_at_unix_ms);
    assert!(third.updated_at_unix_ms >= first.updated_at_unix_ms);

    // An acknowledged alert still absorbs duplicates; once resolved, the key starts a new alert.
    alerts.acknowledge(&first.id, "ops").expect("ack");
    let folded = alerts.raise(raised("k", Severity::Warning));
    assert_eq!(
        (folded.id.as_str(), folded.state, folded.occurrences),
        (first.id.as_str(), AlertState::Acknowledged, 4)
    );
    alerts.resolve("k", "cleared").expect("active");
    let fresh = alerts.raise(raised("k", Severity::Warning));
    assert_ne!(fresh.id, first.id);
    assert_eq!((fresh.occurrences, fresh.state), (1, AlertState::Firing));
    assert_eq!(alerts.list(AlertFilter::default()).expect("list").len(), 2);
}

#[tokio::test]
async fn alerts_survive_reopen_and_still_fold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (open_id, done_id) = {
        let alerts = open(&dir);
        let done = alerts.raise(raised("old", Severity::Info));
        alerts.resolve("old", "fixed").expect("active");
        let mut nan = raised("open", Severity::Critical);
        nan.evidence.value = f64::NAN;
        let open = alerts.raise(nan);
        alerts.acknowledge(&open.id, "ops").expect("ack");
        (open.id, done.id)
    };
    let alerts = open(&dir);
    let active = alerts.active();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].id.as_str(), active[0].state), (open_id.as_str(), AlertState::Acknowledged));
    assert!(active[0].evidence.value.is_nan(), "NaN is stored as null and read back");
    assert_eq!(active[0].evidence.reference.as_ref().map(|s| s.p95), Some(200.0));
    assert_eq!(alerts.get(&done_id).expect("get").map(|a| a.state), Some(AlertState::Resolved));

    let folded = alerts.raise(raised("open", Severity::Warning));
    assert_eq!((folded.id.as_str(), folded.occurrences, folded.severity), (open_id.as_str(), 2, Severity::Critical));
}

#[tokio::test]
async fn list_puts_firing_first_then_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir);
    let a = alerts.raise(raised("a", Severity::Info));
    let b = alerts.raise(raised("b", Severity::Info));
    let c = alerts.raise(raised("c", Severity::Info));
    alerts.resolve("a", "ok").expect("active");
    alerts.acknowledge(&b.id, "ops").expect("ack");
    let d = alerts.raise(raised("d", Severity::Info));

    let ids = |filter| alerts.list(filter).expect("list").into_iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(ids(AlertFilter::default()), [d.id.as_str(), c.id.as_str(), b.id.as_str(), a.id.as_str()]);
    assert_eq!(ids(AlertFilter { state: None, limit: Some(2) }), [d.id.as_str(), c.id.as_str()]);
    assert_eq!(ids(AlertFilter { state: Some(AlertState::Acknowledged), limit: None }), [b.id.as_str()]);
    assert_eq!(ids(AlertFilter { state: Some(AlertState::Resolved), limit: Some(10) }), [a.id.as_str()]);
    let active: Vec<String> = alerts.active().into_iter().map(|x| x.id).collect();
    assert_eq!(active, [d.id.as_str(), c.id.as_str(), b.id.as_str()]);
}

#[tokio::test]
async fn watchers_see_every_change_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir);
    let mut rx = alerts.subscribe();
    let a = alerts.raise(raised("k", Severity::Warning));
    alerts.raise(raised("k", Severity::Warning));
    alerts.acknowledge(&a.id, "ops").expect("ack");
    alerts.resolve("k", "ok").expect("active");
    let mut kinds = Vec::new();
    while let Ok(event) = rx.try_recv() {
        assert_eq!(event.alert.id, a.id);
        kinds.push(event.kind);
    }
    use AlertEventKind::*;
    assert_eq!(kinds, [Raised, Updated, Acknowledged, Resolved]);

    // A watcher that falls more than the capacity behind is told so, then continues.
    let mut slow = alerts.subscribe();
    for i in 0..(EVENTS_CAPACITY + 10) {
        alerts.raise(raised(&format!("many-{i}"), Severity::Info));
    }
    assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(10))));
    assert!(slow.try_recv().is_ok());
}

#[test]
fn manager_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<AlertManager>();
}

#[test]
fn severity_and_state_names_round_trip() {
    for s in [Severity::Info, Severity::Warning, Severity::Critical] {
        assert_eq!(Severity::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
    for s in [AlertState::Firing, AlertState::Acknowledged, AlertState::Resolved] {
        assert_eq!(AlertState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
    assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
}
