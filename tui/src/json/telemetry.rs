//! `--json` for `gpus` and `metrics`, in the same shapes as the rest of `json`: proto field names, absent
//! optional fields as `null`.
use llmops_proto::v1::{
    EngineLoadSample, GpuProcess, GpuSample, HostSample, Percentiles, ProcessSample, RequestMetrics, RouteWindow,
    TelemetrySample, TelemetryUpdate,
};
use serde_json::{json, Value};

pub fn telemetry_to_json(sample: &TelemetrySample) -> Value {
    json!({
        "at_unix_ms": sample.at_unix_ms,
        "gpu_unavailable": sample.gpu_unavailable,
        "driver_version": sample.driver_version,
        "gpus": sample.gpus.iter().map(gpu_to_json).collect::<Vec<_>>(),
        "host": sample.host.as_ref().map(host_to_json),
        "engines": sample.engines.iter().map(engine_load_to_json).collect::<Vec<_>>(),
        "interval_ms": sample.interval_ms,
    })
}

/// One `gpus --watch --json` line: what changed, `null` for what did not.
pub fn telemetry_update_to_json(update: &TelemetryUpdate) -> Value {
    json!({
        "at_unix_ms": update.at_unix_ms,
        "gpus": update.gpus.iter().map(gpu_to_json).collect::<Vec<_>>(),
        "engines": update.engines.iter().map(engine_load_to_json).collect::<Vec<_>>(),
        "host": update.host.as_ref().map(host_to_json),
        "gpu_unavailable": update.gpu_unavailable,
        "missed": update.missed,
    })
}

fn gpu_to_json(gpu: &GpuSample) -> Value {
    json!({
        "index": gpu.index,
        "name": gpu.name,
        "uuid": gpu.uuid,
        "memory_total_bytes": gpu.memory_total_bytes,
        "memory_used_bytes": gpu.memory_used_bytes,
        "utilization_gpu_percent": gpu.utilization_gpu_percent,
        "utilization_memory_percent": gpu.utilization_memory_percent,
        "power_watts": gpu.power_watts,
        "power_limit_watts": gpu.power_limit_watts,
        "energy_joules_total": gpu.energy_joules_total,
        "temperature_celsius": gpu.temperature_celsius,
        "sm_clock_mhz": gpu.sm_clock_mhz,
        "memory_clock_mhz": gpu.memory_clock_mhz,
        "throttle_reasons": gpu.throttle_reasons,
        "throttle_reported": gpu.throttle_reported,
        "processes": gpu.processes.iter().map(gpu_process_to_json).collect::<Vec<_>>(),
        "processes_reported": gpu.processes_reported,
        "error": gpu.error,
    })
}

fn gpu_process_to_json(process: &GpuProcess) -> Value {
    json!({ "pid": process.pid, "used_memory_bytes": process.used_memory_bytes, "engine": process.engine })
}

fn host_to_json(host: &HostSample) -> Value {
    json!({
        "hostname": host.hostname,
        "cpu_count": host.cpu_count,
        "cpu_percent": host.cpu_percent,
        "memory_total_bytes": host.memory_total_bytes,
        "memory_used_bytes": host.memory_used_bytes,
        "load_1m": host.load_1m,
        "load_5m": host.load_5m,
        "load_15m": host.load_15m,
        "processes": host.processes.iter().map(process_to_json).collect::<Vec<_>>(),
    })
}

fn process_to_json(process: &ProcessSample) -> Value {
    json!({
        "name": process.name,
        "pid": process.pid,
        "cpu_percent": process.cpu_percent,
        "rss_bytes": process.rss_bytes,
    })
}

fn engine_load_to_json(engine: &EngineLoadSample) -> Value {
    json!({
        "name": engine.name,
        "running": engine.running,
        "waiting": engine.waiting,
        "kv_cache_used_fraction": engine.kv_cache_used_fraction,
        "prefix_cache_hit_rate": engine.prefix_cache_hit_rate,
        "prefix_cache_queried_tokens": engine.prefix_cache_queried_tokens,
        "prefix_cache_hit_tokens": engine.prefix_cache_hit_tokens,
        "error": engine.error,
    })
}

pub fn request_metrics_to_json(metrics: &RequestMetrics) -> Value {
    json!({
        "at_unix_ms": metrics.at_unix_ms,
        "windows": metrics.windows.iter().map(route_window_to_json).collect::<Vec<_>>(),
        "scores": metrics.scores.iter().map(super::score_rate_to_json).collect::<Vec<_>>(),
    })
}

fn route_window_to_json(window: &RouteWindow) -> Value {
    json!({
        "route": window.route,
        "model": window.model,
        "window_seconds": window.window_seconds,
        "requests": window.requests,
        "errors": window.errors,
        "requests_per_second": window.requests_per_second,
        "error_rate": window.error_rate,
        "latency_ms": window.latency_ms.as_ref().map(percentiles_to_json),
        "ttft_ms": window.ttft_ms.as_ref().map(percentiles_to_json),
        "inter_token_ms": window.inter_token_ms.as_ref().map(percentiles_to_json),
        "output_tokens_per_second": window.output_tokens_per_second,
        "cost_usd": window.cost_usd,
        "cost_usd_per_hour": window.cost_usd_per_hour,
        "in_flight": window.in_flight,
    })
}

fn percentiles_to_json(percentiles: &Percentiles) -> Value {
    json!({ "p50": percentiles.p50, "p95": percentiles.p95, "p99": percentiles.p99 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn telemetry_keeps_absent_gpu_fields_null() {
        let sample = TelemetrySample {
            at_unix_ms: 5,
            driver_version: "550.54.15".into(),
            gpus: vec![GpuSample {
                index: 1,
                memory_total_bytes: Some(80 << 30),
                temperature_celsius: Some(61),
                throttle_reported: true,
                processes: vec![GpuProcess { pid: 7, used_memory_bytes: None, engine: String::new() }],
                ..GpuSample::default()
            }],
            engines: vec![EngineLoadSample { name: "vllm".into(), running: Some(2), ..EngineLoadSample::default() }],
            ..TelemetrySample::default()
        };
        let value = telemetry_to_json(&sample);
        let gpu = &value["gpus"][0];
        assert_eq!(gpu["memory_total_bytes"], 80_u64 << 30);
        assert!(gpu["memory_total_bytes"].is_u64(), "byte counts are integers");
        assert_eq!(gpu["temperature_celsius"], 61);
        for absent in ["memory_used_bytes", "utilization_gpu_percent", "power_watts", "sm_clock_mhz"] {
            assert!(gpu[absent].is_null(), "{absent} is null, not 0: {gpu}");
        }
        assert_eq!(gpu["throttle_reasons"], json!([]));
        assert_eq!(gpu["throttle_reported"], true);
        assert_eq!(gpu["processes"], json!([{"pid": 7, "used_memory_bytes": null, "engine": ""}]));
        assert_eq!(
            value["engines"][0],
            json!({"name": "vllm", "running": 2, "waiting": null,
            "kv_cache_used_fraction": null, "prefix_cache_hit_rate": null, "prefix_cache_queried_tokens": null,
            "prefix_cache_hit_tokens": null, "error": ""})
        );
        assert_eq!(value["host"], Value::Null);
        assert_eq!(value["gpu_unavailable"], "");
        assert_eq!(keys(gpu).len(), 18, "every GpuSample field: {gpu}");
        assert_eq!(
            keys(&value),
            ["at_unix_ms", "driver_version", "engines", "gpu_unavailable", "gpus", "host", "interval_ms"]
        );
    }

    #[test]
    fn host_and_update_convert() {
        let host = HostSample {
            hostname: "box".into(),
            cpu_count: 8,
            processes: vec![ProcessSample { name: "llmopsd".into(), pid: 1, cpu_percent: 150.0, rss_bytes: 1024 }],
            ..HostSample::default()
        };
        let update = TelemetryUpdate { at_unix_ms: 9, host: Some(host), missed: 3, ..TelemetryUpdate::default() };
        let value = telemetry_update_to_json(&update);
        assert_eq!(value["host"]["cpu_count"], 8);
        assert_eq!(value["host"]["processes"][0]["rss_bytes"], 1024);
        assert_eq!(value["gpu_unavailable"], Value::Null, "unchanged is null");
        assert_eq!(value["missed"], 3);
        let changed = TelemetryUpdate { gpu_unavailable: Some("driver gone".into()), ..TelemetryUpdate::default() };
        assert_eq!(telemetry_update_to_json(&changed)["gpu_unavailable"], "driver gone");
    }

    #[test]
    fn request_metrics_keep_absent_percentiles_null() {
        let metrics = RequestMetrics {
            at_unix_ms: 1,
            windows: vec![RouteWindow {
                route: "small".into(),
                window_seconds: 60,
                requests: 10,
                errors: 1,
                error_rate: 0.1,
                latency_ms: Some(Percentiles { p50: Some(12.5), p95: None, p99: None }),
                ttft_ms: None,
                ..RouteWindow::default()
            }],
            ..RequestMetrics::default()
        };
        let value = request_metrics_to_json(&metrics);
        let window = &value["windows"][0];
        assert_eq!(window["window_seconds"], 60);
        assert_eq!(window["requests"], 10);
        assert_eq!(window["error_rate"], 0.1);
        assert_eq!(window["latency_ms"], json!({"p50": 12.5, "p95": null, "p99": null}));
        assert_eq!(window["ttft_ms"], Value::Null);
        assert_eq!(window["inter_token_ms"], Value::Null);
        assert_eq!(keys(window).len(), 14, "every RouteWindow field: {window}");
    }
}
