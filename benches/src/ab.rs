//! A/B load between two daemons in front of the same upstream: closed-loop cells (mode × concurrency) where
//! A and B take turns in short windows (A, B, then B, A, …) so drift of the machine hits both; throughput,
//! latency and each daemon's CPU time per request.
use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context};
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};

use crate::load::{self, CellResult, Mode};
use crate::proc_stat::cpu_ticks;

/// How long and how hard each A/B cell runs (flattened into a bench's own arguments).
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Measured seconds per daemon and cell (mode × concurrency), split over the rounds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Alternating windows per cell: A, B, then B, A, … (`seconds / rounds` each).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Unmeasured warm-up seconds per daemon before each cell.
    #[arg(long, default_value_t = 1)]
    pub warmup_seconds: u64,
    /// Concurrency levels (closed-loop workers).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub concurrency: Vec<usize>,
}

impl LoadArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.rounds == 0 || self.concurrency.is_empty() || self.concurrency.contains(&0) {
            bail!("--rounds and --concurrency need positive values");
        }
        Ok(())
    }

    fn plan(&self) -> Plan<'_> {
        Plan {
            seconds: self.seconds,
            rounds: self.rounds,
            warmup_seconds: self.warmup_seconds,
            concurrency: &self.concurrency,
        }
    }

    /// Every cell's windows for both daemons, with room to spare: past it the bench has hung.
    fn time_limit(&self) -> Duration {
        let cells = (2 * self.concurrency.len()) as u64;
        Duration::from_secs(cells * 2 * (self.seconds + self.warmup_seconds + 25) + 60)
    }
}

/// The fake upstream on a runtime and thread of its own (so the load generator does not slow it), and the
/// load generator's runtime.
pub struct Harness {
    upstream_runtime: tokio::runtime::Runtime,
    upstream: Option<FakeUpstream>,
    load_runtime: tokio::runtime::Runtime,
}

impl Harness {
    pub fn start(behavior: Behavior) -> anyhow::Result<Self> {
        let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-upstream")
            .enable_all()
            .build()?;
        let upstream = upstream_runtime.block_on(FakeUpstream::start(behavior))?;
        let load_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        Ok(Self { upstream_runtime, upstream: Some(upstream), load_runtime })
    }

    pub fn upstream(&self) -> anyhow::Result<&FakeUpstream> {
        self.upstream.as_ref().context("the fake upstream is stopped")
    }

    /// Runs `work` on the load runtime until it ends or Ctrl-C.
    pub fn run(&self, work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
        self.load_runtime.block_on(async {
            tokio::select! {
                result = work => result,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            }
        })
    }

    pub fn stop(mut self) {
        drop(self.upstream.take());
        self.upstream_runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// One daemon under load: where to send, with which key, and its process for CPU time.
pub struct Target<'a> {
    pub url: String,
    pub key: Option<&'a str>,
    pub pid: u32,
}

impl Target<'_> {
    /// One window of load.
    pub async fn window(&self, mode: Mode, concurrency: usize, window: Duration) -> anyhow::Result<CellResult> {
        load::run_cell(&self.url, self.key, mode, concurrency, window).await
    }
}

pub struct Cell {
    pub mode: Mode,
    pub concurrency: usize,
    pub a: CellResult,
    pub b: CellResult,
    /// B/A throughput of each round.
    pub round_ratios: Vec<f64>,
    /// CPU time (clock ticks) of A and B from the first measured window to the end of the last, the other's
    /// windows included: work a daemon finishes after its window (trace writes) is its cost too.
    pub cpu_ticks: [u64; 2],
}

/// How long and how often.
struct Plan<'a> {
    pub seconds: u64,
    pub rounds: u32,
    pub warmup_seconds: u64,
    pub concurrency: &'a [usize],
}

/// Every cell, A and B in alternating windows, within the arguments' time limit; returns the cells and how
/// many requests B was sent.
pub async fn measure_all(args: &LoadArgs, a: &Target<'_>, b: &Target<'_>) -> anyhow::Result<(Vec<Cell>, u64)> {
    let limit = args.time_limit();
    tokio::time::timeout(limit, measure_cells(&args.plan(), a, b))
        .await
        .map_err(|_| anyhow::anyhow!("the load did not finish within {limit:?}"))?
}

/// Stops both daemons of a run, saying so when one does not stop cleanly.
pub async fn stop(daemons: [&mut Daemon; 2]) {
    for daemon in daemons {
        daemon.terminate();
        if let Err(e) = daemon.wait_exit(Duration::from_secs(15)).await {
            println!("llmopsd did not stop cleanly: {e:#}");
        }
    }
}

async fn measure_cells(plan: &Plan<'_>, a: &Target<'_>, b: &Target<'_>) -> anyhow::Result<(Vec<Cell>, u64)> {
    let window = Duration::from_secs_f64(plan.seconds as f64 / f64::from(plan.rounds));
    let warmup = Duration::from_secs(plan.warmup_seconds);
    let mut cells = Vec::new();
    let mut sent_b = 0;
    for &concurrency in plan.concurrency {
        for mode in [Mode::Full, Mode::FirstChunk] {
            eprintln!("running {} c={concurrency}: {} rounds of {window:?} each", mode.label(), plan.rounds);
            a.window(mode, concurrency, warmup).await?;
            sent_b += b.window(mode, concurrency, warmup).await?.sent();
            let ticks_before = [cpu_ticks(a.pid)?, cpu_ticks(b.pid)?];
            let (mut parts_a, mut parts_b, mut round_ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..plan.rounds {
                let (part_a, part_b) = if round % 2 == 0 {
                    let part_a = a.window(mode, concurrency, window).await?;
                    (part_a, b.window(mode, concurrency, window).await?)
                } else {
                    let part_b = b.window(mode, concurrency, window).await?;
                    (a.window(mode, concurrency, window).await?, part_b)
                };
                sent_b += part_b.sent();
                round_ratios.push(part_b.throughput() / part_a.throughput().max(f64::EPSILON));
                parts_a.push(part_a);
                parts_b.push(part_b);
            }
            let ticks =
                [cpu_ticks(a.pid)?.saturating_sub(ticks_before[0]), cpu_ticks(b.pid)?.saturating_sub(ticks_before[1])];
            let (a, b) = (merge(parts_a)?, merge(parts_b)?);
            cells.push(Cell { mode, concurrency, a, b, round_ratios, cpu_ticks: ticks });
        }
    }
    Ok((cells, sent_b))
}

fn merge(parts: Vec<CellResult>) -> anyhow::Result<CellResult> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().context("no rounds")?;
    for part in parts {
        total.ok += part.ok;
        total.errors += part.errors;
        total.first_error = total.first_error.or(part.first_error);
        total.latency_micros.add(&part.latency_micros).context("cannot merge histograms")?;
        total.elapsed += part.elapsed;
    }
    Ok(total)
}

/// The cells as a table (`title` says what A and B are), CPU per request, and at c=64 the throughput cost
/// against `target_cost`.
pub fn print_cells(title: &str, cells: &[Cell], ticks_per_sec: f64, target_cost: f64) {
    println!("\n{title} (throughput cost = 1 − B/A)");
    println!(
        "mode                c   A req/s   B req/s     B/A    cost   rounds med [min–max]    A p50    B p50    A p99    B p99 errors"
    );
    for cell in cells {
        let (a, b) = (&cell.a, &cell.b);
        let ratio = b.throughput() / a.throughput().max(f64::EPSILON);
        let mut rounds = cell.round_ratios.clone();
        rounds.sort_by(f64::total_cmp);
        let (min, max) = (rounds.first().copied().unwrap_or(0.0), rounds.last().copied().unwrap_or(0.0));
        let median = rounds.get(rounds.len() / 2).copied().unwrap_or(0.0);
        let (mode, c, cost) = (cell.mode.label(), cell.concurrency, (1.0 - ratio) * 100.0);
        let ms = |r: &CellResult, q: f64| r.quantile_ms(q);
        println!(
            "{mode:<17} {c:>3} {:>9.0} {:>9.0} {ratio:>7.3} {cost:>6.1}% {median:>8.3} [{min:.3}–{max:.3}] {:>8.3} {:>8.3} \
             {:>8.3} {:>8.3} {:>6}",
            a.throughput(),
            b.throughput(),
            ms(a, 0.5),
            ms(b, 0.5),
            ms(a, 0.99),
            ms(b, 0.99),
            a.errors + b.errors
        );
        for (name, result) in [("A", a), ("B", b)] {
            if let Some(error) = &result.first_error {
                println!("    {name} first error: {error}");
            }
        }
    }
    println!("(latency in ms: whole answer non-streaming, first chunk streaming)");
    println!("\nCPU per request of each daemon over the cell, work after its windows included (/proc/PID/stat, {ticks_per_sec} ticks/s):");
    for cell in cells {
        let per_request = |ticks: u64, r: &CellResult| ticks as f64 / ticks_per_sec * 1e6 / r.ok.max(1) as f64;
        let (a, b) = (per_request(cell.cpu_ticks[0], &cell.a), per_request(cell.cpu_ticks[1], &cell.b));
        let (mode, c, ratio) = (cell.mode.label(), cell.concurrency, b / a.max(f64::EPSILON));
        println!("{mode:<17} {c:>3}   A {a:>7.1} µs   B {b:>7.1} µs   B − A {:>+7.1} µs   B/A {ratio:.3}", b - a);
    }
    for cell in cells.iter().filter(|c| c.concurrency == 64) {
        let cost = 1.0 - cell.b.throughput() / cell.a.throughput().max(f64::EPSILON);
        let verdict = if cost < target_cost { "met" } else { "NOT met" };
        let (mode, cost, target) = (cell.mode.label(), cost * 100.0, target_cost * 100.0);
        println!("throughput cost at c=64, {mode}: {cost:.1}% (target < {target:.0}%: {verdict})");
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
