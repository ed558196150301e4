//! `llmops.v1.StatusService`: what the daemon is, what it serves and how its store is doing.
use crate::engine::{Engines, Health};
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
}

fn health_to_proto(health: Health) -> pb::EngineHealth {
    match health {
        Health::Unknown => pb::EngineHealth::Unknown,
        Health::Healthy => pb::EngineHealth::Healthy,
        Health::Unhealthy => pb::EngineHealth::Unhealthy,
    }
}

#[tonic::async_trait]
impl pb::status_service_server::StatusService for StatusApi {
    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Result<Response<pb::Status>, Status> {
        let (path, size_bytes, trace_count) = super::traces::with_store(&self.store, |store| {
            Ok((store.path().display().to_string(), store.size_bytes(), store.count()?))
        })
        .await?;
        let stats = self.recorder.stats();
        let engines = self
            .engines
            .iter()
            .map(|engine| {
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
                    process: engine.process().map(|process| pb::EngineProcess {
                        state: process.phase.as_str().into(),
                        restarts: process.restarts,
                        pid: process.pid.unwrap_or(0),
                        last_exit: process.last_exit,
                        log_tail: engine.log_tail(),
                    }),
                    health: health_to_proto(health.health) as i32,
                    last_error: health.last_error,
                    last_checked_unix_ms: health.last_checked_unix_ms,
                }
            })
            .collect();
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
        }))
    }
}
