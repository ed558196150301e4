//! Webhook sink: POST `{"event": ..., "alert": {...}}` to each configured URL, with a timeout per attempt and
//! retries with exponential backoff; the alert's `deliveries` entry records every attempt.
use super::model::{Alert, AlertError, AlertEventKind, Delivery, DeliveryStatus};
use super::Inner;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Retries never wait longer than this, whatever the base and attempt count.
const BACKOFF_CAP_MS: u64 = 30_000;
/// How much of a failing receiver's response body `last_error` keeps.
const ERROR_BODY_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Per attempt: connecting, sending and reading the response.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in all, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubles per retry, capped at 30 s.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Extra request headers (e.g. `Authorization`); a value `env:VAR` is read from the environment at start.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}

impl WebhookConfig {
    /// A webhook with the default timeout, attempts and backoff.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_ms: default_backoff_ms(),
            headers: BTreeMap::new(),
        }
    }
}

/// The body of every POST.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookPayload<'a> {
    pub event: AlertEventKind,
    pub alert: &'a Alert,
}

/// Serialises an event for webhooks: the alert without its `deliveries` (other receivers' URLs and status).
pub(super) fn payload(event: AlertEventKind, alert: &Alert) -> Result<Bytes, serde_json::Error> {
    let alert = Alert { deliveries: Vec::new(), ..alert.clone() };
    serde_json::to_vec(&WebhookPayload { event, alert: &alert }).map(Bytes::from)
}

/// A validated [`WebhookConfig`], headers resolved.
pub(super) struct Webhook {
    url: reqwest::Url,
    /// The URL as alerts show it: user info and query removed, since webhook URLs often embed a secret there.
    pub display: String,
    headers: HeaderMap,
    timeout: Duration,
    pub max_attempts: u32,
    backoff_ms: u64,
}

impl Webhook {
    pub fn new(config: &WebhookConfig) -> Result<Webhook, AlertError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| AlertError::Webhook { url: config.url.clone(), reason: e.to_string() })?;
        let mut display = url.clone();
        // Only fails for URLs that cannot have user info, which then have none to remove.
        let _ = display.set_username("");
        let _ = display.set_password(None);
        display.set_query(None);
        display.set_fragment(None);
        let display = display.to_string();
        let invalid = |reason: String| AlertError::Webhook { url: display.clone(), reason };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme {} is not http or https", url.scheme())));
        }
        if config.max_attempts == 0 || config.timeout_ms == 0 {
            return Err(invalid("max_attempts and timeout_ms must be at least 1".to_string()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(format!("header name {name:?}: {e}")))?;
            let value = match value.strip_prefix("env:") {
                Some(var) => std::env::var(var)
                    .map_err(|e| invalid(format!("header {name}: environment variable {var}: {e}")))?,
                None => value.clone(),
            };
            // The value is usually a credential: never echo it in errors or debug output.
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| invalid(format!("header {name}: invalid value")))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Webhook {
            url,
            display,
            headers,
            timeout: Duration::from_millis(config.timeout_ms),
            max_attempts: config.max_attempts,
            backoff_ms: config.backoff_ms,
        })
    }

    /// The wait before retry `n` (1 for the second attempt): base * 2^(n-1), capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        Duration::from_millis(self.backoff_ms.saturating_mul(factor).min(BACKOFF_CAP_MS))
    }

    /// One attempt: Ok on a 2xx answer, else a short description of what went wrong.
    pub async fn post(&self, client: &reqwest::Client, body: Bytes) -> Result<(), String> {
        let request = client.post(self.url.clone()).headers(self.headers.clone()).timeout(self.timeout).body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(ERROR_BODY_CHARS).collect();
                Err(if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") })
            }
            Err(e) if e.is_timeout() => Err(format!("timeout: no answer within {} ms", self.timeout.as_millis())),
            Err(e) => Err(describe(e.without_url())),
        }
    }
}

/// The error and its causes on one line (reqwest's own message alone is just "error sending request").
fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Decrements the in-flight count when a delivery task ends, however it ends.
pub(super) struct InFlight(pub Arc<Inner>);

impl InFlight {
    pub fn start(inner: &Arc<Inner>) -> InFlight {
        inner.inflight.send_modify(|n| *n += 1);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One event for one webhook.
pub(super) struct Job {
    pub hook: usize,
    pub event: AlertEventKind,
    pub alert_id: String,
    pub body: Bytes,
    /// The previous job of the same alert and webhook: awaited first so that a receiver sees events in order.
    pub after: Option<oneshot::Receiver<()>>,
    /// Dropped when this job ends, which releases the next one.
    pub done: oneshot::Sender<()>,
    pub in_flight: InFlight,
}

/// Runs a job to completion, recording each attempt on the alert.
pub(super) async fn deliver(inner: Arc<Inner>, job: Job) {
    if let Some(after) = job.after {
        // Err only means the previous task is gone, which is as good as done.
        let _ = after.await;
    }
    let Some(hook) = inner.webhooks.get(job.hook) else { return };
    let mut entry = Delivery {
        url: hook.display.clone(),
        event: job.event,
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        last_attempt_unix_ms: None,
    };
    record(&inner, &job.alert_id, job.hook, entry.clone()).await;
    for attempt in 1..=hook.max_attempts {
        if attempt > 1 {
            tokio::time::sleep(hook.backoff(attempt - 1)).await;
        }
        let outcome = hook.post(&inner.client, job.body.clone()).await;
        entry.attempts = attempt;
        entry.last_attempt_unix_ms = Some(crate::clock::unix_ms());
        entry.status = match &outcome {
            Ok(()) => DeliveryStatus::Delivered,
            Err(_) if attempt == hook.max_attempts => DeliveryStatus::Failed,
            Err(_) => DeliveryStatus::Pending,
        };
        entry.last_error = outcome.as_ref().err().cloned();
        match &outcome {
            Ok(()) => tracing::debug!(alert = %job.alert_id, url = %hook.display, attempt, "alert webhook delivered"),
            Err(e) => tracing::warn!(alert = %job.alert_id, url = %hook.display, attempt, error = %e,
                "alert webhook attempt failed"),
        }
        record(&inner, &job.alert_id, job.hook, entry.clone()).await;
        if entry.status != DeliveryStatus::Pending {
            break;
        }
    }
    // Release the next job of this lane, then count this one finished.
    drop(job.done);
    drop(job.in_flight);
}

/// SQLite writes block: run them off the async workers.
async fn record(inner: &Arc<Inner>, alert_id: &str, hook: usize, entry: Delivery) {
    let (inner, alert_id) = (inner.clone(), alert_id.to_string());
    if let Err(e) = tokio::task::spawn_blocking(move || inner.record_delivery(&alert_id, hook, entry)).await {
        tracing::error!(error = %e, "alert delivery status update panicked");
    }
}
