//! The machine and the files a run starts from: the checks and readings both engine benches print first.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// `path` made absolute, when it names an existing file.
pub fn existing_file(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let path = path.canonicalize().with_context(|| format!("{what} {} not found", path.display()))?;
    if !path.is_file() {
        bail!("{what} {} is not a file", path.display());
    }
    Ok(path)
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Prints the load average before a run, with a warning when the machine is not idle.
pub fn print_load_before() {
    let before = load_average();
    println!("load average (1 min) before: {before}");
    if before.parse::<f64>().is_ok_and(|load| load >= 0.5) {
        println!("warning: the machine is not idle (a cargo build?); the numbers will be skewed");
    }
}

pub fn cores() -> String {
    std::thread::available_parallelism().map_or_else(|_| "unknown".into(), |n| n.to_string())
}
