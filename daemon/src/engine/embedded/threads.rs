//! How many threads llama.cpp decodes with when the config says 0: one per physical core the process may run
//! on, minus one, at least one.
//!
//! llama.cpp's thread pool spins and synchronises at every layer, so a thread that loses its core stalls all
//! of them. Measured on a 2-core host (SmolLM2-135M Q4_1, greedy, 200 tokens, median of 3): idle, 2 threads
//! decoded 85-100 tok/s and 1 thread 60-62; with one core busy (`yes > /dev/null`), 2 threads fell to 26 tok/s
//! while 1 thread held 66. Leaving a core to the rest of the host (the daemon's own HTTP and trace work
//! included) costs about a third at idle and avoids a 2.5x collapse under load. Hyperthread siblings add
//! little to memory-bound decoding, hence physical cores.
use std::collections::HashSet;

pub fn resolve(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let allowed = std::thread::available_parallelism().map_or(1, usize::from);
    let cores = physical_cores().map_or(allowed, |physical| physical.min(allowed));
    cores.saturating_sub(1).max(1)
}

/// Distinct (package, core) pairs in /proc/cpuinfo; None where that file says nothing useful.
fn physical_cores() -> Option<usize> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = HashSet::new();
    let mut package = None;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "physical id" => package = Some(value.trim().to_string()),
            "core id" => {
                cores.insert((package.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_configured_count_wins_and_the_default_is_at_least_one() {
        assert_eq!(super::resolve(3), 3);
        assert!(super::resolve(0) >= 1);
    }
}
