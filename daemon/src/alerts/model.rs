//! The alert record as it is stored, listed, watched and posted to webhooks.
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Ordered so that folding a duplicate can keep the highest severity seen (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical].into_iter().find(|v| v.as_str() == s)
    }
}

/// Firing -> Acknowledged -> Resolved (Firing -> Resolved directly is allowed too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        [AlertState::Firing, AlertState::Acknowledged, AlertState::Resolved].into_iter().find(|v| v.as_str() == s)
    }

    /// Firing and acknowledged alerts absorb duplicates; a resolved one never comes back.
    pub fn is_active(self) -> bool {
        self != AlertState::Resolved
    }
}

/// JSON has no NaN or infinity: serde_json writes them as `null`, so read `null` back as NaN rather than failing
/// (a p-value of NaN from an empty window must not make a stored alert unreadable).
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A distribution summary of one window (reference or current).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: u64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub p50: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub p95: f64,
}

/// Why the rule fired: the statistic against its threshold, and the windows it compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What `value` is, e.g. "ks_p_value", "p95_latency_ms", "gpu_temp_c".
    pub statistic: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub value: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub threshold: f64,
    #[serde(default)]
    pub reference: Option<Summary>,
    #[serde(default)]
    pub current: Option<Summary>,
    #[serde(default)]
    pub reference_n: u64,
    #[serde(default)]
    pub current_n: u64,
    /// Free text for what does not fit the fields above.
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

/// The state of the latest notification of this alert to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook URL without user info or query string (they often carry the secret).
    pub url: String,
    /// The event this entry is about: a later event restarts the entry.
    pub event: AlertEventKind,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    /// Deduplication key: at most one active (firing or acknowledged) alert per key.
    pub key: String,
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    pub title: String,
    pub message: String,
    pub evidence: Evidence,
    pub started_at_unix_ms: i64,
    pub updated_at_unix_ms: i64,
    pub acknowledged_at_unix_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at_unix_ms: Option<i64>,
    pub resolution: Option<String>,
    /// How many times the rule raised this key while the alert was active (1 for a new alert).
    pub occurrences: u64,
    pub labels: BTreeMap<String, String>,
    /// One entry per configured webhook; left out of webhook payloads, so receivers don't see each other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// What a rule reports; [`crate::alerts::AlertManager::raise`] turns it into a new or folded alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub key: String,
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub evidence: Evidence,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// A new alert, or an acknowledged one-off alert (a CUSUM shift, an input anomaly) that occurred again and
    /// fires anew (same id, state firing, `occurrences` counting on).
    Raised,
    /// A duplicate folded into an active alert (webhooks hear of it only when the severity rose).
    Updated,
    Acknowledged,
    Resolved,
}

/// What watchers of [`crate::alerts::AlertManager::subscribe`] receive: the alert as it is after the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub kind: AlertEventKind,
    pub alert: Alert,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    /// At most this many alerts; `None` for all.
    pub limit: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert {0} not found")]
    NotFound(String),
    #[error("alert {0} is already resolved")]
    AlreadyResolved(String),
    #[error("create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot make {path} private (mode 0600): {source}")]
    Private { path: PathBuf, source: std::io::Error },
    #[error("open alert store {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("alert store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("alert store: corrupt row {id}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("webhook client: {0}")]
    Client(String),
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
}
