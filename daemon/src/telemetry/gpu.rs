//! GPUs through NVML (`nvml-wrapper`, which dlopens `libnvidia-ml.so.1` at run time, so the daemon runs on
//! hosts without a driver). NVML is loaded on the first sample, not at startup; when it cannot be loaded the
//! report says why and loading is retried with backoff. A device that fails as a whole (`GpuLost`, ...) is
//! reported with its error and retried with its own backoff while the other devices go on being sampled.
use super::model::{GpuProcess, GpuReport, GpuSample};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::Nvml;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The loader's default, what `Nvml::init` opens when no library is configured.
const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1 (system library path)";

/// Exponential backoff: `base` after the first failure, doubling with each further one, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Loading NVML: a missing driver rarely appears by itself, so don't retry dlopen every interval.
    pub const INIT: Backoff = Backoff { base: Duration::from_secs(5), max: Duration::from_secs(300) };
    /// One device: a lost GPU often stays lost, but a transient error should clear soon.
    pub const DEVICE: Backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };

    /// How long to wait after `failures` failures in a row (1 and 0 give `base`).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A failure being retried: how many in a row, when to try again, and the reason reported meanwhile.
#[derive(Debug, Clone)]
struct Retry {
    failures: u32,
    next_at: Instant,
    reason: String,
}

impl Retry {
    fn after(previous: Option<&Retry>, reason: String, now: Instant, backoff: Backoff) -> Retry {
        let failures = previous.map_or(0, |retry| retry.failures).saturating_add(1);
        Retry { failures, next_at: now + backoff.delay(failures), reason }
    }

    fn is_waiting(&self, now: Instant) -> bool {
        now < self.next_at
    }
}

struct Loaded {
    nvml: Nvml,
    driver_version: Option<String>,
}

/// What is remembered about one device index between samples.
#[derive(Debug, Default)]
struct DeviceState {
    /// Last known, so a failed device is still recognisable in the report.
    name: String,
    uuid: String,
    retry: Option<Retry>,
}

impl DeviceState {
    fn failed(&self, index: u32, reason: String) -> GpuSample {
        GpuSample {
            index,
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            error: Some(reason),
            ..GpuSample::default()
        }
    }
}

/// Reads all GPUs through NVML; call [`GpuSampler::sample`] on a blocking thread each interval.
pub struct GpuSampler {
    library: Option<PathBuf>,
    init_backoff: Backoff,
    device_backoff: Backoff,
    loaded: Option<Loaded>,
    init_retry: Option<Retry>,
    devices: Vec<DeviceState>,
}

impl GpuSampler {
    /// `library`: the NVML library to load (`None`: the system's). Nothing is loaded until the first sample.
    pub fn new(library: Option<PathBuf>) -> Self {
        GpuSampler {
            library,
            init_backoff: Backoff::INIT,
            device_backoff: Backoff::DEVICE,
            loaded: None,
            init_retry: None,
            devices: Vec::new(),
        }
    }

    /// Replaces the default backoffs ([`Backoff::INIT`], [`Backoff::DEVICE`]).
    pub fn with_backoff(mut self, init: Backoff, device: Backoff) -> Self {
        self.init_backoff = init;
        self.device_backoff = device;
        self
    }

    /// Reads every GPU now. Blocks: NVML calls can take milliseconds per device, more on a failing one.
    pub fn sample(&mut self) -> GpuReport {
        self.sample_at(Instant::now())
    }

    /// [`GpuSampler::sample`] with the clock given, which decides only whether backoffs have run out (so
    /// tests can step past them without sleeping).
    pub fn sample_at(&mut self, now: Instant) -> GpuReport {
        let loaded = match self.loaded.take() {
            Some(loaded) => loaded,
            None => match self.load(now) {
                Ok(loaded) => loaded,
                Err(reason) => return unavailable(reason),
            },
        };
        let count = match loaded.nvml.device_count() {
            Ok(count) => count,
            Err(e) => {
                // NVML as a whole stopped answering (driver unloaded, ...): drop it and load it again later.
                drop(loaded);
                let library = library_label(self.library.as_deref());
                let reason = format!("NVML stopped working: device count: {e} (NVML library {library})");
                tracing::warn!(%reason, "GPU sampling stops; NVML will be loaded again");
                self.init_retry = Some(Retry::after(None, reason.clone(), now, self.init_backoff));
                return unavailable(reason);
            }
        };
        self.devices.resize_with(count as usize, DeviceState::default);
        let devices = (0..count)
            .zip(self.devices.iter_mut())
            .map(|(index, state)| sample_device(&loaded.nvml, index, state, now, self.device_backoff))
            .collect();
        let report = GpuReport { driver_version: loaded.driver_version.clone(), unavailable: None, devices };
        self.loaded = Some(loaded);
        report
    }

    /// Loads NVML unless the last failure's backoff is still running; the error is the reason to report.
    fn load(&mut self, now: Instant) -> Result<Loaded, String> {
        if let Some(retry) = self.init_retry.as_ref().filter(|retry| retry.is_waiting(now)) {
            return Err(retry.reason.clone());
        }
        let result = match &self.library {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::init(),
        };
        let library = library_label(self.library.as_deref());
        match result {
            Ok(nvml) => {
                // Read once: the driver cannot change under a loaded NVML.
                let driver_version = nvml.sys_driver_version().ok();
                tracing::info!(%library, driver = ?driver_version, "NVML loaded");
                self.init_retry = None;
                Ok(Loaded { nvml, driver_version })
            }
            Err(e) => {
                let reason = init_failure_reason(&library, &e);
                let retry = Retry::after(self.init_retry.as_ref(), reason.clone(), now, self.init_backoff);
                // Once per distinct reason, not every retry.
                if self.init_retry.as_ref().is_none_or(|previous| previous.reason != reason) {
                    let retry_in = self.init_backoff.delay(retry.failures);
                    // No NVIDIA library at all is the normal state of a CPU-only host, not a fault.
                    if matches!(e, NvmlError::LibloadingError(_)) {
                        tracing::info!(%reason, ?retry_in, "no GPU data: NVML not found");
                    } else {
                        tracing::warn!(%reason, ?retry_in, "NVML could not be loaded");
                    }
                }
                self.init_retry = Some(retry);
                Err(reason)
            }
        }
    }
}

fn unavailable(reason: String) -> GpuReport {
    GpuReport { driver_version: None, unavailable: Some(reason), devices: Vec::new() }
}

fn library_label(library: Option<&Path>) -> String {
    library.map_or_else(|| DEFAULT_LIBRARY.to_string(), |path| path.display().to_string())
}

/// Why NVML could not be loaded, for operators: which case it is, NVML's own words, and the library tried.
fn init_failure_reason(library: &str, e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            format!("NVML library not found or not loadable ({library}): {e}")
        }
        NvmlError::DriverNotLoaded => format!("NVIDIA driver not loaded: {e} (NVML library {library})"),
        NvmlError::NoPermission => format!("no permission to use the NVIDIA driver: {e} (NVML library {library})"),
        NvmlError::LibRmVersionMismatch => {
            format!("NVIDIA driver and NVML library versions differ: {e} (NVML library {library})")
        }
        NvmlError::FailedToLoadSymbol(_) => format!("{library} is not a usable NVML library: {e}"),
        _ => format!("NVML failed to initialize: {e} (NVML library {library})"),
    }
}

/// How a failed NVML call on a device counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// This one value is missing (not supported, not permitted, symbol absent in this driver, ...).
    Field,
    /// The device as a whole cannot be read this round.
    Device,
}

fn classify(e: &NvmlError) -> Failure {
    match e {
        NvmlError::GpuLost
        | NvmlError::ResetRequired
        | NvmlError::Unknown
        | NvmlError::IrqIssue
        | NvmlError::InsufficientPower
        | NvmlError::DriverNotLoaded
        | NvmlError::LibRmVersionMismatch
        | NvmlError::Uninitialized => Failure::Device,
        _ => Failure::Field,
    }
}

/// A value the device may not report: `Ok(None)` for a field-level failure, `Err` when the device failed.
fn optional<T>(result: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if classify(&e) == Failure::Field => {
            tracing::trace!(error = %e, "GPU value not reported");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn sample_device(nvml: &Nvml, index: u32, state: &mut DeviceState, now: Instant, backoff: Backoff) -> GpuSample {
    if let Some(retry) = state.retry.as_ref().filter(|retry| retry.is_waiting(now)) {
        return state.failed(index, retry.reason.clone());
    }
    match read_device(nvml, index, state) {
        Ok(sample) => {
            if let Some(retry) = state.retry.take() {
                tracing::info!(gpu = index, uuid = %state.uuid, failures = retry.failures, "GPU readable again");
            }
            sample
        }
        Err(e) => {
            // The variant name (`GpuLost`) is what operators search for; NVML's text explains it.
            let reason = format!("{e:?}: {e}");
            if state.retry.is_none() {
                tracing::warn!(gpu = index, uuid = %state.uuid, %reason, "GPU unreadable; retrying with backoff");
            }
            let retry = Retry::after(state.retry.as_ref(), reason.clone(), now, backoff);
            state.retry = Some(retry);
            state.failed(index, reason)
        }
    }
}

fn read_device(nvml: &Nvml, index: u32, state: &mut DeviceState) -> Result<GpuSample, NvmlError> {
    // Handles borrow the Nvml; fetching them each round is cheap and keeps no stale handle across failures.
    let device = nvml.device_by_index(index)?;
    if let Some(name) = optional(device.name())? {
        state.name = name;
    }
    if let Some(uuid) = optional(device.uuid())? {
        state.uuid = uuid;
    }
    // nvml-wrapper 0.13 calls nvmlDeviceGetMemoryInfo_v2, whose `used` excludes driver-reserved memory.
    let memory = optional(device.memory_info())?;
    let utilization = optional(device.utilization_rates())?;
    Ok(GpuSample {
        index,
        name: state.name.clone(),
        uuid: state.uuid.clone(),
        memory_total_bytes: memory.as_ref().map(|memory| memory.total),
        memory_used_bytes: memory.map(|memory| memory.used),
        utilization_gpu_percent: utilization.as_ref().map(|utilization| utilization.gpu),
        utilization_memory_percent: utilization.map(|utilization| utilization.memory),
        power_watts: optional(device.power_usage())?.map(|milliwatts| f64::from(milliwatts) / 1000.0),
        power_limit_watts: optional(device.enforced_power_limit())?.map(|milliwatts| f64::from(milliwatts) / 1000.0),
        // u64 → f64 loses precision only past 2^53 mJ (about 285 years at 1 kW).
        energy_joules_total: optional(device.total_energy_consumption())?
            .map(|millijoules| millijoules as f64 / 1000.0),
        temperature_celsius: optional(device.temperature(TemperatureSensor::Gpu))?,
        sm_clock_mhz: optional(device.clock_info(Clock::SM))?,
        memory_clock_mhz: optional(device.clock_info(Clock::Memory))?,
        throttle_reasons: optional(device.current_throttle_reasons())?
            .map(|reasons| throttle_reason_names(reasons.bits())),
        processes: optional(device.running_compute_processes())?.map(|list| list.into_iter().map(process).collect()),
        error: None,
    })
}

fn process(info: ProcessInfo) -> GpuProcess {
    let used_memory_bytes = match info.used_gpu_memory {
        UsedGpuMemory::Used(bytes) => Some(bytes),
        UsedGpuMemory::Unavailable => None,
    };
    GpuProcess { pid: info.pid, used_memory_bytes, engine: None }
}

/// NVML's clock throttle ("event") reason bits (`nvmlClocksThrottleReason*` in nvml.h) and their names.
const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The names of the reasons set in `bits`, in bit order; bits NVML has not defined are left out.
pub fn throttle_reason_names(bits: u64) -> Vec<String> {
    THROTTLE_REASONS.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let backoff = Backoff { base: Duration::from_secs(5), max: Duration::from_secs(300) };
        let delays: Vec<u64> = (1..=8).map(|failures| backoff.delay(failures).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.delay(0), Duration::from_secs(5));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(300), "no overflow");
        assert_eq!(Backoff::DEVICE.delay(1), Duration::from_secs(1));
        assert_eq!(Backoff::DEVICE.delay(100), Duration::from_secs(60));
    }

    #[test]
    fn retries_count_failures_and_wait_out_their_delay() {
        let now = Instant::now();
        let first = Retry::after(None, "lost".into(), now, Backoff::DEVICE);
        assert_eq!((first.failures, first.next_at), (1, now + Duration::from_secs(1)));
        assert!(first.is_waiting(now) && !first.is_waiting(now + Duration::from_secs(1)));
        let second = Retry::after(Some(&first), "lost".into(), now, Backoff::DEVICE);
        assert_eq!((second.failures, second.next_at), (2, now + Duration::from_secs(2)));
    }

    #[test]
    fn throttle_reasons_are_named_in_bit_order() {
        assert!(throttle_reason_names(0).is_empty());
        assert_eq!(throttle_reason_names(0x4), ["sw_power_cap"]);
        assert_eq!(
            throttle_reason_names(0x1 | 0x40 | 0x100),
            ["gpu_idle", "hw_thermal_slowdown", "display_clock_setting"]
        );
        assert_eq!(throttle_reason_names(0x1ff).len(), 9);
        assert_eq!(throttle_reason_names(0x8 | 0x8000_0000), ["hw_slowdown"], "undefined bits are left out");
    }

    #[test]
    fn device_failures_are_told_from_missing_values() {
        for e in [NvmlError::GpuLost, NvmlError::Unknown, NvmlError::ResetRequired, NvmlError::Uninitialized] {
            assert_eq!(classify(&e), Failure::Device, "{e:?}");
        }
        let missing = [
            NvmlError::NotSupported,
            NvmlError::FunctionNotFound,
            NvmlError::FailedToLoadSymbol("nvmlDeviceGetPowerUsage".into()),
            NvmlError::NoPermission,
            NvmlError::NoData,
            NvmlError::InsufficientSize(None),
        ];
        for e in missing {
            assert_eq!(classify(&e), Failure::Field, "{e:?}");
        }
        assert_eq!(optional(Err::<u32, _>(NvmlError::NotSupported)).expect("a missing value"), None);
        assert!(optional(Err::<u32, _>(NvmlError::GpuLost)).is_err());
    }

    #[test]
    fn init_failures_say_which_case_and_which_library() {
        let driver = init_failure_reason("/opt/nvml/libnvidia-ml.so.1", &NvmlError::DriverNotLoaded);
        assert!(driver.contains("driver not loaded") && driver.contains("/opt/nvml/libnvidia-ml.so.1"), "{driver}");
        let other = init_failure_reason(DEFAULT_LIBRARY, &NvmlError::LibRmVersionMismatch);
        assert!(other.contains("versions differ") && other.contains("libnvidia-ml.so.1"), "{other}");
    }

    #[test]
    fn a_missing_library_is_reported_and_retried_only_after_backoff() {
        let path = PathBuf::from("/nonexistent/llmops-test/libnvidia-ml.so.1");
        let mut sampler = GpuSampler::new(Some(path));
        let now = Instant::now();
        let report = sampler.sample_at(now);
        let reason = report.unavailable.expect("unavailable");
        assert!(reason.contains("library not found") && reason.contains("/nonexistent/llmops-test"), "{reason}");
        assert!(report.devices.is_empty());
        assert_eq!(sampler.sample_at(now + Duration::from_secs(4)).unavailable, Some(reason));
        assert_eq!(sampler.init_retry.as_ref().map(|retry| retry.failures), Some(1), "no retry within 5 s");
        sampler.sample_at(now + Duration::from_secs(5));
        assert_eq!(sampler.init_retry.as_ref().map(|retry| retry.failures), Some(2));
    }

    #[test]
    fn the_sampler_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<GpuSampler>();
    }
}
