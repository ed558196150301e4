//! GPU, host, engine and trace-store gauges for `/metrics`, from the latest telemetry sample. A value the
//! GPU or engine does not report is left out, never exported as 0.
use super::prometheus::{render_requests, MetricKind, MetricWriter};
use crate::engine::Engines;
use crate::telemetry::model::{GpuSample, TelemetrySample};
use crate::telemetry::Telemetry;
use crate::trace::Recorder;
use std::sync::atomic::Ordering;

/// The whole exposition: request metrics, then telemetry gauges, then the trace store.
pub fn render_all(telemetry: &Telemetry, recorder: &Recorder, engines: &Engines) -> String {
    let mut w = MetricWriter::new();
    render_requests(&mut w, &telemetry.requests.cumulative(), &telemetry.requests.in_flight());
    let sample = telemetry.latest();
    render_gpus(&mut w, &sample);
    render_host(&mut w, &sample);
    render_engines(&mut w, &sample, engines);
    render_store(&mut w, recorder);
    render_scores(&mut w, &telemetry.scores.snapshot());
    w.finish()
}

/// Feedback scores per route, prompt, score name and source (bounded: see `telemetry::scores`). A pass rate
/// is `rate(llmops_score_passed_total)` over `rate(llmops_scores_total{kind="boolean"})`, a mean
/// `llmops_score_value_sum / llmops_score_value_count`.
fn render_scores(w: &mut MetricWriter, scores: &[crate::telemetry::scores::ScoreStats]) {
    let (total, passed, value) = ("llmops_scores_total", "llmops_score_passed_total", "llmops_score_value");
    w.family(total, "Feedback scores stored, by kind (number, boolean, label).", MetricKind::Counter);
    w.family(passed, "Pass/fail feedback scores that passed.", MetricKind::Counter);
    w.family(value, "Numeric feedback scores: their sum and count.", MetricKind::Summary);
    for stats in scores {
        let labels = [
            ("route", stats.route.as_str()),
            ("prompt_id", stats.prompt_id.as_str()),
            ("prompt_version", stats.prompt_version.as_str()),
            ("name", stats.name.as_str()),
            ("source", stats.source),
        ];
        for (kind, count) in [("number", stats.numbers), ("boolean", stats.booleans), ("label", stats.labels)] {
            if count > 0 {
                let mut with_kind = labels.to_vec();
                with_kind.push(("kind", kind));
                w.sample(total, &with_kind, count as f64);
            }
        }
        if stats.booleans > 0 {
            w.sample(passed, &labels, stats.passed as f64);
        }
        if stats.numbers > 0 {
            w.sample(&format!("{value}_sum"), &labels, stats.number_sum);
            w.sample(&format!("{value}_count"), &labels, stats.numbers as f64);
        }
    }
}

type GpuGauge = (&'static str, &'static str, fn(&GpuSample) -> Option<f64>);

const GPU_GAUGES: [GpuGauge; 11] = [
    ("llmops_gpu_memory_total_bytes", "GPU memory in total.", |g| g.memory_total_bytes.map(|v| v as f64)),
    ("llmops_gpu_memory_used_bytes", "GPU memory in use.", |g| g.memory_used_bytes.map(|v| v as f64)),
    ("llmops_gpu_utilization_ratio", "Share of time a kernel ran on the GPU (0-1).", |g| {
        g.utilization_gpu_percent.map(|v| f64::from(v) / 100.0)
    }),
    ("llmops_gpu_memory_utilization_ratio", "Share of time GPU memory was read or written (0-1).", |g| {
        g.utilization_memory_percent.map(|v| f64::from(v) / 100.0)
    }),
    ("llmops_gpu_power_watts", "GPU power draw.", |g| g.power_watts),
    ("llmops_gpu_power_limit_watts", "GPU enforced power limit.", |g| g.power_limit_watts),
    ("llmops_gpu_temperature_celsius", "GPU core temperature.", |g| g.temperature_celsius.map(f64::from)),
    ("llmops_gpu_sm_clock_hertz", "GPU SM clock.", |g| g.sm_clock_mhz.map(|v| f64::from(v) * 1e6)),
    ("llmops_gpu_memory_clock_hertz", "GPU memory clock.", |g| g.memory_clock_mhz.map(|v| f64::from(v) * 1e6)),
    ("llmops_gpu_throttled", "1 when any clock throttle reason is active.", |g| {
        g.throttle_reasons.as_ref().map(|reasons| f64::from(u8::from(!reasons.is_empty())))
    }),
    ("llmops_gpu_up", "1 when the GPU could be read at the last sample, 0 when it failed (e.g. lost).", |g| {
        Some(f64::from(u8::from(g.error.is_none())))
    }),
];

fn render_gpus(w: &mut MetricWriter, sample: &TelemetrySample) {
    w.family("llmops_gpu_available", "1 when NVML could be loaded and GPUs read.", MetricKind::Gauge);
    w.sample("llmops_gpu_available", &[], f64::from(u8::from(sample.gpus.unavailable.is_none())));
    for (name, help, value) in GPU_GAUGES {
        w.family(name, help, MetricKind::Gauge);
        for gpu in &sample.gpus.devices {
            if let Some(value) = value(gpu) {
                let index = gpu.index.to_string();
                w.sample(name, &[("gpu", &index), ("uuid", &gpu.uuid), ("name", &gpu.name)], value);
            }
        }
    }
    // A counter in NVML's sense (only resets with the driver), exported as one.
    let energy = "llmops_gpu_energy_joules_total";
    w.family(energy, "GPU energy used since the driver loaded.", MetricKind::Counter);
    let throttle = "llmops_gpu_throttle_reason";
    w.family(throttle, "Active clock throttle reasons (1 per active reason).", MetricKind::Gauge);
    let process_memory = "llmops_gpu_process_memory_bytes";
    w.family(process_memory, "GPU memory used by a compute process.", MetricKind::Gauge);
    for gpu in &sample.gpus.devices {
        let index = gpu.index.to_string();
        if let Some(joules) = gpu.energy_joules_total {
            w.sample(energy, &[("gpu", &index), ("uuid", &gpu.uuid)], joules);
        }
        for reason in gpu.throttle_reasons.iter().flatten() {
            w.sample(throttle, &[("gpu", &index), ("reason", reason)], 1.0);
        }
        for process in gpu.processes.iter().flatten() {
            let Some(bytes) = process.used_memory_bytes else { continue };
            let pid = process.pid.to_string();
            let engine = process.engine.as_deref().unwrap_or("");
            w.sample(process_memory, &[("gpu", &index), ("pid", &pid), ("engine", engine)], bytes as f64);
        }
    }
}

fn render_host(w: &mut MetricWriter, sample: &TelemetrySample) {
    let host = &sample.host;
    let gauges: [(&str, &str, f64); 6] = [
        ("llmops_host_cpu_utilization_ratio", "Busy share of all CPU cores (0-1).", host.cpu_percent / 100.0),
        ("llmops_host_logical_cpus", "CPU cores (logical).", f64::from(host.cpu_count)),
        ("llmops_host_memory_total_bytes", "Host memory in total.", host.memory_total_bytes as f64),
        ("llmops_host_memory_used_bytes", "Host memory in use.", host.memory_used_bytes as f64),
        ("llmops_host_load1", "Load average over 1 minute.", host.load_1m),
        ("llmops_host_load5", "Load average over 5 minutes.", host.load_5m),
    ];
    // Before the first sample there is nothing true to say about the host.
    if sample.at_unix_ms == 0 {
        return;
    }
    for (name, help, value) in gauges {
        w.family(name, help, MetricKind::Gauge);
        w.sample(name, &[], value);
    }
    let (cpu, rss) = ("llmops_process_cpu_utilization_ratio", "llmops_process_resident_memory_bytes");
    w.family(cpu, "CPU use of the daemon and each launched engine, in cores (1 = one busy core).", MetricKind::Gauge);
    w.family(rss, "Resident memory of the daemon and each launched engine.", MetricKind::Gauge);
    for process in &host.processes {
        let pid = process.pid.to_string();
        let labels = [("process", process.name.as_str()), ("pid", pid.as_str())];
        w.sample(cpu, &labels, process.cpu_percent / 100.0);
        w.sample(rss, &labels, process.rss_bytes as f64);
    }
}

fn render_engines(w: &mut MetricWriter, sample: &TelemetrySample, engines: &Engines) {
    let (running, waiting, kv, prefix, up) = (
        "llmops_engine_requests_running",
        "llmops_engine_requests_waiting",
        "llmops_engine_kv_cache_used_ratio",
        "llmops_engine_prefix_cache_hit_ratio",
        "llmops_engine_up",
    );
    w.family(up, "1 when the engine's last health check or request succeeded.", MetricKind::Gauge);
    for engine in engines.iter() {
        let healthy = engine.health().health == crate::engine::Health::Healthy;
        w.sample(up, &[("engine", engine.name()), ("kind", engine.kind())], f64::from(u8::from(healthy)));
    }
    w.family(running, "Requests the engine is generating for now.", MetricKind::Gauge);
    w.family(waiting, "Requests queued at the engine.", MetricKind::Gauge);
    w.family(kv, "Share of the engine's KV cache in use (0-1).", MetricKind::Gauge);
    let prefix_help = "Share of prompt tokens the engine served from its prefix cache since the previous sample (0-1).";
    w.family(prefix, prefix_help, MetricKind::Gauge);
    for engine in &sample.engines {
        let labels = [("engine", engine.name.as_str())];
        for (name, value) in [
            (running, engine.running.map(|v| v as f64)),
            (waiting, engine.waiting.map(|v| v as f64)),
            (kv, engine.kv_cache_used_fraction),
            (prefix, engine.prefix_cache_hit_rate),
        ] {
            if let Some(value) = value {
                w.sample(name, &labels, value);
            }
        }
    }
}

fn render_store(w: &mut MetricWriter, recorder: &Recorder) {
    let stats = recorder.stats();
    let counters = [
        ("llmops_traces_written_total", "Traces written to the store.", &stats.written),
        ("llmops_traces_dropped_total", "Traces lost because the write queue was full.", &stats.dropped),
        ("llmops_trace_write_errors_total", "Failed trace write batches.", &stats.write_errors),
    ];
    for (name, help, value) in counters {
        w.family(name, help, MetricKind::Counter);
        w.sample(name, &[], value.load(Ordering::Relaxed) as f64);
    }
    let queued = "llmops_trace_queue_depth";
    w.family(queued, "Traces waiting to be written.", MetricKind::Gauge);
    w.sample(queued, &[], stats.queued.load(Ordering::Relaxed) as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::model::EngineSample;

    #[test]
    fn prefix_cache_hit_ratio_is_exported_only_where_known() {
        let sample = TelemetrySample {
            at_unix_ms: 1,
            engines: vec![
                EngineSample { name: "vllm".into(), prefix_cache_hit_rate: Some(0.75), ..EngineSample::default() },
                EngineSample { name: "llama".into(), kv_cache_used_fraction: Some(0.5), ..EngineSample::default() },
            ],
            ..TelemetrySample::default()
        };
        let mut w = MetricWriter::new();
        render_engines(&mut w, &sample, &Engines::default());
        let text = w.finish();
        assert!(text.contains("# TYPE llmops_engine_prefix_cache_hit_ratio gauge\n"), "{text}");
        assert!(text.lines().any(|l| l == "llmops_engine_prefix_cache_hit_ratio{engine=\"vllm\"} 0.75"), "{text}");
        assert!(!text.contains("llmops_engine_prefix_cache_hit_ratio{engine=\"llama\"}"), "absent, not 0: {text}");
    }
}
