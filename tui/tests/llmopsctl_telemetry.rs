//! Runs the real `llmopsctl gpus` / `gpus --watch` / `metrics` against a fake TelemetryService on a Unix
//! socket: text, JSON, and the exit after a "you missed updates" message.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::path::PathBuf;

use llmops_proto::v1::telemetry_service_server::{TelemetryService, TelemetryServiceServer};
use llmops_proto::v1::{
    EngineLoadSample, GetRequestMetricsRequest, GetTelemetryRequest, GpuSample, HostSample, Percentiles,
    QueryTelemetryRequest, QueryTelemetryResponse, RequestMetrics, RouteWindow, TelemetrySample, TelemetryUpdate,
    WatchTelemetryRequest,
};
use serde_json::Value;
use support::{llmopsctl, stdout_text};
use tonic::{Request, Response};

mod support;

const GIB: u64 = 1024 * 1024 * 1024;

fn gpu(index: u32, used_gib: u64, power_watts: f64) -> GpuSample {
    GpuSample {
        index,
        name: "Fake GPU".into(),
        memory_total_bytes: Some(24 * GIB),
        memory_used_bytes: Some(used_gib * GIB),
        utilization_gpu_percent: Some(50),
        utilization_memory_percent: None,
        power_watts: Some(power_watts),
        power_limit_watts: Some(300.0),
        temperature_celsius: Some(55),
        throttle_reported: false,
        ..GpuSample::default()
    }
}

#[derive(Clone, Default)]
struct FakeDaemon;

#[tonic::async_trait]
impl TelemetryService for FakeDaemon {
    async fn get_telemetry(
        &self,
        _request: Request<GetTelemetryRequest>,
    ) -> Result<Response<TelemetrySample>, tonic::Status> {
        Ok(Response::new(TelemetrySample {
            at_unix_ms: 1_717_000_000_000,
            driver_version: "550.1".into(),
            gpus: vec![gpu(0, 6, 120.0)],
            host: Some(HostSample { hostname: "fake-host".into(), cpu_count: 4, ..HostSample::default() }),
            engines: vec![EngineLoadSample { name: "local".into(), running: Some(1), ..EngineLoadSample::default() }],
            ..TelemetrySample::default()
        }))
    }

    type WatchTelemetryStream = tokio_stream::Iter<std::vec::IntoIter<Result<TelemetryUpdate, tonic::Status>>>;

    async fn watch_telemetry(
        &self,
        _request: Request<WatchTelemetryRequest>,
    ) -> Result<Response<Self::WatchTelemetryStream>, tonic::Status> {
        let updates = vec![
            Ok(TelemetryUpdate {
                at_unix_ms: 1_717_000_000_000,
                gpus: vec![gpu(0, 6, 120.0), gpu(1, 1, 30.0)],
                gpu_unavailable: Some(String::new()),
                ..TelemetryUpdate::default()
            }),
            Ok(TelemetryUpdate {
                at_unix_ms: 1_717_000_001_000,
                gpus: vec![gpu(1, 2, 31.0)],
                ..TelemetryUpdate::default()
            }),
            Ok(TelemetryUpdate { missed: 5, ..TelemetryUpdate::default() }),
        ];
        Ok(Response::new(tokio_stream::iter(updates)))
    }

    async fn query_telemetry(
        &self,
        _request: Request<QueryTelemetryRequest>,
    ) -> Result<Response<QueryTelemetryResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by llmopsctl"))
    }

    async fn get_request_metrics(
        &self,
        _request: Request<GetRequestMetricsRequest>,
    ) -> Result<Response<RequestMetrics>, tonic::Status> {
        let window = |seconds: u32| RouteWindow {
            route: "small".into(),
            model: "tiny-1b".into(),
            window_seconds: seconds,
            requests: 10,
            errors: 1,
            requests_per_second: 0.5,
            error_rate: 0.1,
            latency_ms: Some(Percentiles { p50: Some(100.0), p95: Some(200.0), p99: None }),
            ..RouteWindow::default()
        };
        Ok(Response::new(RequestMetrics {
            at_unix_ms: 1_717_000_000_000,
            windows: vec![window(60), window(300)],
            ..RequestMetrics::default()
        }))
    }
}

async fn start_fake(name: &str) -> PathBuf {
    support::serve(&format!("telemetry-{name}"), |server| server.add_service(TelemetryServiceServer::new(FakeDaemon)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_and_metrics_as_text_and_json() {
    let socket = start_fake("once").await;

    let text = stdout_text(&llmopsctl(&socket, &["gpus"]).await);
    assert!(text.starts_with("driver            550.1\n"), "{text}");
    assert!(text.contains("  0  Fake GPU  6.0/24.0 GiB  50%/-  120/300 W   55C       -  -\n"), "{text}");
    assert!(text.contains("hostname          fake-host\n"), "{text}");
    assert!(text.contains("local        1        -     -         -\n"), "{text}");

    let json: Value =
        serde_json::from_str(&stdout_text(&llmopsctl(&socket, &["gpus", "--json"]).await)).expect("stdout is JSON");
    assert_eq!(json["driver_version"], "550.1");
    assert_eq!(json["gpus"][0]["memory_used_bytes"], 6 * GIB);
    assert_eq!(json["gpus"][0]["utilization_memory_percent"], Value::Null);
    assert_eq!(json["engines"][0]["waiting"], Value::Null);

    let text = stdout_text(&llmopsctl(&socket, &["metrics"]).await);
    assert!(text.contains("\nLAST 1m\nROUTE"), "{text}");
    assert!(text.contains("small  tiny-1b   0.50  10.0      100      200        -"), "{text}");
    assert!(text.contains("\nLAST 1h\n"), "{text}");

    let json: Value =
        serde_json::from_str(&stdout_text(&llmopsctl(&socket, &["metrics", "--json"]).await)).expect("stdout is JSON");
    assert_eq!(json["windows"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["windows"][1]["window_seconds"], 300);
    assert_eq!(json["windows"][0]["latency_ms"]["p99"], Value::Null);
    assert_eq!(json["windows"][0]["ttft_ms"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_changes_then_exits_1_when_too_slow() {
    let socket = start_fake("watch").await;

    let watch = llmopsctl(&socket, &["gpus", "--watch"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&watch.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header, two GPUs, then the one that changed: {stdout}");
    assert!(lines[0].starts_with("TIME      IDX"), "{stdout}");
    assert!(lines[3].ends_with("    1      50%/-   2.0/24.0 GiB   31/300 W   55C"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&watch.stderr),
        "llmopsctl: watch stream ended by llmopsd: this viewer read too slowly and missed 5 updates\n"
    );

    let watch = llmopsctl(&socket, &["gpus", "--watch", "--json"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["gpus"].as_array().map(Vec::len), Some(2));
    assert_eq!(lines[1]["gpu_unavailable"], Value::Null);
    assert_eq!(lines[2]["missed"], 5);
}
