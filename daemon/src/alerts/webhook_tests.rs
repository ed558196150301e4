//! Webhook delivery against local HTTP receivers.
use super::tests::raised;
use super::webhook::Webhook;
use super::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Default)]
pub(super) struct Receiver {
    /// Answer 500 to this many requests before answering 200.
    pub fail_first: usize,
    /// Never answer (within any test's timeout).
    pub hang: bool,
    pub calls: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>,
}

impl Receiver {
    pub fn received(&self) -> Vec<(HeaderMap, serde_json::Value)> {
        self.received.lock().expect("lock").clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> (StatusCode, &'static str) {
    let call = r.calls.fetch_add(1, Ordering::SeqCst);
    if r.hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if call < r.fail_first {
        return (StatusCode::INTERNAL_SERVER_ERROR, "receiver is down");
    }
    let json = serde_json::from_str(&body).expect("the body is JSON");
    r.received.lock().expect("lock").push((headers, json));
    (StatusCode::OK, "")
}

/// Serves `receiver` on 127.0.0.1 and returns its webhook URL.
pub(super) async fn serve(receiver: Receiver) -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

pub(super) fn config(url: &str, max_attempts: u32) -> WebhookConfig {
    WebhookConfig { timeout_ms: 2_000, max_attempts, backoff_ms: 10, ..WebhookConfig::new(url) }
}

fn open(dir: &tempfile::TempDir, hooks: Vec<WebhookConfig>) -> AlertManager {
    AlertManager::open(&dir.path().join("state.db"), hooks).expect("open")
}

#[tokio::test]
async fn delivers_events_in_order_with_the_documented_payload() {
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    std::env::set_var("LLMOPS_ALERTS_TEST_TOKEN", "s3cret");
    let mut hook = config(&format!("{url}?token=abc"), 3);
    hook.headers.insert("Authorization".to_string(), "env:LLMOPS_ALERTS_TEST_TOKEN".to_string());
    hook.headers.insert("X-Source".to_string(), "llmops".to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir, vec![hook]);

    let a = alerts.raise(raised("drift:route=chat", Severity::Warning));
    assert_eq!(a.deliveries.len(), 1);
    assert_eq!((a.deliveries[0].status, a.deliveries[0].attempts), (DeliveryStatus::Pending, 0));
    assert_eq!(a.deliveries[0].url, url, "the query (often a secret) is not kept");
    alerts.raise(raised("drift:route=chat", Severity::Warning)); // folded, same severity: no POST
    alerts.resolve("drift:route=chat", "recovered");
    alerts.wait_idle().await;

    let received = receiver.received();
    let events: Vec<&str> = received.iter().map(|(_, body)| body["event"].as_str().expect("event")).collect();
    assert_eq!(events, ["raised", "resolved"]);
    let (headers, body) = &received[0];
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some("s3cret"));
    assert_eq!(headers.get("x-source").and_then(|v| v.to_str().ok()), Some("llmops"));
    let alert = &body["alert"];
    assert_eq!(alert["id"], a.id.as_str());
    assert_eq!(alert["key"], "drift:route=chat");
    assert_eq!((alert["rule"].as_str(), alert["severity"].as_str()), (Some("drift"), Some("warning")));
    assert_eq!((alert["state"].as_str(), alert["occurrences"].as_u64()), (Some("firing"), Some(1)));
    assert_eq!(alert["evidence"]["statistic"], "ks_p_value");
    assert_eq!(alert["evidence"]["threshold"], 0.01);
    assert_eq!(alert["evidence"]["reference"]["p95"], 200.0);
    assert_eq!(alert["evidence"]["current_n"], 80);
    assert_eq!(alert["labels"]["route"], "chat");
    assert!(alert["started_at_unix_ms"].is_i64() && alert["resolved_at_unix_ms"].is_null());
    assert!(alert.get("deliveries").is_none(), "receivers don't see other receivers");
    let resolved = &received[1].1["alert"];
    assert_eq!((resolved["state"].as_str(), resolved["occurrences"].as_u64()), (Some("resolved"), Some(2)));
    assert_eq!(resolved["resolution"], "recovered");

    let stored = alerts.get(&a.id).expect("get").expect("stored");
    let d = &stored.deliveries[0];
    assert_eq!((d.event, d.status, d.attempts), (AlertEventKind::Resolved, DeliveryStatus::Delivered, 1));
    assert!(d.last_error.is_none() && d.last_attempt_unix_ms.is_some());
}

#[tokio::test]
async fn retries_a_failing_receiver_until_it_answers() {
    let receiver = Receiver { fail_first: 2, ..Receiver::default() };
    let url = serve(receiver.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir, vec![config(&url, 5)]);
    let a = alerts.raise(raised("k", Severity::Critical));
    alerts.wait_idle().await;

    assert_eq!(receiver.calls.load(Ordering::SeqCst), 3);
    assert_eq!(receiver.received().len(), 1);
    // Read back from SQLite, not just memory.
    let listed = alerts.list(AlertFilter::default()).expect("list");
    let d = &listed[0].deliveries[0];
    assert_eq!((listed[0].id.as_str(), d.status, d.attempts), (a.id.as_str(), DeliveryStatus::Delivered, 3));
    assert!(d.last_error.is_none());
}

#[tokio::test]
async fn gives_up_on_a_silent_receiver_after_max_attempts() {
    let receiver = Receiver { hang: true, ..Receiver::default() };
    let url = serve(receiver.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = WebhookConfig { timeout_ms: 150, ..config(&url, 2) };
    let alerts = open(&dir, vec![hook]);
    let a = alerts.raise(raised("k", Severity::Warning));
    // On this single-threaded test runtime the delivery task cannot have run yet: raise only queued it.
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 0, "raise does not wait for the webhook");
    alerts.wait_idle().await;

    assert_eq!(receiver.calls.load(Ordering::SeqCst), 2);
    let listed = alerts.list(AlertFilter::default()).expect("list");
    let d = &listed[0].deliveries[0];
    assert_eq!((listed[0].id.as_str(), d.status, d.attempts), (a.id.as_str(), DeliveryStatus::Failed, 2));
    let error = d.last_error.as_deref().expect("an error");
    assert!(error.contains("timeout") && error.contains("150 ms"), "{error}");
}

#[tokio::test]
async fn a_restart_marks_unfinished_deliveries_failed() {
    let receiver = Receiver { hang: true, ..Receiver::default() };
    let url = serve(receiver.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = WebhookConfig { timeout_ms: 20_000, ..config(&url, 1) };
    let id = open(&dir, vec![hook.clone()]).raise(raised("k", Severity::Warning)).id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.calls.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the webhook was never called");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let reopened = open(&dir, vec![hook]);
    let d = &reopened.get(&id).expect("get").expect("stored").deliveries[0];
    assert_eq!((d.status, d.last_error.as_deref()), (DeliveryStatus::Failed, Some(store::INTERRUPTED)));
}

#[tokio::test]
async fn escalation_notifies_and_a_refused_connection_is_named() {
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}/hook", closed.local_addr().expect("local address"));
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = open(&dir, vec![config(&url, 1), config(&dead, 2)]);
    let a = alerts.raise(raised("k", Severity::Info));
    alerts.raise(raised("k", Severity::Info));
    alerts.raise(raised("k", Severity::Critical));
    alerts.acknowledge(&a.id, "ops").expect("ack");
    alerts.wait_idle().await;

    let events: Vec<String> = receiver.received().iter().map(|(_, b)| b["event"].to_string()).collect();
    assert_eq!(events, ["\"raised\"", "\"updated\"", "\"acknowledged\""]);
    let stored = alerts.get(&a.id).expect("get").expect("stored");
    assert_eq!(stored.deliveries.len(), 2);
    assert_eq!(
        (stored.deliveries[0].status, stored.deliveries[0].event),
        (DeliveryStatus::Delivered, AlertEventKind::Acknowledged)
    );
    let failed = &stored.deliveries[1];
    assert_eq!((failed.status, failed.attempts), (DeliveryStatus::Failed, 2));
    let error = failed.last_error.as_deref().expect("an error");
    assert!(error.contains("refused"), "{error}");
}

#[test]
fn config_defaults_validation_and_backoff() {
    let parsed: WebhookConfig = toml::from_str("url = \"https://hooks.example/x\"").expect("parse");
    assert_eq!(parsed, WebhookConfig::new("https://hooks.example/x"));
    assert_eq!((parsed.timeout_ms, parsed.max_attempts, parsed.backoff_ms), (5_000, 5, 500));
    assert!(toml::from_str::<WebhookConfig>("url = \"http://x\"\nretries = 3").is_err(), "unknown field");

    let error = |c: WebhookConfig| Webhook::new(&c).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error(WebhookConfig::new("ftp://x/y")).contains("scheme ftp"));
    assert!(error(WebhookConfig::new("not a url")).contains("not a url"));
    assert!(error(WebhookConfig { max_attempts: 0, ..WebhookConfig::new("http://x") }).contains("max_attempts"));
    let mut missing = WebhookConfig::new("http://user:pw@x/hook?key=k");
    missing.headers.insert("Authorization".to_string(), "env:LLMOPS_ALERTS_TEST_UNSET".to_string());
    let message = error(missing);
    assert!(message.contains("LLMOPS_ALERTS_TEST_UNSET") && message.starts_with("webhook http://x/hook:"), "{message}");
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(AlertManager::open(&dir.path().join("s.db"), vec![WebhookConfig::new("ftp://x")]).is_err());

    let hook = Webhook::new(&WebhookConfig::new("http://x")).expect("valid");
    let waits: Vec<u64> = (1..=8).map(|n| hook.backoff(n).as_millis() as u64).collect();
    assert_eq!(waits, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    assert_eq!(hook.backoff(200), Duration::from_millis(30_000));
}
