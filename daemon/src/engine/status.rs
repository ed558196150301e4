//! What every engine reports the same way, whether it runs in the daemon or behind HTTP: why a call failed
//! ([`UpstreamError`], which also decides whether a route falls back) and whether it is healthy.
use std::time::Duration;

/// An error body in OpenAI's shape (`{"error": {message, type, param, code}}`), as every SDK reads it.
pub fn openai_error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach engine {engine} at {url}: {message}")]
    Connect { engine: String, url: String, message: String },
    #[error("engine {engine} sent no answer within {timeout_ms} ms")]
    Timeout { engine: String, timeout_ms: u64 },
    /// The engine answered with a non-success status; `body` is its JSON (or text wrapped as JSON).
    #[error("engine {engine} answered HTTP {status}")]
    Status { engine: String, status: u16, body: serde_json::Value, retry_after: Option<Duration> },
    /// The engine cannot take requests now; `reason` says why and what fixes it.
    #[error("engine {engine} is unavailable: {reason}")]
    Unavailable { engine: String, reason: String },
}

impl UpstreamError {
    /// Whether the next target of a route should be tried: the engine is unreachable, slow, failing or
    /// overloaded. Its refusal of the request itself (other 4xx) would be the same elsewhere.
    pub fn should_fall_back(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Unavailable { .. } => true,
            Self::Status { status, body, .. } => {
                *status >= 500 || *status == 429 || (*status == 400 && exceeds_context(body))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    pub health: Health,
    pub last_error: String,
    pub last_checked_unix_ms: i64,
}

fn exceeds_context(body: &serde_json::Value) -> bool {
    let code = body.pointer("/error/code").and_then(serde_json::Value::as_str);
    let message = body.pointer("/error/message").and_then(serde_json::Value::as_str).unwrap_or_default();
    let message = message.to_ascii_lowercase();
    code == Some("context_length_exceeded")
        || ["maximum context length", "context length", "context window", "exceeds the available context"]
            .iter()
            .any(|phrase| message.contains(phrase))
}

/// reqwest's own message is only "error sending request for url (…)"; the cause (connection refused, timed
/// out, …) is in its sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
