//! Gateway overhead: the same closed-loop load sent straight to an instant fake upstream, through
//! `llmopsd`, and through nginx (the one-hop baseline, when `nginx` is on PATH), non-streaming (full
//! latency) and streaming (time to first chunk), at each concurrency. Then checks that llmopsd persisted
//! a trace for every request it proxied.
//!
//! Build release binaries first (the daemon is looked up next to this executable), then run:
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p llmops-bench -- --seconds 10
//! ```
//!
//! Every step is bounded in time; the run stops by itself.
mod load;
mod nginx;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use serde_json::Value;

use load::{CellResult, Mode};

/// How long llmopsd may keep writing traces after the load before the count is final.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(60);
/// The written count is final once it has not moved for this long.
const PERSIST_SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(about = "Latency and throughput added by llmopsd, against direct access and nginx")]
struct Args {
    /// Measured seconds per cell (target × mode × concurrency).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured warm-up seconds before each cell.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Concurrency levels (closed-loop workers).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Words in every fake reply (16 chunks per stream).
    #[arg(long, default_value_t = 16)]
    reply_words: usize,
    /// llmopsd's server.worker_threads (0: one per core; nginx runs one worker process).
    #[arg(long, default_value_t = 0)]
    daemon_threads: usize,
    /// Leave nginx out even when it is installed.
    #[arg(long)]
    no_nginx: bool,
}

struct Cell {
    target: &'static str,
    mode: Mode,
    concurrency: usize,
    result: CellResult,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    // The fake upstream gets a runtime and thread of its own, so the load generator does not slow it.
    let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-upstream")
        .enable_all()
        .build()?;
    let behavior = Behavior { reply_words: Some(args.reply_words), ..Behavior::default() };
    let upstream = upstream_runtime.block_on(FakeUpstream::start(behavior))?;
    let load_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = load_runtime.block_on(run(&args, &upstream));
    drop(upstream);
    upstream_runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

async fn run(args: &Args, upstream: &FakeUpstream) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("warning: debug build; numbers are only meaningful with --release");
    }
    let data_dir = tempfile::tempdir().context("cannot create a data dir for llmopsd")?;
    let config = format!(
        "[server]\nworker_threads = {}\n\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        args.daemon_threads,
        upstream.base_url()
    );
    let mut daemon = Daemon::start(&config, data_dir.path()).await?;
    let nginx = match (args.no_nginx, nginx::find_on_path()) {
        (true, _) => {
            println!("nginx: skipped (--no-nginx)");
            None
        }
        (false, None) => {
            println!("nginx: skipped (not on PATH)");
            None
        }
        (false, Some(program)) => Some(nginx::Nginx::start(&program, upstream.addr).await?),
    };
    let written_before = store_counts(&daemon).await.ok().map(|counts| counts.written);

    let mut targets = vec![("direct", upstream.base_url()), ("llmopsd", format!("{}/v1", daemon.http_base))];
    if let Some(nginx) = &nginx {
        targets.push(("nginx", nginx.base_url.clone()));
    }
    let cells_count = (targets.len() * 2 * args.concurrency.len()) as u64;
    // Each cell may overrun by one request timeout; the rest covers start-up and the trace check.
    let budget = Duration::from_secs(cells_count * (args.seconds + args.warmup_seconds + 10) + 60);
    let measured = tokio::time::timeout(budget, measure_all(args, &targets)).await;
    let (cells, sent_to_daemon) = match measured {
        Ok(result) => result?,
        Err(_) => bail!("the load did not finish within {budget:?}"),
    };

    print_table(&cells);
    print_comparisons(&cells, args);
    let persisted = report_persistence(&daemon, written_before, sent_to_daemon).await;

    if let Some(nginx) = nginx {
        nginx.stop().await;
    }
    daemon.terminate();
    if let Err(e) = daemon.wait_exit(Duration::from_secs(15)).await {
        println!("llmopsd did not stop cleanly: {e:#}");
    }
    persisted
}

/// Runs every cell, interleaving targets so slow drift of the machine hits them alike; returns the
/// cells and how many requests (warm-up included) went to llmopsd.
async fn measure_all(args: &Args, targets: &[(&'static str, String)]) -> anyhow::Result<(Vec<Cell>, u64)> {
    let mut cells = Vec::new();
    let mut sent_to_daemon = 0;
    for &concurrency in &args.concurrency {
        for mode in [Mode::Full, Mode::FirstChunk] {
            for (target, base_url) in targets {
                let url = format!("{base_url}/chat/completions");
                eprintln!("running {target} {} c={concurrency}", mode.label());
                let warmup =
                    load::run_cell(&url, None, mode, concurrency, Duration::from_secs(args.warmup_seconds)).await?;
                let result = load::run_cell(&url, None, mode, concurrency, Duration::from_secs(args.seconds)).await?;
                if *target == "llmopsd" {
                    sent_to_daemon += warmup.sent() + result.sent();
                }
                cells.push(Cell { target, mode, concurrency, result });
            }
        }
    }
    Ok((cells, sent_to_daemon))
}

fn print_table(cells: &[Cell]) {
    println!();
    println!(
        "{:<8} {:<17} {:>4} {:>9} {:>7} {:>9} {:>9} {:>10}",
        "target", "mode", "c", "requests", "errors", "p50 ms", "p99 ms", "req/s"
    );
    for cell in cells {
        let r = &cell.result;
        println!(
            "{:<8} {:<17} {:>4} {:>9} {:>7} {:>9.3} {:>9.3} {:>10.0}",
            cell.target,
            cell.mode.label(),
            cell.concurrency,
            r.ok,
            r.errors,
            r.quantile_ms(0.5),
            r.quantile_ms(0.99),
            r.throughput()
        );
        if let Some(error) = &r.first_error {
            println!("         first error: {error}");
        }
    }
    println!();
}

fn find<'a>(cells: &'a [Cell], target: &str, mode: Mode, concurrency: usize) -> Option<&'a CellResult> {
    cells.iter().find(|c| c.target == target && c.mode == mode && c.concurrency == concurrency).map(|c| &c.result)
}

fn print_comparisons(cells: &[Cell], args: &Args) {
    let lowest = args.concurrency.iter().copied().min().unwrap_or(1);
    let highest = args.concurrency.iter().copied().max().unwrap_or(1);
    for mode in [Mode::Full, Mode::FirstChunk] {
        if let (Some(direct), Some(daemon)) =
            (find(cells, "direct", mode, lowest), find(cells, "llmopsd", mode, lowest))
        {
            println!(
                "llmopsd adds at c={lowest}, {}: p50 {:+.3} ms, p99 {:+.3} ms",
                mode.label(),
                daemon.quantile_ms(0.5) - direct.quantile_ms(0.5),
                daemon.quantile_ms(0.99) - direct.quantile_ms(0.99)
            );
        }
    }
    for mode in [Mode::Full, Mode::FirstChunk] {
        match (find(cells, "llmopsd", mode, highest), find(cells, "nginx", mode, highest)) {
            (Some(daemon), Some(nginx)) => println!(
                "throughput llmopsd / nginx at c={highest}, {}: {:.2}",
                mode.label(),
                daemon.throughput() / nginx.throughput().max(f64::EPSILON)
            ),
            _ => println!("throughput llmopsd / nginx at c={highest}, {}: n/a (no nginx)", mode.label()),
        }
    }
}

struct StoreCounts {
    written: u64,
    dropped: u64,
}

/// A counter from `llmopsctl --json status`; protobuf's JSON mapping may print 64-bit integers as strings.
fn json_counter(status: &Value, pointer: &str) -> Option<u64> {
    match status.pointer(pointer)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn store_counts(daemon: &Daemon) -> anyhow::Result<StoreCounts> {
    let output = daemon.llmopsctl_async(&["--json", "status"]).await?;
    if !output.status.success() {
        bail!("llmopsctl status failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let status: Value = serde_json::from_slice(&output.stdout).context("llmopsctl status --json printed no JSON")?;
    let written = json_counter(&status, "/store/written").context("no store.written in status")?;
    let dropped = json_counter(&status, "/store/dropped").unwrap_or(0);
    Ok(StoreCounts { written, dropped })
}

/// Waits until llmopsd's written-trace count stops growing, then says whether every request it proxied
/// was persisted; an error when one was not.
async fn report_persistence(daemon: &Daemon, written_before: Option<u64>, sent: u64) -> anyhow::Result<()> {
    let Some(before) = written_before else {
        println!("traces: cannot read `llmopsctl --json status` store.written; persistence not checked");
        return Ok(());
    };
    let deadline = Instant::now() + PERSIST_TIMEOUT;
    let mut last = store_counts(daemon).await?;
    let mut last_change = Instant::now();
    while Instant::now() < deadline && last_change.elapsed() < PERSIST_SETTLE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = store_counts(daemon).await?;
        if counts.written != last.written {
            last_change = Instant::now();
        }
        let done = counts.written.saturating_sub(before) >= sent;
        last = counts;
        if done {
            break;
        }
    }
    let written = last.written.saturating_sub(before);
    println!("traces: {written} written for {sent} requests to llmopsd, {} dropped", last.dropped);
    if written < sent || last.dropped > 0 {
        bail!("llmopsd did not persist every request: {written} of {sent} written, {} dropped", last.dropped);
    }
    println!("traces: every request was persisted");
    Ok(())
}
