//! Shared by the alert end-to-end tests: a webhook receiver on a loopback port that keeps every POST, waits
//! on what the receiver and the daemon's AlertService saw, and chat requests through the gateway.
// Each test crate uses its own part of this module.
#![allow(dead_code)]
// Reads the deprecated alert strings on purpose: llmopsd keeps filling them for clients older than the enums.
#![allow(deprecated)]

use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_proto::v1 as pb;
use llmops_proto::v1::alert_service_client::AlertServiceClient;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(30);

/// A webhook receiver: what llmopsd POSTs to it, in arrival order.
pub struct Hook {
    pub url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let keep = keep.clone();
                async move {
                    keep.lock().expect("lock").push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook { url, received }
    }

    /// The `[[alerts.webhooks]]` table for this receiver (quick retries, for tests).
    pub fn toml(&self) -> String {
        format!("[[alerts.webhooks]]\nurl = \"{}\"\ntimeout_ms = 2000\nbackoff_ms = 50\n", self.url)
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }

    /// The events posted about alert `id`, in order.
    pub fn events_for(&self, id: &str) -> Vec<String> {
        let about = self.received().into_iter().filter(|body| body["alert"]["id"] == id);
        about.map(|body| body["event"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Waits for a POST of `event` ("raised", "resolved", ...) whose alert passes `check`; returns that alert.
    pub async fn wait_for(&self, daemon: &Daemon, event: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let find = || self.received().into_iter().find(|body| body["event"] == event && check(&body["alert"]));
        let found = wait_until(WAIT, || async { find().is_some() }).await;
        match find() {
            Some(body) if found => body["alert"].clone(),
            _ => panic!(
                "{what}: no {event:?} webhook; received {:#}\n{}",
                Value::Array(self.received()),
                daemon.log_tail(30)
            ),
        }
    }
}

/// Title, message, evidence detail and resolution of an alert as posted: written for people, not Rust's debug
/// formatting, and with the given words in it.
pub fn assert_readable(alert: &Value, words: &[&str]) {
    let text = ["title", "message", "resolution"]
        .iter()
        .map(|field| alert[*field].as_str().unwrap_or_default())
        .chain([alert["evidence"]["detail"].as_str().unwrap_or_default()])
        .collect::<Vec<_>>()
        .join(" | ");
    for debug in ["Some(", "None", "Up)", "Down)", "NaN"] {
        assert!(!text.contains(debug), "{debug:?} in {text}");
    }
    for word in words {
        assert!(text.contains(word), "{word:?} missing from {text}");
    }
}

pub async fn alerts(daemon: &Daemon) -> Vec<pb::Alert> {
    let mut client = AlertServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let request = pb::ListAlertsRequest { state: String::new(), limit: 100, ..pb::ListAlertsRequest::default() };
    client.list_alerts(request).await.expect("ListAlerts").into_inner().alerts
}

pub async fn wait_for_alert(daemon: &Daemon, what: &str, check: impl Fn(&pb::Alert) -> bool) -> pb::Alert {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = Vec::new();
    // Each poll is bounded too: a daemon that stops answering fails the test at the deadline, not never.
    while let Ok(listed) = tokio::time::timeout_at(deadline, alerts(daemon)).await {
        if let Some(alert) = listed.iter().find(|alert| check(alert)) {
            return alert.clone();
        }
        last = listed;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {WAIT:?}; alerts {last:#?}\n{}", daemon.log_tail(30));
}

/// Every delivery of the alert reached its webhook (the daemon's own record of it).
pub async fn wait_delivered(daemon: &Daemon, id: &str) -> pb::Alert {
    wait_for_alert(daemon, "the delivery is recorded as delivered", |a| {
        a.id == id && !a.deliveries.is_empty() && a.deliveries.iter().all(|d| d.status == "delivered")
    })
    .await
}

/// One non-streaming chat request with `content` as the user message; the HTTP status.
pub async fn chat(daemon: &Daemon, content: &str) -> u16 {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": content}]});
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await;
    response.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `n` chat requests that must all succeed.
pub async fn chats(daemon: &Daemon, n: usize, content: &str) {
    for i in 0..n {
        let status = chat(daemon, content).await;
        assert_eq!(status, 200, "request {i} of {n}: {}", daemon.log_tail(20));
    }
}

/// The config of an OpenAI-compatible engine `fake` serving `fake-model` at `base_url`.
pub fn engine_toml(base_url: &str) -> String {
    format!("[engines.fake]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodels = [\"fake-model\"]\n")
}

/// Acknowledges alert `id` with `llmopsctl alerts ack`.
pub async fn ack(daemon: &Daemon, id: &str) {
    let acked = daemon.llmopsctl_async(&["alerts", "ack", id, "--by", "ops"]).await.expect("llmopsctl alerts ack");
    assert!(acked.status.success(), "{}", String::from_utf8_lossy(&acked.stderr));
}
