//! The host rules against a real alert manager, with samples, engine states and time made up by the test.
use super::*;
use crate::alerts::{Alert, AlertFilter, AlertState};
use crate::telemetry::model::GpuReport;
use crate::telemetry::requests::Percentiles;

fn setup(config: AlertsConfig) -> (tempfile::TempDir, HostRules, AlertManager) {
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("open");
    (dir, HostRules::new(config, alerts.clone()), alerts)
}

fn by_key(alerts: &AlertManager, key: &str) -> Option<Alert> {
    alerts.list(AlertFilter::default()).expect("list").into_iter().find(|a| a.key == key)
}

fn gpu(temperature: u32, used_gb: u64, throttle: &[&str]) -> TelemetrySample {
    let device = GpuSample {
        index: 0,
        name: "NVIDIA L4".into(),
        uuid: "GPU-a".into(),
        memory_total_bytes: Some(24_000_000_000),
        memory_used_bytes: Some(used_gb * 1_000_000_000),
        temperature_celsius: Some(temperature),
        throttle_reasons: Some(throttle.iter().map(|r| r.to_string()).collect()),
        ..GpuSample::default()
    };
    TelemetrySample { gpus: GpuReport { devices: vec![device], ..GpuReport::default() }, ..TelemetrySample::default() }
}

#[test]
fn gpu_rules_raise_escalate_and_resolve_with_readable_texts() {
    let (_dir, mut rules, alerts) = setup(AlertsConfig { gpu_temperature_celsius: 80, ..AlertsConfig::default() });
    let now = Instant::now();
    rules.check_at(&gpu(79, 10, &["gpu_idle"]), &[], now);
    assert!(alerts.active().is_empty(), "{:?}", alerts.active());

    rules.check_at(&gpu(85, 23, &["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]), &[], now);
    let hot = by_key(&alerts, "gpu:GPU-a:temperature").expect("temperature alert");
    assert_eq!((hot.rule.as_str(), hot.severity), ("gpu", Severity::Warning));
    assert_eq!(hot.title, "GPU 0 (NVIDIA L4) at 85 °C");
    assert_eq!(
        hot.message,
        "GPU 0 (NVIDIA L4), GPU-a is at 85 °C, at or over the 80 °C alert threshold (critical from 90 °C)."
    );
    assert_eq!((hot.evidence.value, hot.evidence.threshold), (85.0, 80.0));
    assert_eq!(hot.labels.get("name").map(String::as_str), Some("NVIDIA L4"));
    let memory = by_key(&alerts, "gpu:GPU-a:memory").expect("memory alert");
    assert_eq!(memory.title, "GPU 0 (NVIDIA L4) memory 96% full");
    assert!(memory.message.contains("23.0 of 24.0 GB of memory in use (96%), at or over the 95% alert"), "{memory:?}");
    let throttle = by_key(&alerts, "gpu:GPU-a:throttle").expect("throttle alert");
    assert_eq!(throttle.title, "GPU 0 (NVIDIA L4) throttled: sw_power_cap, hw_thermal_slowdown", "idle is no alarm");
    assert_eq!(
        (throttle.evidence.value, throttle.evidence.detail.as_str()),
        (2.0, "sw_power_cap, hw_thermal_slowdown")
    );

    rules.check_at(&gpu(92, 23, &["sw_power_cap"]), &[], now);
    let hotter = by_key(&alerts, "gpu:GPU-a:temperature").expect("temperature alert");
    assert_eq!((hotter.id.as_str(), hotter.severity, hotter.occurrences), (hot.id.as_str(), Severity::Critical, 2));

    rules.check_at(&gpu(70, 12, &[]), &[], now);
    assert!(alerts.active().is_empty(), "{:?}", alerts.active());
    let resolution = |key: &str| by_key(&alerts, key).and_then(|a| a.resolution).unwrap_or_default();
    assert_eq!(resolution("gpu:GPU-a:temperature"), "GPU 0 back to 70 °C, under the 80 °C threshold");
    assert_eq!(resolution("gpu:GPU-a:memory"), "GPU 0 memory back to 50% in use, under the 95% threshold");
    assert_eq!(resolution("gpu:GPU-a:throttle"), "GPU 0 no longer throttled for power or heat");
}

fn engine(unhealthy: bool, restarts: Option<u64>) -> EngineView {
    EngineView {
        name: "vllm".into(),
        unhealthy,
        last_error: if unhealthy {
            "GET http://127.0.0.1:9/v1/models: connection refused".into()
        } else {
            String::new()
        },
        process: restarts.map(|n| (n, "exit status: 3".to_string())),
    }
}

#[test]
fn an_engine_down_for_the_configured_time_alerts_until_it_is_healthy() {
    let (_dir, mut rules, alerts) = setup(AlertsConfig { engine_down_secs: 60, ..AlertsConfig::default() });
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let sample = TelemetrySample::default();
    rules.check_at(&sample, &[engine(false, None)], at(0));
    rules.check_at(&sample, &[engine(true, None)], at(10));
    rules.check_at(&sample, &[engine(true, None)], at(69));
    assert!(alerts.active().is_empty(), "59 s down is under the limit");
    rules.check_at(&sample, &[engine(true, None)], at(70));
    let down = by_key(&alerts, "engine:vllm:down").expect("engine down alert");
    assert_eq!(
        (down.rule.as_str(), down.severity, down.title.as_str()),
        ("engine", Severity::Critical, "engine vllm down for 60 s")
    );
    assert_eq!(
        down.message,
        "Engine vllm has been unhealthy for 60 s (alert after 60 s); last error: GET http://127.0.0.1:9/v1/models: \
         connection refused."
    );
    rules.check_at(&sample, &[engine(false, None)], at(71));
    let up = by_key(&alerts, "engine:vllm:down").expect("stored");
    assert_eq!((up.state, up.resolution.as_deref()), (AlertState::Resolved, Some("engine vllm is healthy again")));
    // Down again: the clock starts over.
    rules.check_at(&sample, &[engine(true, None)], at(72));
    rules.check_at(&sample, &[engine(true, None)], at(100));
    assert!(alerts.active().is_empty());
}

#[test]
fn a_restart_loop_alerts_while_ten_minutes_hold_enough_restarts() {
    let (_dir, mut rules, alerts) = setup(AlertsConfig { engine_restarts: 3, ..AlertsConfig::default() });
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let sample = TelemetrySample::default();
    rules.check_at(&sample, &[engine(false, Some(0))], at(0));
    rules.check_at(&sample, &[engine(false, Some(2))], at(60));
    assert!(alerts.active().is_empty(), "2 restarts are under 3");
    rules.check_at(&sample, &[engine(false, Some(3))], at(120));
    let looping = by_key(&alerts, "engine:vllm:restarts").expect("restart alert");
    assert_eq!(
        (looping.rule.as_str(), looping.title.as_str()),
        ("engine", "engine vllm restarted 3 times in 10 minutes")
    );
    assert!(looping.message.ends_with("(alert at 3); last exit: exit status: 3."), "{}", looping.message);
    assert_eq!((looping.evidence.value, looping.evidence.threshold), (3.0, 3.0));
    // Ten minutes on, the sample at 0 s has left the window: 1 restart (from 2 to 3) remains.
    rules.check_at(&sample, &[engine(false, Some(3))], at(601));
    assert!(alerts.active().is_empty(), "{:?}", alerts.active());
    let ended = by_key(&alerts, "engine:vllm:restarts").and_then(|a| a.resolution);
    assert_eq!(ended.as_deref(), Some("engine vllm restarted 1 time in the last 10 minutes, under 3"));
}

fn window(secs: u64, requests: u64, errors: u64, p95: Option<f64>) -> RouteWindowStats {
    RouteWindowStats {
        route: "chat".into(),
        model: "fake-model".into(),
        window_secs: secs,
        requests,
        errors,
        request_rate_per_s: 0.0,
        error_rate: errors as f64 / requests.max(1) as f64,
        latency: Percentiles { count: requests, p50: p95, p95, p99: p95 },
        ttft: Percentiles::default(),
        inter_token: Percentiles::default(),
        input_tokens: 0,
        output_tokens: 0,
        output_tokens_per_s: 0.0,
        decode_tokens_per_s: None,
        in_flight: 0,
        cost_usd: 0.0,
        cost_usd_per_hour: 0.0,
    }
}

#[test]
fn latency_slo_and_error_rate_judge_their_own_windows() {
    let config = AlertsConfig {
        latency_p95_ms: 50.0,
        latency_slo_minutes: 5,
        error_rate: 0.5,
        error_rate_min_requests: 5,
        ..AlertsConfig::default()
    };
    let (_dir, mut rules, alerts) = setup(config);
    // Slow only in the 1-minute window: the SLO is judged over 5 minutes.
    rules.check_requests(&[window(60, 4, 4, Some(900.0)), window(300, 40, 4, Some(40.0))]);
    assert!(alerts.active().is_empty(), "4 requests are too few, 40 ms is within the SLO: {:?}", alerts.active());

    rules.check_requests(&[window(60, 5, 5, Some(900.0)), window(300, 45, 5, Some(250.0))]);
    let slo = by_key(&alerts, "latency_slo:chat:fake-model").expect("SLO alert");
    assert_eq!((slo.rule.as_str(), slo.severity), ("latency_slo", Severity::Warning));
    assert_eq!(slo.title, "chat p95 latency 250 ms over the last 5 min");
    assert_eq!(
        slo.message,
        "Route chat (model fake-model): p95 latency 250 ms over the last 5 min, above the 50 ms SLO (45 requests)."
    );
    assert_eq!((slo.evidence.value, slo.evidence.threshold, slo.evidence.current_n), (250.0, 50.0, 45));
    let errors = by_key(&alerts, "error_rate:chat:fake-model").expect("error-rate alert");
    assert_eq!((errors.rule.as_str(), errors.severity), ("error_rate", Severity::Critical));
    assert_eq!(errors.title, "chat failing: 100% of the last minute's requests");
    assert!(
        errors.message.contains("5 of 5 requests failed in the last minute (100%), at or over the 50%"),
        "{errors:?}"
    );

    rules.check_requests(&[window(60, 15, 5, Some(20.0)), window(300, 200, 5, Some(30.0))]);
    assert!(alerts.active().is_empty(), "{:?}", alerts.active());
    let resolution = |key: &str| by_key(&alerts, key).and_then(|a| a.resolution).unwrap_or_default();
    assert_eq!(resolution("latency_slo:chat:fake-model"), "p95 latency back to 30 ms, within the 50 ms SLO");
    assert_eq!(
        resolution("error_rate:chat:fake-model"),
        "error rate back to 33% of the last minute's 15 requests (alert at 50% of at least 5)"
    );
}
