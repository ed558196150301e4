//! `llmops.v1.TelemetryService`: the latest sample, a change-only watch stream, a time-series query over the
//! ring, and rolling request metrics.
use super::watch::{self, WatchStream};
use crate::shutdown::Shutdown;
use crate::telemetry::model::{EngineSample, GpuSample, HostSample, TelemetrySample};
use crate::telemetry::requests::{Percentiles, RouteWindowStats};
use crate::telemetry::Telemetry;
use futures::StreamExt;
use llmops_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Most samples one query returns; a longer range needs `step`.
const MAX_QUERY_SAMPLES: usize = 10_000;

pub struct TelemetryApi {
    telemetry: Arc<Telemetry>,
    shutdown: Shutdown,
}

impl TelemetryApi {
    pub fn new(telemetry: Arc<Telemetry>, shutdown: Shutdown) -> Self {
        Self { telemetry, shutdown }
    }
}

#[tonic::async_trait]
impl pb::telemetry_service_server::TelemetryService for TelemetryApi {
    async fn get_telemetry(
        &self,
        _request: Request<pb::GetTelemetryRequest>,
    ) -> Result<Response<pb::TelemetrySample>, Status> {
        Ok(Response::new(sample_to_proto(&self.telemetry.latest(), self.interval_ms())))
    }

    type WatchTelemetryStream = WatchStream<pb::TelemetryUpdate>;

    async fn watch_telemetry(
        &self,
        _request: Request<pb::WatchTelemetryRequest>,
    ) -> Result<Response<Self::WatchTelemetryStream>, Status> {
        let receiver = self.telemetry.subscribe();
        let mut previous = self.telemetry.latest();
        // The first update is the whole latest sample; each later one only what changed since the previous.
        let opening = futures::stream::once(std::future::ready(Ok(diff(None, &previous))));
        let updates = watch::follow(receiver, self.shutdown.clone(), move |sample| {
            let update = diff(Some(&previous), &sample);
            previous = sample;
            update
        });
        Ok(Response::new(Box::pin(opening.chain(updates))))
    }

    async fn query_telemetry(
        &self,
        request: Request<pb::QueryTelemetryRequest>,
    ) -> Result<Response<pb::QueryTelemetryResponse>, Status> {
        let query = request.into_inner();
        if query.to_unix_ms != 0 && query.to_unix_ms < query.from_unix_ms {
            return Err(Status::invalid_argument(format!(
                "to_unix_ms {} is before from_unix_ms {}",
                query.to_unix_ms, query.from_unix_ms
            )));
        }
        let samples = self.telemetry.range(query.from_unix_ms, query.to_unix_ms, query.step as usize);
        if samples.len() > MAX_QUERY_SAMPLES {
            return Err(Status::invalid_argument(format!(
                "{} samples in that range; at most {MAX_QUERY_SAMPLES} per query (set step to thin them)",
                samples.len()
            )));
        }
        let interval_ms = self.interval_ms();
        Ok(Response::new(pb::QueryTelemetryResponse {
            samples: samples.iter().map(|sample| sample_to_proto(sample, interval_ms)).collect(),
            interval_ms,
        }))
    }

    async fn get_request_metrics(
        &self,
        _request: Request<pb::GetRequestMetricsRequest>,
    ) -> Result<Response<pb::RequestMetrics>, Status> {
        let now = crate::clock::unix_ms();
        let windows = self.telemetry.requests.snapshot(now).iter().map(window_to_proto).collect();
        let scores = self.telemetry.scores.snapshot().iter().map(score_rate_to_proto).collect();
        Ok(Response::new(pb::RequestMetrics { at_unix_ms: now, windows, scores }))
    }
}

fn score_rate_to_proto(stats: &crate::telemetry::scores::ScoreStats) -> pb::ScoreRate {
    pb::ScoreRate {
        route: stats.route.clone(),
        prompt_id: stats.prompt_id.clone(),
        prompt_version: stats.prompt_version.clone(),
        name: stats.name.clone(),
        source: stats.source.to_owned(),
        scores: stats.scores,
        booleans: stats.booleans,
        passed: stats.passed,
        pass_rate: stats.pass_rate(),
        numbers: stats.numbers,
        mean: stats.mean(),
        labels: stats.labels,
    }
}

impl TelemetryApi {
    fn interval_ms(&self) -> i64 {
        self.telemetry.interval.as_millis() as i64
    }
}

/// What changed from `previous` to `now`; everything when there is no previous.
fn diff(previous: Option<&TelemetrySample>, now: &TelemetrySample) -> pb::TelemetryUpdate {
    let changed = |gpu: &&GpuSample| {
        previous.is_none_or(|p| p.gpus.devices.iter().find(|old| old.index == gpu.index) != Some(*gpu))
    };
    let engine_changed = |engine: &&EngineSample| {
        previous.is_none_or(|p| p.engines.iter().find(|old| old.name == engine.name) != Some(*engine))
    };
    let unavailable_changed = previous.is_none_or(|p| p.gpus.unavailable != now.gpus.unavailable);
    pb::TelemetryUpdate {
        at_unix_ms: now.at_unix_ms,
        gpus: now.gpus.devices.iter().filter(changed).map(gpu_to_proto).collect(),
        engines: now.engines.iter().filter(engine_changed).map(engine_to_proto).collect(),
        host: previous.is_none_or(|p| p.host != now.host).then(|| host_to_proto(&now.host)),
        gpu_unavailable: unavailable_changed.then(|| now.gpus.unavailable.clone().unwrap_or_default()),
        missed: 0,
    }
}

pub fn sample_to_proto(sample: &TelemetrySample, interval_ms: i64) -> pb::TelemetrySample {
    pb::TelemetrySample {
        at_unix_ms: sample.at_unix_ms,
        gpu_unavailable: sample.gpus.unavailable.clone().unwrap_or_default(),
        driver_version: sample.gpus.driver_version.clone().unwrap_or_default(),
        gpus: sample.gpus.devices.iter().map(gpu_to_proto).collect(),
        host: Some(host_to_proto(&sample.host)),
        engines: sample.engines.iter().map(engine_to_proto).collect(),
        interval_ms,
    }
}

fn gpu_to_proto(gpu: &GpuSample) -> pb::GpuSample {
    pb::GpuSample {
        index: gpu.index,
        name: gpu.name.clone(),
        uuid: gpu.uuid.clone(),
        memory_total_bytes: gpu.memory_total_bytes,
        memory_used_bytes: gpu.memory_used_bytes,
        utilization_gpu_percent: gpu.utilization_gpu_percent,
        utilization_memory_percent: gpu.utilization_memory_percent,
        power_watts: gpu.power_watts,
        power_limit_watts: gpu.power_limit_watts,
        energy_joules_total: gpu.energy_joules_total,
        temperature_celsius: gpu.temperature_celsius,
        sm_clock_mhz: gpu.sm_clock_mhz,
        memory_clock_mhz: gpu.memory_clock_mhz,
        throttle_reasons: gpu.throttle_reasons.clone().unwrap_or_default(),
        throttle_reported: gpu.throttle_reasons.is_some(),
        processes: gpu
            .processes
            .iter()
            .flatten()
            .map(|p| pb::GpuProcess {
                pid: p.pid,
                used_memory_bytes: p.used_memory_bytes,
                engine: p.engine.clone().unwrap_or_default(),
            })
            .collect(),
        processes_reported: gpu.processes.is_some(),
        error: gpu.error.clone().unwrap_or_default(),
    }
}

fn host_to_proto(host: &HostSample) -> pb::HostSample {
    pb::HostSample {
        hostname: host.hostname.clone(),
        cpu_count: host.cpu_count,
        cpu_percent: host.cpu_percent,
        memory_total_bytes: host.memory_total_bytes,
        memory_used_bytes: host.memory_used_bytes,
        load_1m: host.load_1m,
        load_5m: host.load_5m,
        load_15m: host.load_15m,
        processes: host
            .processes
            .iter()
            .map(|p| pb::ProcessSample {
                name: p.name.clone(),
                pid: p.pid,
                cpu_percent: p.cpu_percent,
                rss_bytes: p.rss_bytes,
            })
            .collect(),
    }
}

fn engine_to_proto(engine: &EngineSample) -> pb::EngineLoadSample {
    pb::EngineLoadSample {
        name: engine.name.clone(),
        running: engine.running,
        waiting: engine.waiting,
        kv_cache_used_fraction: engine.kv_cache_used_fraction,
        error: engine.error.clone().unwrap_or_default(),
        prefix_cache_hit_rate: engine.prefix_cache_hit_rate,
        prefix_cache_queried_tokens: engine.prefix_cache_queried_tokens,
        prefix_cache_hit_tokens: engine.prefix_cache_hit_tokens,
    }
}

fn percentiles_to_proto(p: &Percentiles) -> pb::Percentiles {
    pb::Percentiles { p50: p.p50, p95: p.p95, p99: p.p99 }
}

fn window_to_proto(w: &RouteWindowStats) -> pb::RouteWindow {
    pb::RouteWindow {
        route: w.route.clone(),
        model: w.model.clone(),
        window_seconds: w.window_secs as u32,
        requests: w.requests,
        errors: w.errors,
        requests_per_second: w.request_rate_per_s,
        error_rate: w.error_rate,
        latency_ms: Some(percentiles_to_proto(&w.latency)),
        ttft_ms: Some(percentiles_to_proto(&w.ttft)),
        inter_token_ms: Some(percentiles_to_proto(&w.inter_token)),
        output_tokens_per_second: w.output_tokens_per_s,
        cost_usd: w.cost_usd,
        cost_usd_per_hour: w.cost_usd_per_hour,
        in_flight: w.in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_carry_only_what_changed() {
        let gpu = |index, power| GpuSample { index, power_watts: Some(power), ..GpuSample::default() };
        let mut before = TelemetrySample::default();
        before.gpus.devices = vec![gpu(0, 100.0), gpu(1, 200.0)];
        let first = diff(None, &before);
        assert_eq!(first.gpus.len(), 2);
        assert!(first.host.is_some() && first.gpu_unavailable.is_some());
        let mut after = before.clone();
        after.gpus.devices[1].power_watts = Some(250.0);
        let update = diff(Some(&before), &after);
        assert_eq!(update.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [1]);
        assert!(update.host.is_none() && update.engines.is_empty() && update.gpu_unavailable.is_none());
        // Absent stays absent on the wire (not 0).
        assert_eq!(update.gpus[0].temperature_celsius, None);
    }
}
