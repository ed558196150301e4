//! The machine and the files a run starts from: the checks and readings both engine benches print first, and
//! the runtime they run on until done or interrupted.
use std::future::Future;
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

/// The llama-server program, the model and, unless only llama-server is measured, llmopsd (the one given, else
/// the one next to this executable or in $LLMOPS_BIN_DIR), each checked to exist.
pub fn programs(
    llama_server: &Path,
    model: &Path,
    daemon: Option<&Path>,
    only_llama_server: bool,
) -> anyhow::Result<(PathBuf, PathBuf, Option<PathBuf>)> {
    let llama_program = existing_file(llama_server, "--llama-server")?;
    let model = existing_file(model, "--model")?;
    let daemon = match (daemon, only_llama_server) {
        (_, true) => None,
        (Some(path), false) => Some(existing_file(path, "--daemon")?),
        (None, false) => Some(llmops_e2e::daemon::binary("llmopsd")?),
    };
    Ok((llama_program, model, daemon))
}

/// Runs `work` on one thread (plenty for a few streams; the cores are the servers') until it ends, Ctrl-C or
/// SIGTERM. Returning drops the running servers, which kills them.
pub fn run_until_signal(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = terminate.recv() => bail!("terminated"),
        }
    })
}
