//! Alerts end to end: a budget crossing 80% and 100%, and a GPU running hot, filling its memory and throttling,
//! raise alerts that reach the gRPC API, `llmopsctl alerts` and a webhook; acknowledging and resolving follow
//! the lifecycle and reach the webhook too. Drift rules: `alert_drift.rs`; engine and route rules:
//! `alert_engines.rs`.
// Reads the deprecated alert strings on purpose: llmopsd keeps filling them for clients older than the enums.
#![allow(deprecated)]
mod alert_support;
mod window_support;

use alert_support::{ack, assert_readable, wait_delivered, wait_for_alert, Hook};
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::nvml::FakeNvml;
use llmops_proto::v1::{AlertSeverity, AlertState};
use serde_json::json;
use std::time::Duration;
use window_support::{Window, DAY};

#[tokio::test]
async fn budget_thresholds_raise_alerts_that_reach_grpc_llmopsctl_and_the_webhook() {
    let hook = Hook::start().await;
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(10), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    // Each request: 11 tokens at $0.10 = $1.10 against a soft $2.50 budget: 80% after the second, 100% after
    // the third.
    let config = format!(
        "[engines.paid]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         price = {{ input = 100000.0, output = 100000.0 }}\n\
         [[budgets]]\nname = \"soft\"\nwindow = \"day\"\nlimit_usd = 2.5\naction = \"alert\"\n{}",
        upstream.base_url(),
        hook.toml()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    // The three requests count against one UTC day: a reset between them would restart the count.
    let day = Window::enter(DAY, Duration::from_secs(120)).await;
    for _ in 0..3 {
        let body = json!({"model": "fake-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 200, "an alert budget never blocks");
    }
    day.assert_still_inside();
    let warning = wait_for_alert(&daemon, "80% alert", |a| a.rule == "budget" && a.title.contains("80%")).await;
    let critical = wait_for_alert(&daemon, "100% alert", |a| a.rule == "budget" && a.title.contains("100%")).await;
    assert_eq!((warning.severity.as_str(), critical.severity.as_str()), ("warning", "critical"));
    assert_eq!(warning.state, "firing");
    // The enums say the same as the strings they replace.
    assert_eq!(
        (warning.alert_severity(), critical.alert_severity()),
        (AlertSeverity::Warning, AlertSeverity::Critical)
    );
    assert_eq!(warning.alert_state(), AlertState::Firing);
    // Amounts with their unit: 3 requests at $1.10 each against $2.50.
    assert!(critical.message.contains("$3.30 of $2.50 used"), "{}", critical.message);
    let evidence = critical.evidence.as_ref().expect("evidence");
    assert!(evidence.value >= 1.0 && evidence.threshold == 1.0, "{evidence:?}");

    for (alert, percent) in [(&warning, "80%"), (&critical, "100%")] {
        let posted = hook.wait_for(&daemon, "raised", percent, |a| a["id"] == alert.id.as_str()).await;
        assert_eq!((posted["rule"].as_str(), posted["state"].as_str()), (Some("budget"), Some("firing")));
        assert_readable(&posted, &[percent]);
        wait_delivered(&daemon, &alert.id).await;
    }

    let listed = daemon.llmopsctl_async(&["alerts"]).await.expect("llmopsctl alerts");
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success() && shown.contains("budget soft at 100%"), "{shown}");
    ack(&daemon, &critical.id).await;
    let after = wait_for_alert(&daemon, "acknowledged", |a| a.id == critical.id && a.state == "acknowledged").await;
    assert_eq!(after.acknowledged_by, "ops");
    let posted = hook.wait_for(&daemon, "acknowledged", "ack", |a| a["id"] == critical.id.as_str()).await;
    assert_eq!(posted["acknowledged_by"], "ops");
    assert_eq!(hook.events_for(&critical.id), ["raised", "acknowledged"]);
    let gone = daemon.llmopsctl_async(&["alerts", "ack", "no-such-alert"]).await.expect("ack");
    assert_eq!(gone.status.code(), Some(1));
}

/// Stand-in NVML values for one L4: temperature, memory in use (GB of 24) and throttle reason bits.
fn gpu_values(temperature: u32, used_gb: f64, throttle: u32) -> String {
    format!(
        "driver_version 550.54.15\ndevice_count 1\ngpu0.name NVIDIA L4\ngpu0.uuid GPU-hot\n\
         gpu0.memory_total 24000000000\ngpu0.memory_used {}\ngpu0.temperature {temperature}\n\
         gpu0.throttle {throttle:#x}\n",
        (used_gb * 1e9) as u64
    )
}

#[tokio::test]
async fn a_hot_full_throttled_gpu_raises_alerts_that_resolve_when_it_recovers() {
    let hook = Hook::start().await;
    let nvml = FakeNvml::new(&gpu_values(60, 1.0, 0x1));
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 200\nnvml_library = \"{}\"\n[alerts]\ngpu_temperature_celsius = 80\n\
         gpu_memory_fraction = 0.9\n{}{}",
        nvml.lib_path().display(),
        hook.toml(),
        alert_support::engine_toml(&upstream.base_url())
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    // sw_power_cap (0x4) and hw_thermal_slowdown (0x40); gpu_idle (0x1) alone is no alarm.
    nvml.set(&gpu_values(92, 23.5, 0x45));

    let hot = hook.wait_for(&daemon, "raised", "hot GPU", |a| a["key"] == "gpu:GPU-hot:temperature").await;
    assert_eq!(hot["severity"], "critical", "92 C is 10 C over the 80 C threshold");
    assert_eq!(hot["title"], "GPU 0 (NVIDIA L4) at 92 °C");
    assert_readable(&hot, &["92 °C", "80 °C alert threshold", "critical from 90 °C"]);
    let full = hook.wait_for(&daemon, "raised", "full GPU", |a| a["key"] == "gpu:GPU-hot:memory").await;
    assert_eq!((full["severity"].as_str(), full["evidence"]["threshold"].as_f64()), (Some("warning"), Some(0.9)));
    assert_readable(&full, &["23.5 of 24.0 GB", "(98%)", "90% alert threshold"]);
    let throttled = hook.wait_for(&daemon, "raised", "throttled GPU", |a| a["key"] == "gpu:GPU-hot:throttle").await;
    assert_eq!(throttled["evidence"]["detail"], "sw_power_cap, hw_thermal_slowdown");
    assert_readable(&throttled, &["power or heat"]);
    let grpc = wait_for_alert(&daemon, "hot GPU in gRPC", |a| a.key == "gpu:GPU-hot:temperature").await;
    assert_eq!((grpc.id.as_str(), grpc.state.as_str()), (hot["id"].as_str().unwrap_or_default(), "firing"));

    nvml.set(&gpu_values(70, 1.0, 0x1));
    for (alert, reason) in [
        (&hot, "GPU 0 back to 70 °C, under the 80 °C threshold"),
        (&full, "GPU 0 memory back to 4% in use, under the 90% threshold"),
        (&throttled, "GPU 0 no longer throttled for power or heat"),
    ] {
        let id = alert["id"].as_str().unwrap_or_default();
        let resolved = hook.wait_for(&daemon, "resolved", reason, |a| a["id"] == id).await;
        assert_eq!((resolved["state"].as_str(), resolved["resolution"].as_str()), (Some("resolved"), Some(reason)));
        assert_eq!(hook.events_for(id), ["raised", "resolved"]);
    }
    let cooled =
        wait_for_alert(&daemon, "cooled", |a| a.key == "gpu:GPU-hot:temperature" && a.state == "resolved").await;
    assert!(cooled.resolved_at_unix_ms.is_some());
    wait_delivered(&daemon, &cooled.id).await;
}
