//! The trace of one client request, as the gateway builds it and the store keeps it.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    #[default]
    InFlight,
    Ok,
    /// Refused by the gateway before an engine ran.
    Rejected,
    Error,
    Cancelled,
}

impl TraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "in_flight" => Self::InFlight,
            "ok" => Self::Ok,
            "rejected" => Self::Rejected,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// One call to an engine on behalf of the request (fallbacks and retries are more attempts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub engine: String,
    pub model: String,
    pub start_offset_ms: f64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    /// 0 when no answer arrived.
    pub upstream_status: u16,
    pub error: String,
}

/// One guardrail's decision on a request (never the matched text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardrailVerdict {
    pub rule: String,
    /// `block`, `mask` or `flag`.
    pub action: String,
    /// `input` or `output`.
    pub stage: String,
    pub kind: String,
    pub matches: u32,
    /// Mask tokens or detectors that fired, or what a classifier call came to.
    pub detail: String,
}

/// What the response cache did with a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheOutcome {
    /// `hit`, `miss` or `bypass`.
    pub result: String,
    pub stored: bool,
    pub source_trace_id: String,
    pub saved_input_tokens: u64,
    pub saved_output_tokens: u64,
    pub saved_usd: f64,
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub id: String,
    pub started_at_unix_ms: i64,
    pub ended_at_unix_ms: i64,
    pub endpoint: String,
    pub route: String,
    pub model_requested: String,
    pub model_served: String,
    pub engine: String,
    pub tenant: String,
    pub user: String,
    pub session_id: String,
    pub prompt_id: String,
    pub prompt_version: String,
    /// SHA-256 of the registry prompt version the gateway rendered (its content hash); empty when none.
    pub prompt_hash: String,
    pub tags: BTreeMap<String, String>,
    pub status: TraceStatus,
    pub http_status: u16,
    pub error_type: String,
    pub error_message: String,
    pub stream: bool,
    pub finish_reason: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens_estimated: bool,
    pub ttft_ms: Option<f64>,
    pub latency_ms: f64,
    pub prompt_text: String,
    pub response_text: String,
    pub request_json: String,
    pub prompt_sha256: String,
    pub prompt_chars: u64,
    pub response_sha256: String,
    pub response_chars: u64,
    pub attempts: Vec<Attempt>,
    pub chunk_offsets_ms: Vec<f64>,
    /// Characters of `response_text` each of those chunks carried (replay splits the text with them).
    pub chunk_chars: Vec<u32>,
    /// The trace this one re-ran, for traces made by replay.
    pub replay_of: String,
    pub cost_usd: Option<f64>,
    pub energy_joules: Option<f64>,
    pub guardrails: Vec<GuardrailVerdict>,
    /// Set on routes with a response cache.
    pub cache: Option<CacheOutcome>,
}

impl Trace {
    /// Privacy mode: keep hashes and lengths, drop the text.
    pub fn redact(&mut self) {
        use sha2::{Digest, Sha256};
        let hex = |text: &str| Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
        self.prompt_sha256 = hex(&self.prompt_text);
        self.prompt_chars = self.prompt_text.chars().count() as u64;
        self.response_sha256 = hex(&self.response_text);
        self.response_chars = self.response_text.chars().count() as u64;
        self.prompt_text.clear();
        self.response_text.clear();
        self.request_json.clear();
        // Per-chunk lengths outline the answer's words; error texts can quote the request (a serde message
        // naming a bad value, an upstream echoing the prompt): keep only what the daemon itself says.
        self.chunk_chars.clear();
        if !self.error_message.is_empty() {
            self.error_message = format!("{} (details not kept in privacy mode)", self.error_type);
        }
        for attempt in &mut self.attempts {
            if let Some((summary, _)) = attempt.error.split_once(':') {
                attempt.error = format!("{summary} (details not kept in privacy mode)");
            }
        }
    }

    /// Fills the lengths (kept in both modes, so sizes stay queryable).
    pub fn measure(&mut self) {
        self.prompt_chars = self.prompt_text.chars().count() as u64;
        self.response_chars = self.response_text.chars().count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keeps_hash_and_length_only() {
        let mut trace = Trace {
            prompt_text: "user: héllo".into(),
            response_text: "abc".into(),
            request_json: "{}".into(),
            ..Trace::default()
        };
        trace.redact();
        assert!(trace.prompt_text.is_empty() && trace.response_text.is_empty() && trace.request_json.is_empty());
        assert_eq!(trace.prompt_chars, 11);
        assert_eq!(trace.response_chars, 3);
        // sha256("abc"), from `printf abc | sha256sum`.
        assert_eq!(trace.response_sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn redact_keeps_no_request_text_in_errors_or_chunk_lengths() {
        let mut trace = Trace {
            error_type: "invalid_request_error".into(),
            error_message: "invalid value for `temperature`: invalid type: string \"my secret\"".into(),
            chunk_chars: vec![3, 5, 8],
            attempts: vec![
                Attempt { error: "engine up failed with HTTP 400: echo my secret".into(), ..Attempt::default() },
                Attempt { error: "cancelled".into(), ..Attempt::default() },
            ],
            ..Trace::default()
        };
        trace.redact();
        assert!(!format!("{trace:?}").contains("secret"), "{trace:?}");
        assert!(trace.chunk_chars.is_empty());
        assert_eq!(trace.error_message, "invalid_request_error (details not kept in privacy mode)");
        assert_eq!(trace.attempts[0].error, "engine up failed with HTTP 400 (details not kept in privacy mode)");
        assert_eq!(trace.attempts[1].error, "cancelled", "a daemon-only text stays");
    }

    #[test]
    fn status_names_round_trip() {
        for status in
            [TraceStatus::InFlight, TraceStatus::Ok, TraceStatus::Rejected, TraceStatus::Error, TraceStatus::Cancelled]
        {
            assert_eq!(TraceStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TraceStatus::parse("fine"), None);
    }
}
