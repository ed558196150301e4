//! The sampling loop: every interval, read the GPUs and the host (on a blocking thread: NVML and /proc can
//! stall) while scraping the engines, join GPU processes to engines by PID, hand each GPU's energy to the
//! meter, and publish the sample.
use super::gpu::GpuSampler;
use super::host::{HostSampler, DAEMON_PROCESS};
use super::hub::Telemetry;
use super::model::{EngineSample, GpuReport, HostSample, TelemetrySample};
use crate::engine::{Engine, Engines};
use crate::shutdown::Shutdown;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;

pub struct SamplerSettings {
    /// NVML library to load; `None`: the system's.
    pub nvml_library: Option<PathBuf>,
    /// GPU indices each engine is configured to run on.
    pub engine_gpus: HashMap<String, Vec<u32>>,
    /// GPU and engine alert rules, checked on every sample.
    pub rules: Option<super::rules::HostRules>,
}

/// Samples until `shutdown` fires, then hands the energy meter's waiting traces on.
pub fn spawn(
    telemetry: Arc<Telemetry>,
    engines: Engines,
    settings: SamplerSettings,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let mut settings = settings;
    spawn_energy_watchdog(telemetry.clone(), shutdown.clone());
    tokio::spawn(async move {
        // Both samplers start lazily: NVML is loaded on the first tick, not at startup.
        let mut readers = Some((GpuSampler::new(settings.nvml_library), HostSampler::new()));
        let mut ticker = tokio::time::interval(telemetry.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut gpu_unavailable: Option<String> = Some(String::new());
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait() => break,
            }
            let Some((mut gpu, mut host)) = readers.take() else { break };
            let launched: Vec<(String, u32)> =
                engines.iter().filter_map(|engine| Some((engine.name().to_string(), engine.pid()?))).collect();
            let at_unix_ms = crate::clock::unix_ms();
            let read = tokio::task::spawn_blocking(move || {
                let gpus = gpu.sample();
                let host_sample = host.sample(&launched);
                (gpu, host, gpus, host_sample)
            });
            let (read, engine_samples) = tokio::join!(read, scrape_engines(&engines));
            let Ok((gpu, host, mut gpus, host_sample)) = read else {
                tracing::error!("telemetry sampling panicked; GPU and host sampling stop");
                break;
            };
            readers = Some((gpu, host));
            // Why NVML is unavailable is logged by the GPU sampler itself; here only that it became available.
            if gpus.unavailable.is_none() && gpu_unavailable.is_some() {
                tracing::info!(gpus = gpus.devices.len(), driver = ?gpus.driver_version, "sampling GPUs");
            }
            gpu_unavailable = gpus.unavailable.clone();
            let engine_gpus = join_processes(&mut gpus, &host_sample, &engines, &settings.engine_gpus);
            telemetry.set_engine_gpus(engine_gpus.clone());
            telemetry.energy.set_engine_gpus(engine_gpus);
            telemetry.energy.on_sample(&gpus.devices, at_unix_ms);
            let sample = TelemetrySample { at_unix_ms, gpus, host: host_sample, engines: engine_samples };
            if let Some(rules) = settings.rules.as_mut() {
                rules.check(&sample, &engines);
                rules.check_requests(&telemetry.requests.snapshot(at_unix_ms));
            }
            telemetry.publish(sample);
        }
        telemetry.energy.flush();
    })
}

/// Hands on, with what they have, the traces the energy meter has held for longer than a few sampling
/// intervals: the sampling loop may be stuck in a GPU driver call, and traces and budget settlements must not
/// wait on it.
fn spawn_energy_watchdog(telemetry: Arc<Telemetry>, mut shutdown: Shutdown) {
    let interval = telemetry.interval;
    let max_wait = interval.saturating_mul(3).saturating_add(std::time::Duration::from_secs(5));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => telemetry.energy.flush_overdue(std::time::Instant::now(), max_wait),
                _ = shutdown.wait() => break,
            }
        }
    });
}

async fn scrape_engines(engines: &Engines) -> Vec<EngineSample> {
    let scrapes = engines.iter().map(|engine| async move {
        let mut sample = EngineSample { name: engine.name().to_string(), ..EngineSample::default() };
        match engine.refresh_load().await {
            Some(Ok(load)) => {
                sample.running = load.running;
                sample.waiting = load.waiting;
                sample.kv_cache_used_fraction = load.kv_cache_used_fraction;
                sample.prefix_cache_hit_rate = load.prefix_cache_hit_rate;
                sample.prefix_cache_queried_tokens = load.prefix_cache_queried_tokens;
                sample.prefix_cache_hit_tokens = load.prefix_cache_hit_tokens;
            }
            Some(Err(error)) => sample.error = Some(error),
            None => {}
        }
        sample
    });
    futures::future::join_all(scrapes).await
}

/// Names the GPU processes that are engines (launched ones by PID; the daemon's own PID runs the embedded
/// engines) and returns the GPUs each engine runs on: configured ones plus those it was found on.
fn join_processes(
    gpus: &mut GpuReport,
    host: &HostSample,
    engines: &Engines,
    configured: &HashMap<String, Vec<u32>>,
) -> HashMap<String, Vec<u32>> {
    let own_pid = host.processes.iter().find(|p| p.name == DAEMON_PROCESS).map_or(std::process::id(), |p| p.pid);
    let by_pid: HashMap<u32, String> =
        engines.iter().filter_map(|engine| Some((engine.pid()?, engine.name().to_string()))).collect();
    let embedded: Vec<String> = engines
        .iter()
        .filter(|engine| matches!(***engine, Engine::Embedded(_)))
        .map(|engine| engine.name().to_string())
        .collect();
    let mut engine_gpus = configured.clone();
    for device in &mut gpus.devices {
        for process in device.processes.iter_mut().flatten() {
            let found: Vec<String> = if process.pid == own_pid {
                process.engine = Some(DAEMON_PROCESS.to_string());
                embedded.clone()
            } else if let Some(name) = by_pid.get(&process.pid) {
                process.engine = Some(name.clone());
                vec![name.clone()]
            } else {
                continue;
            };
            for engine in found {
                let on = engine_gpus.entry(engine).or_default();
                if !on.contains(&device.index) {
                    on.push(device.index);
                }
            }
        }
    }
    engine_gpus
}
