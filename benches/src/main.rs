//! Gateway overhead: the same closed-loop load sent straight to an instant fake upstream, through
//! `llmopsd`, and through nginx (the one-hop baseline, when `nginx` is on PATH), non-streaming (full
//! latency) and streaming (time to first chunk), at each concurrency. Then checks that llmopsd persisted a
//! trace for every request it proxied. (Before and after, against an older llmopsd build: `before-after`.)
//!
//! The fake upstream runs as a process of its own, and llmopsd and nginx get the same CPU budget (worker
//! threads = worker processes), so neither the load generator nor an unequal budget decides the ratios.
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
use llmops_e2e::upstream_process::UpstreamProcess;
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
    /// The CPU budget of each proxy: llmopsd's server.worker_threads and nginx's worker_processes
    /// (0: one per core).
    #[arg(long, default_value_t = 0)]
    proxy_threads: usize,
    /// Leave nginx out even when it is installed.
    #[arg(long)]
    no_nginx: bool,
    /// Times the whole set of cells is repeated; ratios are the median of the per-round ratios.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

struct Cell {
    round: usize,
    target: &'static str,
    mode: Mode,
    concurrency: usize,
    result: CellResult,
}

/// A proxy whose traces are checked at the end.
struct DaemonTarget {
    name: &'static str,
    daemon: Daemon,
    written_before: Option<u64>,
    _data_dir: tempfile::TempDir,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    if args.rounds == 0 {
        bail!("--rounds needs a positive value");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args))
}

async fn start_daemon(name: &'static str, threads: usize, upstream: &UpstreamProcess) -> anyhow::Result<DaemonTarget> {
    let data_dir = tempfile::tempdir().context("cannot create a data dir for llmopsd")?;
    let config = format!(
        "[server]\nworker_threads = {threads}\n\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url
    );
    let daemon = Daemon::start(&config, data_dir.path()).await.with_context(|| format!("cannot start {name}"))?;
    let written_before = store_counts(&daemon).await.ok().map(|counts| counts.written);
    Ok(DaemonTarget { name, daemon, written_before, _data_dir: data_dir })
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("warning: debug build; numbers are only meaningful with --release");
    }
    let upstream = UpstreamProcess::start(&["--reply-words", &args.reply_words.to_string()]).await?;
    let threads = match args.proxy_threads {
        0 => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        n => n,
    };
    println!("CPU budget per proxy: {threads} (llmopsd worker_threads, nginx worker_processes)");
    let daemons = vec![start_daemon("llmopsd", threads, &upstream).await?];
    let nginx = match (args.no_nginx, nginx::find_on_path()) {
        (true, _) => {
            println!("nginx: skipped (--no-nginx)");
            None
        }
        (false, None) => {
            println!("nginx: skipped (not on PATH)");
            None
        }
        (false, Some(program)) => Some(nginx::Nginx::start(&program, upstream.addr, threads).await?),
    };

    let mut targets = vec![("direct", upstream.base_url.clone())];
    for target in &daemons {
        targets.push((target.name, format!("{}/v1", target.daemon.http_base)));
    }
    if let Some(nginx) = &nginx {
        targets.push(("nginx", nginx.base_url.clone()));
    }
    let cells_count = (args.rounds * targets.len() * 2 * args.concurrency.len()) as u64;
    // Each cell may overrun by one request timeout; the rest covers start-up and the trace check.
    let budget = Duration::from_secs(cells_count * (args.seconds + args.warmup_seconds + 10) + 60);
    let measured = tokio::time::timeout(budget, measure_all(args, &targets)).await;
    let (cells, sent) = match measured {
        Ok(result) => result?,
        Err(_) => bail!("the load did not finish within {budget:?}"),
    };

    print_table(&cells, args.rounds);
    print_comparisons(&cells, args);
    let mut persisted = Ok(());
    for target in &daemons {
        let sent = sent.iter().find(|(name, _)| *name == target.name).map_or(0, |(_, n)| *n);
        let outcome = report_persistence(target, sent).await;
        persisted = persisted.and(outcome);
    }

    if let Some(nginx) = nginx {
        nginx.stop().await;
    }
    for mut target in daemons {
        target.daemon.terminate();
        if let Err(e) = target.daemon.wait_exit(Duration::from_secs(15)).await {
            println!("{} did not stop cleanly: {e:#}", target.name);
        }
    }
    persisted
}

/// Runs every cell `rounds` times, interleaving targets so slow drift of the machine hits them alike;
/// returns the cells and how many requests (warm-up included) went to each target.
async fn measure_all(
    args: &Args,
    targets: &[(&'static str, String)],
) -> anyhow::Result<(Vec<Cell>, Vec<(&'static str, u64)>)> {
    let mut cells = Vec::new();
    let mut sent: Vec<(&'static str, u64)> = targets.iter().map(|(name, _)| (*name, 0)).collect();
    for round in 0..args.rounds {
        for &concurrency in &args.concurrency {
            for mode in [Mode::Full, Mode::FirstChunk] {
                // Every other round runs the targets in reverse, so none always follows the same one (a
                // proxy still writing the last cell's traces slows whichever runs next).
                let order: Vec<usize> =
                    if round % 2 == 0 { (0..targets.len()).collect() } else { (0..targets.len()).rev().collect() };
                for index in order {
                    let (target, base_url) = &targets[index];
                    let url = format!("{base_url}/chat/completions");
                    eprintln!("round {} running {target} {} c={concurrency}", round + 1, mode.label());
                    let warmup = Duration::from_secs(args.warmup_seconds);
                    let warmup = load::run_cell(&url, None, mode, concurrency, warmup).await?;
                    let measured = Duration::from_secs(args.seconds);
                    let result = load::run_cell(&url, None, mode, concurrency, measured).await?;
                    sent[index].1 += warmup.sent() + result.sent();
                    cells.push(Cell { round, target, mode, concurrency, result });
                }
            }
        }
    }
    Ok((cells, sent))
}

fn print_table(cells: &[Cell], rounds: usize) {
    println!();
    println!(
        "{:<5} {:<8} {:<17} {:>4} {:>9} {:>7} {:>9} {:>9} {:>10}",
        "round", "target", "mode", "c", "requests", "errors", "p50 ms", "p99 ms", "req/s"
    );
    for cell in cells {
        let r = &cell.result;
        println!(
            "{:<5} {:<8} {:<17} {:>4} {:>9} {:>7} {:>9.3} {:>9.3} {:>10.0}",
            format!("{}/{rounds}", cell.round + 1),
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

fn find<'a>(cells: &'a [Cell], round: usize, target: &str, mode: Mode, concurrency: usize) -> Option<&'a CellResult> {
    cells
        .iter()
        .find(|c| c.round == round && c.target == target && c.mode == mode && c.concurrency == concurrency)
        .map(|c| &c.result)
}

/// The median of `value(a, b)` over the rounds that measured both targets in this mode and concurrency.
fn median_over_rounds(
    cells: &[Cell],
    rounds: usize,
    (a, b): (&str, &str),
    mode: Mode,
    concurrency: usize,
    value: impl Fn(&CellResult, &CellResult) -> f64,
) -> Option<f64> {
    let mut values: Vec<f64> = (0..rounds)
        .filter_map(|round| {
            Some(value(find(cells, round, a, mode, concurrency)?, find(cells, round, b, mode, concurrency)?))
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[middle - 1] + values[middle]) / 2.0 } else { values[middle] })
}

fn print_comparisons(cells: &[Cell], args: &Args) {
    let lowest = args.concurrency.iter().copied().min().unwrap_or(1);
    let rounds = args.rounds;
    let of_rounds = if rounds > 1 { format!(" (median of {rounds} rounds)") } else { String::new() };
    for mode in [Mode::Full, Mode::FirstChunk] {
        let pair = ("llmopsd", "direct");
        let p50 = median_over_rounds(cells, rounds, pair, mode, lowest, |d, u| d.quantile_ms(0.5) - u.quantile_ms(0.5));
        let p99 =
            median_over_rounds(cells, rounds, pair, mode, lowest, |d, u| d.quantile_ms(0.99) - u.quantile_ms(0.99));
        if let (Some(p50), Some(p99)) = (p50, p99) {
            println!("llmopsd adds at c={lowest}, {}: p50 {p50:+.3} ms, p99 {p99:+.3} ms{of_rounds}", mode.label());
        }
    }
    let throughput_ratio = |d: &CellResult, other: &CellResult| d.throughput() / other.throughput().max(f64::EPSILON);
    for &concurrency in &args.concurrency {
        for mode in [Mode::Full, Mode::FirstChunk] {
            let ratio = median_over_rounds(cells, rounds, ("llmopsd", "nginx"), mode, concurrency, throughput_ratio);
            match ratio {
                Some(ratio) => {
                    println!("throughput llmopsd / nginx at c={concurrency}, {}: {ratio:.3}{of_rounds}", mode.label())
                }
                None => println!("throughput llmopsd / nginx at c={concurrency}, {}: n/a", mode.label()),
            }
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

/// Waits until a daemon's written-trace count stops growing, then says whether every request it proxied
/// was persisted; an error when one was not.
async fn report_persistence(target: &DaemonTarget, sent: u64) -> anyhow::Result<()> {
    let (name, daemon) = (target.name, &target.daemon);
    let Some(before) = target.written_before else {
        println!("{name} traces: cannot read `llmopsctl --json status` store.written; persistence not checked");
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
    println!("{name} traces: {written} written for {sent} requests, {} dropped", last.dropped);
    if written < sent || last.dropped > 0 {
        bail!("{name} did not persist every request: {written} of {sent} written, {} dropped", last.dropped);
    }
    println!("{name} traces: every request was persisted");
    Ok(())
}
