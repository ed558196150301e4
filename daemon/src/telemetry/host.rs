//! The host through `sysinfo`: CPU, memory, load, and CPU/RSS of the daemon and each engine process.
use super::model::{HostSample, ProcessSample};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The name the daemon's own process is reported under (it runs the embedded engines).
pub const DAEMON_PROCESS: &str = "llmopsd";

pub struct HostSampler {
    /// `None` when sysinfo cannot read this platform; the sample then carries only what needs no state.
    system: Option<System>,
    hostname: String,
    own_pid: u32,
}

impl HostSampler {
    pub fn new() -> Self {
        let system =
            System::new().inspect_err(|error| tracing::warn!(%error, "host metrics unavailable (sysinfo)")).ok();
        let hostname = System::host_name().unwrap_or_default();
        Self { system, hostname, own_pid: std::process::id() }
    }

    /// One sample; `engines` are (engine name, PID) of processes the daemon launched. CPU shares are over
    /// the time since the previous call (the first call reports 0).
    pub fn sample(&mut self, engines: &[(String, u32)]) -> HostSample {
        let load = System::load_average().ok();
        let mut sample = HostSample {
            hostname: self.hostname.clone(),
            load_1m: load.as_ref().map_or(0.0, |l| l.one),
            load_5m: load.as_ref().map_or(0.0, |l| l.five),
            load_15m: load.as_ref().map_or(0.0, |l| l.fifteen),
            ..HostSample::default()
        };
        let Some(system) = self.system.as_mut() else { return sample };
        system.refresh_cpu_usage();
        system.refresh_memory();
        sample.cpu_count = system.cpus().len() as u32;
        sample.cpu_percent = f64::from(system.global_cpu_usage());
        sample.memory_total_bytes = system.total_memory();
        sample.memory_used_bytes = system.used_memory();

        let watched: Vec<(&str, u32)> = std::iter::once((DAEMON_PROCESS, self.own_pid))
            .chain(engines.iter().map(|(name, pid)| (name.as_str(), *pid)))
            .collect();
        let pids: Vec<Pid> = watched.iter().map(|(_, pid)| Pid::from_u32(*pid)).collect();
        // Only the processes we report on: refreshing all of /proc every second would cost more than the rest.
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        sample.processes = watched
            .into_iter()
            .filter_map(|(name, pid)| {
                let process = system.process(Pid::from_u32(pid))?;
                Some(ProcessSample {
                    name: name.to_string(),
                    pid,
                    cpu_percent: f64::from(process.cpu_usage()),
                    rss_bytes: process.memory(),
                })
            })
            .collect();
        sample
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_the_host_and_its_own_process() {
        let mut sampler = HostSampler::new();
        let sample = sampler.sample(&[("ghost".into(), u32::MAX - 1)]);
        assert!(sample.cpu_count >= 1);
        assert!(sample.memory_total_bytes > 0 && sample.memory_used_bytes <= sample.memory_total_bytes);
        let own = sample.processes.iter().find(|p| p.name == DAEMON_PROCESS).expect("own process");
        assert_eq!(own.pid, std::process::id());
        assert!(own.rss_bytes > 0);
        // A PID that does not exist is left out rather than reported as zeros.
        assert!(sample.processes.iter().all(|p| p.name != "ghost"));
    }
}
