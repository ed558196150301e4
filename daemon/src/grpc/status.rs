//! `llmops.v1.StatusService`: what the daemon is, what it serves and how its store is doing, and the output of
//! the engines it launches.
use crate::engine::embedded::cpu::{self, CpuFeatures};
use crate::engine::{Engine, Engines, Health, ProcessState};
use crate::router::Router;
use crate::trace::{Recorder, Store};
use llmops_proto::v1 as pb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct StatusApi {
    pub started: Instant,
    pub started_at_unix_ms: i64,
    pub http_listen: String,
    pub grpc_listen: String,
    pub privacy_mode: bool,
    pub engines: Engines,
    pub router: Router,
    pub recorder: Recorder,
    pub store: Arc<Mutex<Store>>,
    pub in_flight: Arc<AtomicU64>,
    /// OTLP export's state (absent when export is off).
    pub otlp: Option<Arc<crate::export::otlp::OtlpExport>>,
}

fn engine_build(features: &CpuFeatures) -> pb::EngineBuild {
    pb::EngineBuild {
        target_cpu: cpu::TARGET_CPU.into(),
        built_with: features.built_with.clone(),
        in_use: features.in_use(),
        host: features.host.clone(),
        missing_on_host: features.missing_on_host.clone(),
        unused_on_host: features.unused_on_host.clone(),
    }
}

fn health_to_proto(health: Health) -> pb::EngineHealth {
    match health {
        Health::Unknown => pb::EngineHealth::Unknown,
        Health::Healthy => pb::EngineHealth::Healthy,
        Health::Unhealthy => pb::EngineHealth::Unhealthy,
    }
}

fn process_to_proto(process: ProcessState, log_tail: Vec<String>) -> pb::EngineProcess {
    pb::EngineProcess {
        state: process.phase.as_str().into(),
        restarts: process.restarts,
        pid: process.pid.unwrap_or(0),
        last_exit: process.last_exit,
        log_tail,
    }
}

fn engine_status(engine: &Engine) -> pb::EngineStatus {
    let health = engine.health();
    let load = engine.load();
    pb::EngineStatus {
        name: engine.name().to_string(),
        kind: engine.kind().into(),
        base_url: engine.location(),
        models: engine.models(),
        running: load.and_then(|l| l.running),
        waiting: load.and_then(|l| l.waiting),
        kv_cache_used_fraction: load.and_then(|l| l.kv_cache_used_fraction),
        prefix_cache_hit_rate: load.and_then(|l| l.prefix_cache_hit_rate),
        prefix_cache_queried_tokens: load.and_then(|l| l.prefix_cache_queried_tokens),
        prefix_cache_hit_tokens: load.and_then(|l| l.prefix_cache_hit_tokens),
        // The tail is only read for launched engines; others have no supervisor to ask.
        process: engine.process().map(|process| process_to_proto(process, engine.log_tail())),
        health: health_to_proto(health.health) as i32,
        last_error: health.last_error,
        last_checked_unix_ms: health.last_checked_unix_ms,
    }
}

/// `GetEngineLogs`, apart from the service so it can be tested without a store or recorder.
fn engine_logs(engines: &Engines, request: &pb::GetEngineLogsRequest) -> Result<pb::EngineLogs, Status> {
    let Some(engine) = engines.get(&request.engine) else {
        let known: Vec<&str> = engines.iter().map(|engine| engine.name()).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        return Err(Status::not_found(format!("no engine named {:?} (known engines: {known})", request.engine)));
    };
    let Some(process) = engine.process() else {
        return Err(Status::failed_precondition(format!(
            "engine {:?} has no logs: llmopsd does not launch it (no `launch = [...]` in its config)",
            request.engine
        )));
    };
    Ok(pb::EngineLogs {
        engine: request.engine.clone(),
        lines: newest(engine.log_tail(), request.lines),
        process: Some(process_to_proto(process, Vec::new())),
    })
}

/// The last `count` lines, or all of them for 0.
fn newest(mut lines: Vec<String>, count: u32) -> Vec<String> {
    let keep = usize::try_from(count).unwrap_or(usize::MAX);
    if keep > 0 && lines.len() > keep {
        lines.drain(..lines.len() - keep);
    }
    lines
}

#[tonic::async_trait]
impl pb::status_service_server::StatusService for StatusApi {
    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Result<Response<pb::Status>, Status> {
        let (path, size_bytes, trace_count) = super::store_query::with_store(&self.store, |store| {
            Ok((store.path().display().to_string(), store.size_bytes(), store.count()?))
        })
        .await?;
        let stats = self.recorder.stats();
        let engines = self.engines.iter().map(|engine| engine_status(engine)).collect();
        let routes = self
            .router
            .iter()
            .map(|(name, targets)| pb::RouteStatus {
                name: name.to_string(),
                targets: targets.iter().map(|t| format!("{}/{}", t.engine.name(), t.model)).collect(),
            })
            .collect();
        Ok(Response::new(pb::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            started_at_unix_ms: self.started_at_unix_ms,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            http_listen: self.http_listen.clone(),
            grpc_listen: self.grpc_listen.clone(),
            privacy_mode: self.privacy_mode,
            engines,
            routes,
            store: Some(pb::StoreStatus {
                path,
                size_bytes,
                trace_count,
                queue_depth: stats.queued.load(Ordering::Relaxed),
                queue_capacity: self.recorder.queue_capacity() as u64,
                written: stats.written.load(Ordering::Relaxed),
                dropped: stats.dropped.load(Ordering::Relaxed),
                write_errors: stats.write_errors.load(Ordering::Relaxed),
                retention_deleted: stats.retention_deleted.load(Ordering::Relaxed),
            }),
            requests_in_flight: self.in_flight.load(Ordering::Relaxed),
            engine_build: Some(engine_build(CpuFeatures::current())),
            otlp_export: self.otlp.as_ref().map(|otlp| otlp.to_proto()),
        }))
    }

    async fn get_engine_logs(
        &self,
        request: Request<pb::GetEngineLogsRequest>,
    ) -> Result<Response<pb::EngineLogs>, Status> {
        engine_logs(&self.engines, request.get_ref()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn engines() -> Engines {
        let toml = r#"
[engines.remote]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
models = ["m"]
[engines.launched]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
models = ["m"]
launch = ["/bin/true"]
"#;
        let config = Config::from_toml(toml, Path::new("t.toml")).expect("config");
        Engines::from_config(&config).expect("engines")
    }

    fn request(engine: &str) -> pb::GetEngineLogsRequest {
        pb::GetEngineLogsRequest { engine: engine.into(), lines: 0 }
    }

    #[test]
    fn an_unknown_engine_is_not_found_and_the_known_ones_are_named() {
        let err = engine_logs(&engines(), &request("nope")).expect_err("no such engine");
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains("\"nope\""), "{}", err.message());
        assert!(err.message().contains("known engines: launched, remote"), "{}", err.message());
        let none = engine_logs(&Engines::default(), &request("x")).expect_err("no engines at all");
        assert!(none.message().contains("known engines: none"), "{}", none.message());
    }

    #[test]
    fn an_engine_the_daemon_does_not_launch_has_no_logs() {
        let err = engine_logs(&engines(), &request("remote")).expect_err("not launched");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("does not launch"), "{}", err.message());
    }

    #[test]
    fn a_launched_engine_answers_with_its_process() {
        // Not started (no background tasks here), so it is still starting and has written nothing.
        let logs = engine_logs(&engines(), &request("launched")).expect("launched engine");
        assert_eq!(logs.engine, "launched");
        assert!(logs.lines.is_empty(), "{:?}", logs.lines);
        let process = logs.process.expect("process");
        assert_eq!(process.state, "starting");
        assert!(process.log_tail.is_empty());
    }

    #[test]
    fn lines_keeps_the_newest() {
        let lines: Vec<String> = (1..=5).map(|n| n.to_string()).collect();
        assert_eq!(newest(lines.clone(), 2), ["4", "5"]);
        assert_eq!(newest(lines.clone(), 0), lines);
        assert_eq!(newest(lines.clone(), 9), lines);
    }
}
