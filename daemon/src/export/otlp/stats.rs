//! What the exporter has done, for `llmopsctl status` (GetStatus) and `/metrics`.
use super::config::OtlpConfig;
use crate::export::prometheus::{MetricKind, MetricWriter};
use llmops_proto::v1 as pb;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Idle = 0,
    Sending = 1,
    Retrying = 2,
}

/// The exporter's counters (since start) and where it stands; shared with the trace writer, which counts what
/// a full outbox dropped.
#[derive(Debug)]
pub struct OtlpExport {
    pub target: String,
    pub protocol: &'static str,
    pub profile: &'static str,
    pub capacity: u64,
    pub pending: AtomicU64,
    pub exported: AtomicU64,
    pub exported_scores: AtomicU64,
    pub dropped: Arc<AtomicU64>,
    pub rejected: AtomicU64,
    pub failures: AtomicU64,
    pub last_success_unix_ms: AtomicI64,
    pub retry_in_ms: AtomicU64,
    state: AtomicU8,
    last_error: Mutex<String>,
}

/// Failure texts shown in status are cut here (a receiver's error body is its own input).
const MAX_ERROR_CHARS: usize = 300;

impl OtlpExport {
    pub fn new(config: &OtlpConfig, target: String) -> Self {
        Self {
            target,
            protocol: config.protocol.as_str(),
            profile: config.profile.as_str(),
            capacity: config.outbox_capacity,
            pending: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            exported_scores: AtomicU64::new(0),
            dropped: Arc::new(AtomicU64::new(0)),
            rejected: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_success_unix_ms: AtomicI64::new(0),
            retry_in_ms: AtomicU64::new(0),
            state: AtomicU8::new(State::Idle as u8),
            last_error: Mutex::new(String::new()),
        }
    }

    pub fn set_state(&self, state: State, retry_in_ms: u64) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.retry_in_ms.store(retry_in_ms, Ordering::Relaxed);
    }

    pub fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let cut: String = error.chars().take(MAX_ERROR_CHARS).collect();
        if let Ok(mut last) = self.last_error.lock() {
            *last = cut;
        }
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "sending",
            2 => "retrying",
            _ => "idle",
        }
    }

    pub fn to_proto(&self) -> pb::OtlpExportStatus {
        pb::OtlpExportStatus {
            endpoint: self.target.clone(),
            protocol: self.protocol.into(),
            profile: self.profile.into(),
            pending: self.pending.load(Ordering::Relaxed),
            capacity: self.capacity,
            exported: self.exported.load(Ordering::Relaxed),
            exported_scores: self.exported_scores.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error(),
            last_success_unix_ms: self.last_success_unix_ms.load(Ordering::Relaxed),
            state: self.state_name().into(),
            retry_in_ms: self.retry_in_ms.load(Ordering::Relaxed),
        }
    }

    pub fn render(&self, text: &mut String) {
        let mut w = MetricWriter::new();
        let counters = [
            ("llmops_otlp_exported_traces_total", "Traces the OTLP receiver accepted.", &self.exported),
            ("llmops_otlp_exported_scores_total", "Scores the OTLP receiver accepted.", &self.exported_scores),
            ("llmops_otlp_dropped_total", "Traces and scores dropped: the export outbox was full.", &*self.dropped),
            ("llmops_otlp_rejected_total", "Refused by the receiver, or deleted before export.", &self.rejected),
            ("llmops_otlp_export_failures_total", "Failed OTLP export requests (each retried).", &self.failures),
        ];
        for (name, help, value) in counters {
            w.family(name, help, MetricKind::Counter);
            w.sample(name, &[], value.load(Ordering::Relaxed) as f64);
        }
        w.family("llmops_otlp_outbox_items", "Traces and scores waiting in the export outbox.", MetricKind::Gauge);
        w.sample("llmops_otlp_outbox_items", &[], self.pending.load(Ordering::Relaxed) as f64);
        w.family("llmops_otlp_outbox_capacity", "The export outbox's bound (traces and scores).", MetricKind::Gauge);
        w.sample("llmops_otlp_outbox_capacity", &[], self.capacity as f64);
        let name = "llmops_otlp_last_success_timestamp_seconds";
        w.family(name, "When the receiver last accepted a batch (0: not since start).", MetricKind::Gauge);
        w.sample(name, &[], self.last_success_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        text.push_str(&w.finish());
    }
}
