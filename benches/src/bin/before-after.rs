//! Before and after: an older `llmopsd` build (A, `--baseline PATH`) against this one (B), the same plain
//! config (one openai engine in front of an instant fake upstream, `server.worker_threads` = cores), both
//! running at once. Non-streaming and streaming at each concurrency; A and B take turns in `--rounds` short
//! windows (A, B, then B, A, …) so drift of the machine hits both. Reports requests/s, the throughput cost
//! 1 − B/A with the median and range of the per-round ratios, p50/p99, and each daemon's CPU time per request
//! (the steadier figure on a shared machine: it does not depend on who else had the cores in a window).
//!
//! ```text
//! git worktree add /tmp/llmops-old OLD_COMMIT
//! (cd /tmp/llmops-old && cargo build --release -p llmopsd --bin llmopsd --target-dir /tmp/llmops-old-target)
//! cargo build --release --workspace --bins
//! target/release/before-after --baseline /tmp/llmops-old-target/release/llmopsd --seconds 30 --rounds 15
//! ```
#[path = "../ab.rs"]
mod ab;
#[path = "../load.rs"]
mod load;
#[path = "../proc_stat.rs"]
mod proc_stat;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use llmops_e2e::daemon::{binary, Daemon, StartOptions};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};

use ab::{load_average, Harness, LoadArgs, Target};
use proc_stat::clock_ticks;

#[derive(Debug, Parser)]
#[command(about = "Throughput, latency and CPU per request of this llmopsd against an older build, in one run")]
struct Args {
    /// The older llmopsd executable (A).
    #[arg(long, value_name = "PATH")]
    baseline: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    /// Words in every fake reply (16 chunks per stream).
    #[arg(long, default_value_t = 16)]
    reply_words: usize,
    /// Each daemon's server.worker_threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The hardening issue's bound: this build may cost at most this share of the older one's throughput.
const TARGET_COST: f64 = 0.05;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.load.validate()?;
    if !args.baseline.is_file() {
        bail!("--baseline {} is not a file", args.baseline.display());
    }
    let harness = Harness::start(Behavior { reply_words: Some(args.reply_words), ..Behavior::default() })?;
    let outcome = harness.run(run(&args, harness.upstream()?));
    harness.stop();
    outcome
}

async fn run(args: &Args, upstream: &FakeUpstream) -> anyhow::Result<()> {
    let current = binary("llmopsd")?;
    println!("A (before): {}", args.baseline.display());
    println!("B (after):  {}", current.display());
    if cfg!(debug_assertions) {
        println!("warning: this load generator is a debug build; build it with --release");
    }
    println!("load average (1 min) before: {}", load_average());
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        n => n,
    };
    let config = format!(
        "[server]\nworker_threads = {threads}\n\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let work = tempfile::tempdir().context("cannot create a work directory")?;
    let (dir_a, dir_b) = (work.path().join("a"), work.path().join("b"));
    let (before, after) =
        (StartOptions { program: Some(args.baseline.clone()), ..StartOptions::default() }, StartOptions::default());
    let (mut a, mut b) =
        tokio::try_join!(Daemon::start_with(&config, &dir_a, &before), Daemon::start_with(&config, &dir_b, &after))?;
    let pid = |daemon: &Daemon| daemon.pid().context("llmopsd exited");
    let url = "/v1/chat/completions";
    let target_a = Target { url: a.url(url), key: None, pid: pid(&a)? };
    let target_b = Target { url: b.url(url), key: None, pid: pid(&b)? };

    let (cells, _) = ab::measure_all(&args.load, &target_a, &target_b).await?;
    let title =
        format!("A: before ({}); B: after (this build); {threads} worker threads each", args.baseline.display());
    ab::print_cells(&title, &cells, clock_ticks()?, TARGET_COST);
    println!("load average (1 min) after: {}", load_average());
    ab::stop([&mut a, &mut b]).await;
    Ok(())
}
