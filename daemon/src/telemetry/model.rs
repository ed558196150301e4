//! What one sampling round sees: GPUs (NVML), the host (sysinfo) and the engines (their own metrics).
//! A field a device or engine does not report is `None`, never 0.

/// One GPU at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSample {
    /// NVML device index.
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: Option<u64>,
    pub memory_used_bytes: Option<u64>,
    pub utilization_gpu_percent: Option<u32>,
    pub utilization_memory_percent: Option<u32>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    /// The device's energy counter since the driver loaded, in joules.
    pub energy_joules_total: Option<f64>,
    pub temperature_celsius: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    /// Active clock throttle reasons by name (`sw_power_cap`, `hw_slowdown`, ...); empty when none is
    /// active, `None` when the device does not report them.
    pub throttle_reasons: Option<Vec<String>>,
    /// Compute processes and their GPU memory; `None` when the device does not report them.
    pub processes: Option<Vec<GpuProcess>>,
    /// Why this device could not be read this round (e.g. `GpuLost`); the other fields are then `None`.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
    /// The engine the daemon launched with this PID, joined in by the hub.
    pub engine: Option<String>,
}

/// All GPUs at one instant, or why there are none to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReport {
    pub driver_version: Option<String>,
    /// Set when NVML is not usable (library not found, driver not loaded, ...): the reason, as NVML said it.
    pub unavailable: Option<String>,
    pub devices: Vec<GpuSample>,
}

/// The host at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    pub hostname: String,
    pub cpu_count: u32,
    /// Busy share of all cores since the previous sample, 0–100.
    pub cpu_percent: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub load_1m: f64,
    pub load_5m: f64,
    pub load_15m: f64,
    /// The daemon itself and each engine process it knows the PID of.
    pub processes: Vec<ProcessSample>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSample {
    /// Engine name, or `llmopsd` for the daemon (which runs the embedded engines).
    pub name: String,
    pub pid: u32,
    /// Share of one core, so a process using two full cores shows 200.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// One engine's load at one instant, as it reports it (embedded: from the batcher; openai: scraped from its
/// Prometheus metrics where it has them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSample {
    pub name: String,
    pub running: Option<u64>,
    pub waiting: Option<u64>,
    pub kv_cache_used_fraction: Option<f64>,
    /// Share of prompt tokens served from the engine's prefix cache since the previous sample (or its own gauge).
    pub prefix_cache_hit_rate: Option<f64>,
    /// Cumulative prompt tokens looked up in the prefix cache and found there, as the engine counts them.
    pub prefix_cache_queried_tokens: Option<u64>,
    pub prefix_cache_hit_tokens: Option<u64>,
    /// Why the engine's metrics could not be read this round.
    pub error: Option<String>,
}

/// Everything one sampling round saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetrySample {
    pub at_unix_ms: i64,
    pub gpus: GpuReport,
    pub host: HostSample,
    pub engines: Vec<EngineSample>,
}
