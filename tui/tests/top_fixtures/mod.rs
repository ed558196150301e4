//! Hand-written daemon data for the `llmops-top` snapshots: a host with two GPUs, three routes, two budgets,
//! alerts in each state, twenty traces, a full trace with a fallback, and replays playing and done.
// Alerts as an llmopsd from before the alert enums sends them (strings only): the console must still show them.
#![allow(deprecated)]
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use llmops_proto::v1 as pb;
use llmops_tui::top::state::{App, GpuHistory, Host, Link, Look, TraceTail};

mod traces;

pub use traces::*;

pub const NOW: i64 = 1_717_000_000_000; // 2024-05-29 16:26:40 UTC
const GIB: u64 = 1 << 30;

pub fn status() -> pb::Status {
    pb::Status {
        version: "0.4.0".into(),
        started_at_unix_ms: NOW - 7_384_000,
        uptime_seconds: 7384.9,
        http_listen: "127.0.0.1:8080".into(),
        grpc_listen: "127.0.0.1:7070".into(),
        privacy_mode: false,
        requests_in_flight: 2,
        engine_build: None,
        otlp_export: None,
        engines: vec![
            pb::EngineStatus {
                name: "llama-local".into(),
                kind: "embedded".into(),
                health: pb::EngineHealth::Healthy as i32,
                process: Some(pb::EngineProcess {
                    state: "healthy".into(),
                    restarts: 1,
                    pid: 4242,
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::EngineStatus {
                name: "vllm-a".into(),
                kind: "openai".into(),
                health: pb::EngineHealth::Healthy as i32,
                running: Some(3),
                waiting: Some(1),
                kv_cache_used_fraction: Some(0.42),
                prefix_cache_hit_rate: Some(0.61),
                ..Default::default()
            },
            pb::EngineStatus {
                name: "vllm-b".into(),
                kind: "openai".into(),
                health: pb::EngineHealth::Unhealthy as i32,
                last_error: "connect: connection refused".into(),
                process: Some(pb::EngineProcess { state: "restarting".into(), restarts: 3, ..Default::default() }),
                ..Default::default()
            },
        ],
        routes: vec![],
        store: None,
    }
}

pub fn gpu(index: u32, util: u32, used_gib: f64, power: f64, temp: u32, throttle: &[&str]) -> pb::GpuSample {
    pb::GpuSample {
        index,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: format!("GPU-{index}"),
        memory_total_bytes: Some(80 * GIB),
        memory_used_bytes: Some((used_gib * GIB as f64) as u64),
        utilization_gpu_percent: Some(util),
        power_watts: Some(power),
        power_limit_watts: Some(350.0),
        temperature_celsius: Some(temp),
        throttle_reasons: throttle.iter().map(|s| s.to_string()).collect(),
        throttle_reported: true,
        ..Default::default()
    }
}

pub fn telemetry() -> pb::TelemetrySample {
    pb::TelemetrySample {
        at_unix_ms: NOW,
        driver_version: "550.54".into(),
        gpus: vec![gpu(0, 57, 41.2, 250.0, 67, &[]), gpu(1, 91, 78.0, 331.0, 83, &["sw_power_cap"])],
        host: Some(pb::HostSample {
            hostname: "gpu-box-1".into(),
            cpu_count: 32,
            cpu_percent: 23.5,
            memory_total_bytes: 256 * GIB,
            memory_used_bytes: 48 * GIB,
            load_1m: 4.2,
            load_5m: 3.9,
            load_15m: 3.1,
            processes: vec![],
        }),
        interval_ms: 1000,
        ..Default::default()
    }
}

/// A deterministic wave per GPU, so sparklines have shape.
pub fn gpu_history(phase: u64) -> GpuHistory {
    let wave = |i: u64, base: u64| base + (i * 7 + phase * 13) % 40;
    GpuHistory {
        utilization_percent: (0..300).map(|i| wave(i, 40)).collect::<VecDeque<_>>(),
        memory_used_percent: (0..300).map(|i| 50 + (i / 10 + phase) % 45).collect(),
        power_watts: VecDeque::new(),
        temperature_celsius: VecDeque::new(),
    }
}

fn window(route: &str, model: &str, seconds: u32, requests: u64, errors: u64, p: [f64; 5]) -> pb::RouteWindow {
    pb::RouteWindow {
        route: route.into(),
        model: model.into(),
        window_seconds: seconds,
        requests,
        errors,
        requests_per_second: requests as f64 / f64::from(seconds),
        error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
        latency_ms: Some(pb::Percentiles { p50: Some(p[0]), p95: Some(p[1]), p99: Some(p[2]) }),
        ttft_ms: Some(pb::Percentiles { p50: Some(p[3]), p95: Some(p[4]), p99: None }),
        // A cent per ten requests: $/h follows the request rate.
        cost_usd: requests as f64 * 0.001,
        cost_usd_per_hour: requests as f64 * 0.001 / f64::from(seconds) * 3600.0,
        ..Default::default()
    }
}

pub fn metrics() -> pb::RequestMetrics {
    pb::RequestMetrics {
        at_unix_ms: NOW,
        windows: vec![
            window("chat", "llama-3-8b", 60, 312, 4, [820.0, 2100.0, 3900.0, 95.0, 240.0]),
            window("code", "qwen2.5-coder", 60, 48, 0, [1450.0, 3800.0, 5200.0, 180.0, 410.0]),
            window("embed", "bge-m3", 60, 900, 12, [12.0, 30.0, 55.0, 0.0, 0.0]),
            // Other windows must not show in the last-minute table.
            window("chat", "llama-3-8b", 300, 1500, 30, [800.0, 2000.0, 3000.0, 90.0, 230.0]),
            window("chat", "llama-3-8b", 3600, 9000, 90, [800.0, 2000.0, 3000.0, 90.0, 230.0]),
        ],
        ..pb::RequestMetrics::default()
    }
}

pub fn budgets() -> Vec<pb::Budget> {
    vec![
        pb::Budget {
            name: "daily-spend".into(),
            scope: "global".into(),
            window: "day".into(),
            limit_kind: "usd".into(),
            limit: 50.0,
            action: "reject".into(),
            used: 12.34,
            remaining: 37.66,
            burn_rate_per_hour: 0.75,
            projected_exhaustion_unix_ms: Some(NOW + 3 * 3_600_000 + 12 * 60_000),
            resets_at_unix_ms: NOW + 27_200_000,
            used_usd: 12.34,
            ..Default::default()
        },
        pb::Budget {
            name: "acme-tokens".into(),
            scope: "tenant:acme".into(),
            window: "hour".into(),
            limit_kind: "tokens".into(),
            limit: 100_000.0,
            action: "downgrade".into(),
            used: 12_345.0,
            remaining: 87_655.0,
            burn_rate_per_hour: 26_453.6,
            projected_exhaustion_unix_ms: None,
            ..Default::default()
        },
    ]
}

pub fn alerts() -> Vec<pb::Alert> {
    let drift = pb::Alert {
        id: "0190b5a8-7c1e-7d3a-9f00-00000000a1e7".into(),
        key: "drift:chat:output_tokens".into(),
        rule: "drift".into(),
        severity: "critical".into(),
        state: "firing".into(),
        title: "chat: output length drifted".into(),
        message: "output tokens per request moved away from last week's".into(),
        evidence: Some(pb::Evidence {
            statistic: "ks_p_value".into(),
            value: 0.0012,
            threshold: 0.05,
            reference: HashMap::from([("mean".into(), 212.0), ("p95".into(), 480.0)]),
            current: HashMap::from([("mean".into(), 341.5), ("p95".into(), 910.0)]),
            reference_n: 5000,
            current_n: 420,
            detail: "two-sample Kolmogorov-Smirnov on output_tokens".into(),
        }),
        started_at_unix_ms: NOW - 754_000,
        updated_at_unix_ms: NOW - 60_000,
        occurrences: 3,
        labels: HashMap::from([("route".into(), "chat".into())]),
        deliveries: vec![pb::Delivery {
            url: "https://hooks.example.com/llmops".into(),
            status: "delivered".into(),
            attempts: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    let gpu = pb::Alert {
        id: "0190b5a8-7c1e-7d3a-9f00-00000000c0c0".into(),
        key: "gpu:1:temperature".into(),
        rule: "gpu".into(),
        severity: "warning".into(),
        state: "firing".into(),
        title: "GPU 1 temperature 83C above 80C".into(),
        evidence: Some(pb::Evidence {
            statistic: "temperature_celsius".into(),
            value: 83.0,
            threshold: 80.0,
            ..Default::default()
        }),
        started_at_unix_ms: NOW - 120_000,
        updated_at_unix_ms: NOW - 5_000,
        occurrences: 1,
        ..Default::default()
    };
    let budget = pb::Alert {
        id: "0190b5a8-7c1e-7d3a-9f00-00000000b0d9".into(),
        rule: "budget".into(),
        severity: "warning".into(),
        state: "acknowledged".into(),
        title: "daily-spend at 80%".into(),
        started_at_unix_ms: NOW - 7_200_000,
        acknowledged_at_unix_ms: Some(NOW - 3_600_000),
        acknowledged_by: "alice".into(),
        occurrences: 2,
        ..Default::default()
    };
    let latency = pb::Alert {
        id: "0190b5a8-7c1e-7d3a-9f00-00000000d00d".into(),
        rule: "latency_slo".into(),
        severity: "info".into(),
        state: "resolved".into(),
        title: "code p95 latency over 5 s".into(),
        started_at_unix_ms: NOW - 86_400_000,
        resolved_at_unix_ms: Some(NOW - 80_000_000),
        occurrences: 7,
        ..Default::default()
    };
    vec![drift, gpu, budget, latency]
}

pub fn host(address: &str) -> Host {
    let mut tail = TraceTail { finished: traces(), in_flight: vec![in_flight()], missed: 0 };
    tail.finished.push_front(full_trace());
    Host {
        address: address.into(),
        link: Link::Up,
        status: Some(status()),
        telemetry: Some(telemetry()),
        gpu_history: BTreeMap::from([(0, gpu_history(0)), (1, gpu_history(3))]),
        metrics: Some(metrics()),
        budgets: Some(budgets()),
        alerts: alerts(),
        traces: tail,
        engine_logs: Some(pb::EngineLogs {
            engine: "llama-local".into(),
            lines: (1..=30).map(|i| format!("INFO 05-29 16:25:{i:02} engine step {i}: 3 running, 1 waiting")).collect(),
            process: None,
        }),
        unavailable: BTreeMap::new(),
    }
}

pub fn app() -> App {
    let mut app = App::new(&["127.0.0.1:7070".to_owned()], Look::default());
    app.hosts[0] = host("127.0.0.1:7070");
    app.now_unix_ms = NOW;
    app
}

/// A host that connected and has received nothing yet.
pub fn empty_app() -> App {
    let mut app = App::new(&["127.0.0.1:7070".to_owned()], Look::default());
    app.hosts[0].link = Link::Up;
    app.now_unix_ms = NOW;
    app
}

pub fn down(attempt: u32) -> Link {
    Link::Down { error: "transport error: connection refused".into(), attempt, retry_in: Duration::from_secs(8) }
}
