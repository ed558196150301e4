//! Runs the real `llmopsctl alerts` / `alert ID` / `alerts ack ID` / `alerts --watch` against a fake
//! AlertService on a Unix socket: text, JSON, ids given in part, and the exits for unknown, ambiguous and
//! resolved alerts and for a viewer that fell behind.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
// The fake answers as an llmopsd from before the alert enums (strings only): llmopsctl must still read it, and
// it reads the `state` of ListAlerts as such a daemon does (llmopsctl sends both).
#![allow(deprecated)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llmops_proto::v1::alert_service_server::{AlertService, AlertServiceServer};
use llmops_proto::v1::{
    AckAlertRequest, Alert, AlertEvent, Delivery, Evidence, ListAlertsRequest, ListAlertsResponse, WatchAlertsRequest,
};
use serde_json::Value;
use support::{failure, llmopsctl, llmopsctl_with_env, stdout_json, stdout_text};
use tonic::{Request, Response};

mod support;

const AT: i64 = 1_717_000_000_000; // 2024-05-29 16:26:40 UTC
const DRIFT_ID: &str = "0190b5a8-7c1e-7d3a-9f00-00000000a1e7";
const BUDGET_ID: &str = "0190b5a8-7c1e-7d3a-9f00-00000000b0d9";
const GPU_ID: &str = "0190b5a8-7c1e-7d3a-9f00-00000000c0c0";

fn drift_alert() -> Alert {
    Alert {
        id: DRIFT_ID.into(),
        key: "drift:small:prompt_chars".into(),
        rule: "drift".into(),
        severity: "warning".into(),
        state: "firing".into(),
        title: "Prompt length drifted on route small".into(),
        message: "The prompts of the last hour are longer than the reference week's.".into(),
        evidence: Some(Evidence {
            statistic: "ks_p_value".into(),
            value: 0.0012,
            threshold: 0.05,
            reference: [("mean".to_owned(), 120.0), ("p95".to_owned(), 410.0)].into(),
            current: [("mean".to_owned(), 180.0), ("p95".to_owned(), 900.0)].into(),
            reference_n: 1000,
            current_n: 200,
            detail: String::new(),
        }),
        started_at_unix_ms: AT,
        updated_at_unix_ms: AT + 60_000,
        occurrences: 3,
        labels: [("route".to_owned(), "small".to_owned())].into(),
        deliveries: vec![Delivery {
            url: "https://hooks.example/alerts".into(),
            status: "delivered".into(),
            attempts: 1,
            last_error: String::new(),
            last_attempt_unix_ms: AT + 500,
            ..Delivery::default()
        }],
        ..Alert::default()
    }
}

fn budget_alert() -> Alert {
    Alert {
        id: BUDGET_ID.into(),
        rule: "budget".into(),
        severity: "critical".into(),
        state: "acknowledged".into(),
        title: "Budget daily-spend at 95%".into(),
        evidence: Some(Evidence {
            statistic: "used_fraction".into(),
            value: 0.95,
            threshold: 0.9,
            ..Evidence::default()
        }),
        started_at_unix_ms: AT - 3_600_000,
        updated_at_unix_ms: AT,
        acknowledged_at_unix_ms: Some(AT),
        acknowledged_by: "bob".into(),
        occurrences: 1,
        deliveries: vec![Delivery { status: "failed".into(), attempts: 3, ..Delivery::default() }],
        ..Alert::default()
    }
}

fn gpu_alert() -> Alert {
    Alert {
        id: GPU_ID.into(),
        rule: "gpu".into(),
        severity: "critical".into(),
        state: "resolved".into(),
        title: "GPU 0 at 91 C".into(),
        started_at_unix_ms: AT - 7_200_000,
        resolved_at_unix_ms: Some(AT - 3_600_000),
        occurrences: 2,
        ..Alert::default()
    }
}

#[derive(Clone, Default)]
struct FakeDaemon {
    /// Answers ListAlerts with no alerts, like a daemon that never raised one.
    no_alerts: bool,
    lists: Arc<Mutex<Vec<ListAlertsRequest>>>,
    acks: Arc<Mutex<Vec<AckAlertRequest>>>,
}

#[tonic::async_trait]
impl AlertService for FakeDaemon {
    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, tonic::Status> {
        let request = request.into_inner();
        self.lists.lock().expect("lock").push(request.clone());
        let all = if self.no_alerts { Vec::new() } else { vec![drift_alert(), budget_alert(), gpu_alert()] };
        let limit = if request.limit == 0 { 100 } else { request.limit as usize };
        let alerts =
            all.into_iter().filter(|a| request.state.is_empty() || a.state == request.state).take(limit).collect();
        Ok(Response::new(ListAlertsResponse { alerts }))
    }

    type WatchAlertsStream = tokio_stream::Iter<std::vec::IntoIter<Result<AlertEvent, tonic::Status>>>;

    async fn watch_alerts(
        &self,
        _request: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, tonic::Status> {
        let acked = Alert { state: "acknowledged".into(), updated_at_unix_ms: AT + 61_000, ..drift_alert() };
        let events = vec![
            Ok(AlertEvent { kind: "raised".into(), alert: Some(drift_alert()), ..AlertEvent::default() }),
            Ok(AlertEvent { kind: "acknowledged".into(), alert: Some(acked), ..AlertEvent::default() }),
            Ok(AlertEvent { kind: String::new(), alert: None, missed: 2, ..AlertEvent::default() }),
        ];
        Ok(Response::new(tokio_stream::iter(events)))
    }

    async fn ack_alert(&self, request: Request<AckAlertRequest>) -> Result<Response<Alert>, tonic::Status> {
        let request = request.into_inner();
        self.acks.lock().expect("lock").push(request.clone());
        match request.id.as_str() {
            DRIFT_ID => Ok(Response::new(Alert {
                state: "acknowledged".into(),
                acknowledged_at_unix_ms: Some(AT + 61_000),
                acknowledged_by: request.by,
                ..drift_alert()
            })),
            GPU_ID => Err(tonic::Status::failed_precondition(format!("alert {GPU_ID} is already resolved"))),
            id => Err(tonic::Status::not_found(format!("alert {id} not found"))),
        }
    }
}

async fn start_fake(name: &str, fake: FakeDaemon) -> PathBuf {
    support::serve(&format!("alerts-{name}"), |server| server.add_service(AlertServiceServer::new(fake))).await
}

fn list_requests(fake: &FakeDaemon) -> Vec<(String, u32)> {
    fake.lists.lock().expect("lock").drain(..).map(|r| (r.state, r.limit)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_list_by_state_as_text_and_json() {
    let fake = FakeDaemon::default();
    let socket = start_fake("list", fake.clone()).await;

    // Not resolved by default: firing, then acknowledged, each asked of llmopsd.
    let text = stdout_text(&llmopsctl(&socket, &["alerts"]).await);
    assert_eq!(
        text,
        "ID        STATE         SEVERITY  RULE    TITLE                                 SINCE                COUNT  \
         EVIDENCE                  WEBHOOKS\n\
         0000a1e7  firing        warning   drift   Prompt length drifted on route small  2024-05-29 16:26:40      3  \
         ks_p_value 0.0012 < 0.05  1/1 delivered\n\
         0000b0d9  acknowledged  critical  budget  Budget daily-spend at 95%             2024-05-29 15:26:40      1  \
         used_fraction 0.95 > 0.9  failed (3 tries)\n"
    );
    assert_eq!(list_requests(&fake), [("firing".to_owned(), 100), ("acknowledged".to_owned(), 99)]);

    let text = stdout_text(&llmopsctl(&socket, &["alerts", "--state", "all", "--limit", "3"]).await);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().nth(3).is_some_and(|line| line.starts_with("0000c0c0  resolved")), "{text}");
    assert_eq!(list_requests(&fake), [(String::new(), 3)]);

    let text = stdout_text(&llmopsctl(&socket, &["alerts", "--state", "resolved"]).await);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(list_requests(&fake), [("resolved".to_owned(), 100)]);

    let json = stdout_json(&llmopsctl(&socket, &["alerts", "--limit", "1", "--json"]).await);
    assert_eq!(json["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["alerts"][0]["id"], DRIFT_ID);
    assert_eq!(json["alerts"][0]["acknowledged_at_unix_ms"], Value::Null);
    assert_eq!(json["alerts"][0]["evidence"]["reference_n"], 1000);
    assert_eq!(list_requests(&fake), [("firing".to_owned(), 1)], "the limit is reached after the firing ones");

    let empty = start_fake("empty", FakeDaemon { no_alerts: true, ..FakeDaemon::default() }).await;
    assert_eq!(stdout_text(&llmopsctl(&empty, &["alerts"]).await), "(no alerts)\n");
    assert_eq!(stdout_json(&llmopsctl(&empty, &["alerts", "--json"]).await), serde_json::json!({"alerts": []}));

    // Usage errors exit 2 before any call.
    let watch_and_state = llmopsctl(&socket, &["alerts", "--watch", "--state", "all"]).await;
    assert_eq!(watch_and_state.status.code(), Some(2));
    assert!(list_requests(&fake).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_id_shows_one_alert_found_by_part_of_its_id() {
    let fake = FakeDaemon::default();
    let socket = start_fake("show", fake.clone()).await;

    let text = stdout_text(&llmopsctl(&socket, &["alert", "a1e7"]).await);
    assert!(text.starts_with(&format!("id                {DRIFT_ID}\nstate             firing\n")), "{text}");
    assert!(text.contains("\nvalue             0.0012 < threshold 0.05\n"), "{text}");
    assert!(text.contains("\nmean           120      180    +50%\n"), "{text}");
    assert!(
        text.contains("\nhttps://hooks.example/alerts  delivered      1  2024-05-29 16:26:40.500 +00:00"),
        "{text}"
    );
    assert_eq!(list_requests(&fake), [(String::new(), 1000)], "resolved alerts are looked through too");

    let json = stdout_json(&llmopsctl(&socket, &["alert", GPU_ID, "--json"]).await);
    assert_eq!((&json["state"], &json["resolved_at_unix_ms"]), (&"resolved".into(), &(AT - 3_600_000).into()));
    assert_eq!(json["evidence"], Value::Null);

    let missing = failure(&llmopsctl(&socket, &["alert", "nope"]).await);
    assert_eq!(missing, (Some(1), "llmopsctl: no alert with id nope (see `llmopsctl alerts --state all`)\n".into()));
    let ambiguous = failure(&llmopsctl(&socket, &["alert", "0190b5a8"]).await);
    assert_eq!(
        ambiguous,
        (
            Some(1),
            format!("llmopsctl: 3 alerts match 0190b5a8 ({DRIFT_ID}, {BUDGET_ID}, {GPU_ID}): give more of the id\n")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_ack_sends_the_full_id_and_who() {
    let fake = FakeDaemon::default();
    let socket = start_fake("ack", fake.clone()).await;
    let acks =
        || -> Vec<(String, String)> { fake.acks.lock().expect("lock").drain(..).map(|r| (r.id, r.by)).collect() };

    let text = stdout_text(&llmopsctl(&socket, &["alerts", "ack", "a1e7", "--by", "alice"]).await);
    assert_eq!(
        text,
        format!("Acknowledged alert {DRIFT_ID} (warning drift: Prompt length drifted on route small) as alice.\n")
    );
    assert_eq!(acks(), [(DRIFT_ID.to_owned(), "alice".to_owned())]);

    // --by defaults to $USER, else "llmopsctl".
    let json =
        stdout_json(&llmopsctl_with_env(&socket, &["alerts", "ack", DRIFT_ID, "--json"], &[("USER", "carol")]).await);
    assert_eq!((&json["state"], &json["acknowledged_by"]), (&"acknowledged".into(), &"carol".into()));
    stdout_text(&llmopsctl(&socket, &["alerts", "ack", "a1e7"]).await);
    assert_eq!(acks(), [(DRIFT_ID.to_owned(), "carol".to_owned()), (DRIFT_ID.to_owned(), "llmopsctl".to_owned())]);

    // Unknown here: llmopsd is asked anyway (it may know an older alert) and says NOT_FOUND.
    let missing = failure(&llmopsctl(&socket, &["alerts", "ack", "nope"]).await);
    assert_eq!(missing, (Some(1), "llmopsctl: no alert with id nope (see `llmopsctl alerts --state all`)\n".into()));
    let resolved = failure(&llmopsctl(&socket, &["alerts", "ack", "c0c0"]).await);
    assert_eq!(
        resolved,
        (Some(1), format!("llmopsctl: cannot acknowledge alert {GPU_ID}: alert {GPU_ID} is already resolved\n"))
    );
    assert_eq!(acks(), [("nope".to_owned(), "llmopsctl".to_owned()), (GPU_ID.to_owned(), "llmopsctl".to_owned())]);
    let ambiguous = failure(&llmopsctl(&socket, &["alerts", "ack", "0190"]).await);
    assert_eq!(ambiguous.0, Some(1));
    assert!(acks().is_empty(), "an ambiguous id is never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_watch_prints_events_then_exits_1_when_too_slow() {
    let socket = start_fake("watch", FakeDaemon::default()).await;

    let watch = llmopsctl(&socket, &["alerts", "--watch"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&watch.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "the header and both events: {stdout}");
    assert!(lines[0].starts_with("TIME      EVENT         ID        SEVERITY  RULE"), "{stdout}");
    assert!(lines[1].starts_with("2024-05-29 16:27:40  RAISED        0000a1e7  warning   drift"), "{stdout}");
    assert!(lines[2].starts_with("2024-05-29 16:27:41  ACKNOWLEDGED  0000a1e7"), "{stdout}");
    assert!(lines[2].ends_with("Prompt length drifted on route small      ks_p_value 0.0012 < 0.05"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&watch.stderr),
        "llmopsctl: watch stream ended by llmopsd: this viewer read too slowly and missed 2 updates\n"
    );

    let watch = llmopsctl(&socket, &["alerts", "--watch", "--json"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!((&lines[0]["kind"], &lines[0]["alert"]["id"]), (&"raised".into(), &DRIFT_ID.into()));
    assert_eq!(lines[1]["alert"]["state"], "acknowledged");
    assert_eq!((&lines[2]["alert"], &lines[2]["missed"]), (&Value::Null, &2.into()));
}
