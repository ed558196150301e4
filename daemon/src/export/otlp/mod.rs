//! OTLP trace export. Traces and scores become an OTLP `ExportTraceServiceRequest` with
//! the GenAI semantic conventions and per-backend attributes (`Profile`; pure conversion in `spans.rs` and its
//! siblings); an outbox in the trace store (`trace/store_outbox.rs`) holds them until the receiver has them
//! (`exporter.rs`), sent over OTLP/HTTP or OTLP/gRPC (`transport.rs`).
mod attrs;
pub mod config;
mod content;
mod evaluation;
mod exporter;
mod genai;
mod langfuse;
mod phoenix;
mod request;
mod spans;
pub mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bounds;
mod transport;

pub use config::{ExportConfig, OtlpConfig, Protocol};
pub use spans::{
    export_request, Profile, ResourceInfo, SpanSettings, TraceToExport, DEFAULT_MAX_CONTENT_CHARS, MAX_TAGS,
    SCHEMA_URL, SCOPE_NAME,
};
pub use stats::OtlpExport;

use std::sync::Arc;

/// Export made ready at start (headers read, transport built), to be started once the daemon runs.
pub struct Prepared {
    pub stats: Arc<OtlpExport>,
    job: exporter::ExportJob,
}

impl Prepared {
    /// How the trace writer bounds the outbox (and counts what it drops).
    pub fn outbox_bound(&self) -> crate::trace::store::OutboxBound {
        crate::trace::store::OutboxBound {
            capacity: self.job.config.outbox_capacity,
            dropped: self.stats.dropped.clone(),
        }
    }

    pub fn spawn(self, shutdown: crate::shutdown::Shutdown) -> tokio::task::JoinHandle<()> {
        exporter::spawn(self.job, shutdown)
    }
}

/// `None` when `[export.otlp]` has no endpoint. Needs a tokio runtime (the gRPC channel is made here).
pub fn prepare(config: &crate::config::Config) -> Result<Option<Prepared>, String> {
    let otlp = &config.export.otlp;
    if !otlp.enabled() {
        return Ok(None);
    }
    let headers = otlp.headers()?;
    let transport = transport::Transport::new(otlp, headers)?;
    let stats = Arc::new(OtlpExport::new(otlp, transport::Transport::target(otlp)));
    let resource = ResourceInfo {
        service_name: otlp.service_name.clone(),
        service_version: env!("CARGO_PKG_VERSION").into(),
        host_name: sysinfo::System::host_name().unwrap_or_default(),
        // Set from the downward API in the Kubernetes DaemonSet (config/deploy/helm).
        node_name: std::env::var("NODE_NAME").unwrap_or_default().chars().take(253).collect(),
        project: otlp.project.clone(),
    };
    let providers = config
        .effective_engines()
        .into_iter()
        .map(|(name, engine)| {
            let provider = match engine {
                crate::config::EngineConfig::Embedded(_) => "llama.cpp",
                crate::config::EngineConfig::Openai(_) => "openai",
            };
            (name, provider.to_string())
        })
        .collect();
    let job = exporter::ExportJob {
        config: otlp.clone(),
        transport,
        store_path: config.store_path(),
        resource,
        providers,
        stats: stats.clone(),
    };
    Ok(Some(Prepared { stats, job }))
}
