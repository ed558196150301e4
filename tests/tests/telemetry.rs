//! Telemetry end to end: the daemon with the stand-in NVML library shows the scripted GPU values over gRPC,
//! `/metrics` and `llmopsctl gpus`; picks up changes on its next sample; survives a lost GPU; attributes
//! the scripted energy counter to the requests that ran; and scrapes the engine's own metrics.
use futures::StreamExt;
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::nvml::FakeNvml;
use llmops_proto::v1 as pb;
use llmops_proto::v1::telemetry_service_client::TelemetryServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const INTERVAL_MS: u64 = 200;

/// Two GPUs; the second reports no power (NOT_SUPPORTED), which must come back absent, not 0.
fn two_gpus(energy_mj: u64, power_mw: u64) -> String {
    format!(
        "driver_version 550.54.15\ndevice_count 2\n\
         gpu0.name NVIDIA H100 80GB HBM3\ngpu0.uuid GPU-00000000-0000-0000-0000-000000000000\n\
         gpu0.memory_total 85899345920\ngpu0.memory_used 42949672960\ngpu0.util_gpu 87\ngpu0.util_memory 40\n\
         gpu0.power_mw {power_mw}\ngpu0.power_limit_mw 700000\ngpu0.energy_mj {energy_mj}\ngpu0.temperature 61\n\
         gpu0.clock_sm 1980\ngpu0.clock_mem 2619\ngpu0.throttle 0x4\ngpu0.processes 4242:1073741824\n\
         gpu1.name NVIDIA L4\ngpu1.uuid GPU-11111111-1111-1111-1111-111111111111\n\
         gpu1.memory_total 24000000000\ngpu1.memory_used 1000000000\ngpu1.util_gpu 3\ngpu1.util_memory 1\n\
         gpu1.power_limit_mw 72000\ngpu1.energy_mj 5000\ngpu1.temperature 40\ngpu1.clock_sm 210\ngpu1.clock_mem 405\n\
         gpu1.throttle 0x1\ngpu1.processes\n\
         gpu1.error.power NOT_SUPPORTED\n"
    )
}

async fn start(nvml: &FakeNvml, upstream: &FakeUpstream) -> (tempfile::TempDir, Daemon) {
    let config = format!(
        "[telemetry]\ninterval_ms = {INTERVAL_MS}\nnvml_library = \"{}\"\nusd_per_kwh = 0.36\n\
         [engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\ngpus = [0]\n",
        nvml.lib_path().display(),
        upstream.base_url()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, daemon)
}

async fn telemetry(daemon: &Daemon) -> TelemetryServiceClient<tonic::transport::Channel> {
    TelemetryServiceClient::new(daemon.grpc_channel().await.expect("gRPC channel"))
}

async fn latest(daemon: &Daemon) -> pb::TelemetrySample {
    let mut client = telemetry(daemon).await;
    client.get_telemetry(pb::GetTelemetryRequest {}).await.expect("GetTelemetry").into_inner()
}

/// Polls until the latest sample passes `check`; panics with the last sample and the daemon's log.
async fn wait_for_sample(
    daemon: &Daemon,
    what: &str,
    check: impl Fn(&pb::TelemetrySample) -> bool,
) -> pb::TelemetrySample {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sample = tokio::time::timeout_at(deadline, latest(daemon))
            .await
            .unwrap_or_else(|_| panic!("{what}: GetTelemetry did not answer within {WAIT:?}"));
        if check(&sample) {
            return sample;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {WAIT:?}; last sample {sample:#?}\n{}", daemon.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn scripted_gpu_values_reach_grpc_metrics_and_llmopsctl_and_changes_show_on_the_next_sample() {
    let nvml = FakeNvml::new(&two_gpus(1_000_000, 350_000));
    let upstream =
        FakeUpstream::start(Behavior { kv_cache_used_percent: 42, ..Behavior::default() }).await.expect("fake");
    let (_dir, daemon) = start(&nvml, &upstream).await;

    let sample = wait_for_sample(&daemon, "two GPUs sampled", |s| s.gpus.len() == 2).await;
    assert_eq!(sample.driver_version, "550.54.15");
    assert!(sample.gpu_unavailable.is_empty(), "{}", sample.gpu_unavailable);
    let (h100, l4) = (&sample.gpus[0], &sample.gpus[1]);
    assert_eq!(h100.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(h100.memory_used_bytes, Some(42_949_672_960));
    assert_eq!(h100.utilization_gpu_percent, Some(87));
    assert_eq!(h100.power_watts, Some(350.0));
    assert_eq!(h100.power_limit_watts, Some(700.0));
    assert_eq!(h100.energy_joules_total, Some(1000.0));
    assert_eq!(h100.temperature_celsius, Some(61));
    assert_eq!((h100.sm_clock_mhz, h100.memory_clock_mhz), (Some(1980), Some(2619)));
    assert_eq!(h100.throttle_reasons, ["sw_power_cap"]);
    assert_eq!(
        h100.processes.iter().map(|p| (p.pid, p.used_memory_bytes)).collect::<Vec<_>>(),
        [(4242, Some(1 << 30))]
    );
    assert_eq!(l4.power_watts, None, "unsupported is absent, not 0");
    assert_eq!(l4.throttle_reasons, ["gpu_idle"]);
    assert!(sample.host.as_ref().is_some_and(|h| h.cpu_count > 0 && h.memory_total_bytes > 0));

    // The engine's own metrics (vLLM names on the fake) are scraped and normalised.
    let engine = wait_for_sample(&daemon, "engine metrics scraped", |s| {
        s.engines.iter().any(|e| e.kv_cache_used_fraction.is_some())
    })
    .await
    .engines
    .into_iter()
    .find(|e| e.name == "fake")
    .expect("engine sample");
    assert_eq!((engine.running, engine.waiting, engine.kv_cache_used_fraction), (Some(0), Some(0), Some(0.42)));

    // A change is in every sample taken after it was written.
    // (Read the clock once the write is done: a sample stamped later started reading after it.)
    nvml.set(&two_gpus(1_000_000, 420_000));
    let written_at = chrono_now_ms();
    wait_for_sample(&daemon, "new power seen", |s| s.gpus.first().and_then(|g| g.power_watts) == Some(420.0)).await;
    let mut client = telemetry(&daemon).await;
    let history = client
        .query_telemetry(pb::QueryTelemetryRequest { from_unix_ms: written_at + 1, to_unix_ms: 0, step: 0 })
        .await
        .expect("QueryTelemetry")
        .into_inner();
    assert!(!history.samples.is_empty());
    for sample in &history.samples {
        assert_eq!(sample.gpus[0].power_watts, Some(420.0), "sample at {} after the change", sample.at_unix_ms);
    }

    let text = reqwest::get(daemon.url("/metrics")).await.expect("GET /metrics").text().await.expect("body");
    for line in [
        "llmops_gpu_power_watts{gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\",name=\"NVIDIA H100 80GB HBM3\"} 420",
        "llmops_engine_kv_cache_used_ratio{engine=\"fake\"} 0.42",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("llmops_gpu_power_watts{gpu=\"1\""), "unsupported power is not exported as 0:\n{text}");

    let output = daemon.llmopsctl_async(&["gpus"]).await.expect("llmopsctl gpus");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && shown.contains("NVIDIA H100 80GB HBM3") && shown.contains("550.54.15"),
        "{shown}"
    );
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test]
async fn energy_counted_while_requests_ran_is_split_among_them() {
    let nvml = FakeNvml::new(&two_gpus(1_000_000, 300_000));
    // 20 words at 100 ms: each stream runs about two seconds, many samples long.
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 100, reply_words: Some(20), ..Behavior::default() })
        .await
        .expect("fake");
    let (_dir, daemon) = start(&nvml, &upstream).await;
    let first = wait_for_sample(&daemon, "GPUs sampled", |s| s.gpus.len() == 2).await;
    // One more sample, so the first one's counter is the baseline.
    wait_for_sample(&daemon, "a second GPU sample", |s| s.gpus.len() == 2 && s.at_unix_ms > first.at_unix_ms).await;

    let http = reqwest::Client::new();
    let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut streams = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        ids.push(response.headers()["x-request-id"].to_str().expect("id").to_string());
        let mut stream = response.bytes_stream();
        stream.next().await.expect("first chunk").expect("chunk");
        streams.push(stream);
    }
    // Both are running: the GPU's counter advances by 900 J.
    nvml.set(&two_gpus(1_900_000, 300_000));
    for mut stream in streams {
        while let Some(chunk) = stream.next().await {
            chunk.expect("chunk");
        }
    }

    let mut traces = TraceServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let mut energies = Vec::new();
    for id in &ids {
        let found = wait_until(WAIT, || {
            let mut traces = traces.clone();
            let id = id.clone();
            async move { traces.get_trace(pb::GetTraceRequest { id }).await.is_ok() }
        })
        .await;
        assert!(found, "trace {id} recorded\n{}", daemon.log_tail(30));
        let trace = traces.get_trace(pb::GetTraceRequest { id: id.clone() }).await.expect("trace").into_inner();
        let energy = trace.energy_joules.expect("energy on a GPU engine's trace");
        let cost = trace.cost_usd.expect("cost");
        assert!((cost - energy / 3.6e6 * 0.36).abs() < 1e-12, "cost {cost} for {energy} J at $0.36/kWh");
        energies.push(energy);
    }
    let total: f64 = energies.iter().sum();
    // How it splits depends on which tokens fell in that interval; that it all lands on these two does not.
    assert!((total - 900.0).abs() < 1e-6, "the scripted 900 J is shared out exactly: {energies:?}");
}

#[tokio::test]
async fn a_lost_gpu_is_reported_while_the_other_is_sampled_and_it_recovers() {
    let nvml = FakeNvml::new(&two_gpus(1_000_000, 300_000));
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let (_dir, daemon) = start(&nvml, &upstream).await;
    wait_for_sample(&daemon, "GPUs sampled", |s| s.gpus.len() == 2).await;

    nvml.set(&format!("{}gpu1.error.all GPU_IS_LOST\n", two_gpus(1_000_000, 310_000)));
    let sample = wait_for_sample(&daemon, "GPU 1 lost", |s| s.gpus.get(1).is_some_and(|g| !g.error.is_empty())).await;
    assert!(sample.gpus[1].error.to_lowercase().contains("lost"), "{}", sample.gpus[1].error);
    assert_eq!(sample.gpus[1].temperature_celsius, None);
    nvml.set(&format!("{}gpu1.error.all GPU_IS_LOST\n", two_gpus(1_000_000, 320_000)));
    wait_for_sample(&daemon, "GPU 0 still sampled", |s| s.gpus[0].power_watts == Some(320.0)).await;
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200, "requests are served meanwhile");

    nvml.set(&two_gpus(1_000_000, 320_000));
    wait_for_sample(&daemon, "GPU 1 recovered", |s| {
        s.gpus[1].error.is_empty() && s.gpus[1].temperature_celsius == Some(40)
    })
    .await;
}

#[tokio::test]
async fn without_nvml_the_daemon_serves_and_says_why_there_is_no_gpu_data() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-libnvidia-ml.so.1");
    let config = format!(
        "[telemetry]\ninterval_ms = {INTERVAL_MS}\nnvml_library = \"{}\"\n\
         [engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        missing.display(),
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let sample = wait_for_sample(&daemon, "GPU unavailability reported", |s| !s.gpu_unavailable.is_empty()).await;
    assert!(sample.gpu_unavailable.contains("no-such-libnvidia-ml.so.1"), "{}", sample.gpu_unavailable);
    assert!(sample.gpus.is_empty());
    let output = daemon.llmopsctl_async(&["gpus"]).await.expect("llmopsctl gpus");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && shown.contains("no GPU data"), "{shown}");
}
