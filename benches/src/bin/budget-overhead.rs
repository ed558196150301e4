//! Budget overhead: the same closed-loop load through two llmopsd at once in front of one instant fake
//! upstream. A is plain (one openai engine, no keys, no rate limits, no budgets); B is guarded (the same
//! engine with a price, a required API key from the config, per-key rate limits too high to trigger, and six
//! budgets that match every request and never run out). Non-streaming and streaming, at each concurrency;
//! A and B take turns in `--rounds` short windows so drift of the machine hits both; reports requests/s,
//! the throughput cost 1 − B/A, p50/p99 and each daemon's CPU time per request. Then checks over gRPC that
//! B's budgets counted every request it was sent.
//!
//! ```text
//! cargo build --release -p llmopsd -p llmops-e2e --bins && cargo build --release -p llmops-bench
//! target/release/budget-overhead --seconds 10
//! ```
#[path = "../load.rs"]
mod load;
#[path = "../proc_stat.rs"]
mod proc_stat;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use llmops_e2e::daemon::{binary, wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::budget_service_client::BudgetServiceClient;
use tokio::io::AsyncWriteExt;

use load::{CellResult, Mode};
use proc_stat::{clock_ticks, cpu_ticks};

#[derive(Debug, Parser)]
#[command(about = "Throughput and latency cost of API keys, rate limits and budgets in llmopsd")]
struct Args {
    /// Measured seconds per daemon and cell (mode × concurrency), split over the rounds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Alternating windows per cell: A, B, then B, A, … (`seconds / rounds` each).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Unmeasured warm-up seconds per daemon before each cell.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Concurrency levels (closed-loop workers).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Words in every fake reply (16 chunks per stream).
    #[arg(long, default_value_t = 16)]
    reply_words: usize,
}

/// The issue's target: budgets and routing cost less than this share of throughput at 64 clients.
const TARGET_COST: f64 = 0.05;
const TENANT: &str = "bench";

/// Never trigger: rate limits and budget limits far above anything a run can reach.
const GUARDS: &str = "[rate_limits]\nrequests_per_min = 10000000\ntokens_per_min = 1000000000\n\
[[budgets]]\nname = \"global-usd-day\"\nscope = \"global\"\nwindow = \"day\"\nlimit_usd = 1000000000.0\naction = \"reject\"\n\
[[budgets]]\nname = \"tenant-tokens-hour\"\nscope = \"tenant:bench\"\nwindow = \"hour\"\nlimit_tokens = 1000000000000\naction = \"reject\"\n\
[[budgets]]\nname = \"route-requests-minute\"\nscope = \"route:fake-model\"\nwindow = \"minute\"\nlimit_requests = 1000000000\naction = \"reject\"\n\
[[budgets]]\nname = \"model-usd-month\"\nscope = \"model:fake-model\"\nwindow = \"month\"\nlimit_usd = 1000000000.0\naction = \"downgrade\"\n\
[[budgets]]\nname = \"concurrent\"\nscope = \"global\"\nlimit_concurrent = 1000\naction = \"reject\"\n\
[[budgets]]\nname = \"alert-requests-day\"\nscope = \"global\"\nwindow = \"day\"\nlimit_requests = 1000000000000\naction = \"alert\"\n";

struct Cell {
    mode: Mode,
    concurrency: usize,
    a: CellResult,
    b: CellResult,
    /// B/A throughput of each round.
    round_ratios: Vec<f64>,
    /// CPU time (clock ticks) of A and B over their own measured windows.
    cpu_ticks: [u64; 2],
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seconds == 0 || args.rounds == 0 || args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--seconds, --rounds and --concurrency need positive values");
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
    let outcome = load_runtime.block_on(async {
        tokio::select! {
            result = run(&args, &upstream) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    drop(upstream);
    upstream_runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

async fn run(args: &Args, upstream: &FakeUpstream) -> anyhow::Result<()> {
    let program = binary("llmopsd")?;
    let profile = ["debug", "release"]
        .into_iter()
        .find(|p| program.components().any(|c| c.as_os_str() == *p))
        .unwrap_or("unknown");
    println!("llmopsd: {} ({profile} build; numbers only mean something from --release)", program.display());
    if cfg!(debug_assertions) {
        println!("warning: this load generator is a debug build too");
    }
    println!("load average (1 min) before: {}", load_average());

    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let key = format!("llmops-bench-{}-{unique}", std::process::id());
    let sha256 = hash_key(&program, &key).await?;
    let engine = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let config_a = engine.clone();
    let config_b = format!(
        "[auth]\nmode = \"required\"\n[[auth.keys]]\ntenant = \"{TENANT}\"\nname = \"budget-overhead\"\n\
         sha256 = \"{sha256}\"\n{GUARDS}{engine}price = {{ input = 2.5, output = 10.0 }}\n"
    );
    let work = tempfile::tempdir().context("cannot create a work directory")?;
    let (dir_a, dir_b) = (work.path().join("a"), work.path().join("b"));
    let (mut a, mut b) = tokio::try_join!(Daemon::start(&config_a, &dir_a), Daemon::start(&config_b, &dir_b))?;
    let pid = |daemon: &Daemon| daemon.pid().context("llmopsd exited");
    let url = "/v1/chat/completions";
    let target_a = Target { url: a.url(url), key: None, pid: pid(&a)? };
    let target_b = Target { url: b.url(url), key: Some(&key), pid: pid(&b)? };

    // B must refuse a request without the key, or it is not guarded.
    let body = serde_json::json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let unkeyed = http.post(&target_b.url).json(&body).send().await.context("POST to B without a key")?.status();
    if unkeyed != reqwest::StatusCode::UNAUTHORIZED {
        bail!("B answered {unkeyed} to a request without an API key, not 401");
    }
    let run_started_ms = unix_ms();
    let cells_count = (2 * args.concurrency.len()) as u64;
    let limit = Duration::from_secs(cells_count * 2 * (args.seconds + args.warmup_seconds + 25) + 60);
    let (cells, sent_b) = tokio::time::timeout(limit, measure_all(args, &target_a, &target_b))
        .await
        .map_err(|_| anyhow::anyhow!("the load did not finish within {limit:?}"))??;
    print_cells(&cells, clock_ticks()?);
    println!("load average (1 min) after: {}", load_average());
    let checked = check_budgets(&b, sent_b, run_started_ms).await;
    for daemon in [&mut a, &mut b] {
        daemon.terminate();
        if let Err(e) = daemon.wait_exit(Duration::from_secs(15)).await {
            println!("llmopsd did not stop cleanly: {e:#}");
        }
    }
    checked
}

/// One daemon under load: where to send, with which key, and its process for CPU time.
struct Target<'a> {
    url: String,
    key: Option<&'a str>,
    pid: u32,
}

impl Target<'_> {
    /// One window of load, with the daemon's CPU ticks over it.
    async fn window(&self, mode: Mode, concurrency: usize, window: Duration) -> anyhow::Result<(CellResult, u64)> {
        let before = cpu_ticks(self.pid)?;
        let result = load::run_cell(&self.url, self.key, mode, concurrency, window).await?;
        Ok((result, cpu_ticks(self.pid)?.saturating_sub(before)))
    }
}

/// Every cell, A and B in alternating windows; returns the cells and how many requests B was sent.
async fn measure_all(args: &Args, a: &Target<'_>, b: &Target<'_>) -> anyhow::Result<(Vec<Cell>, u64)> {
    let window = Duration::from_secs_f64(args.seconds as f64 / f64::from(args.rounds));
    let warmup = Duration::from_secs(args.warmup_seconds);
    let mut cells = Vec::new();
    let mut sent_b = 0;
    for &concurrency in &args.concurrency {
        for mode in [Mode::Full, Mode::FirstChunk] {
            eprintln!("running {} c={concurrency}: {} rounds of {window:?} each", mode.label(), args.rounds);
            a.window(mode, concurrency, warmup).await?;
            sent_b += b.window(mode, concurrency, warmup).await?.0.sent();
            let (mut parts_a, mut parts_b, mut round_ratios, mut ticks) = (Vec::new(), Vec::new(), Vec::new(), [0; 2]);
            for round in 0..args.rounds {
                let ((part_a, ticks_a), (part_b, ticks_b)) = if round % 2 == 0 {
                    let part_a = a.window(mode, concurrency, window).await?;
                    (part_a, b.window(mode, concurrency, window).await?)
                } else {
                    let part_b = b.window(mode, concurrency, window).await?;
                    (a.window(mode, concurrency, window).await?, part_b)
                };
                sent_b += part_b.sent();
                round_ratios.push(part_b.throughput() / part_a.throughput().max(f64::EPSILON));
                ticks = [ticks[0] + ticks_a, ticks[1] + ticks_b];
                parts_a.push(part_a);
                parts_b.push(part_b);
            }
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

fn print_cells(cells: &[Cell], ticks_per_sec: f64) {
    println!("\nA: plain; B: API key + rate limits + 6 budgets + price (throughput cost = 1 − B/A)");
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
    println!("\nCPU per request of each daemon over its own windows (/proc/PID/stat, {ticks_per_sec} ticks/s):");
    for cell in cells {
        let per_request = |ticks: u64, r: &CellResult| ticks as f64 / ticks_per_sec * 1e6 / r.ok.max(1) as f64;
        let (a, b) = (per_request(cell.cpu_ticks[0], &cell.a), per_request(cell.cpu_ticks[1], &cell.b));
        let (mode, c, ratio) = (cell.mode.label(), cell.concurrency, b / a.max(f64::EPSILON));
        println!("{mode:<17} {c:>3}   A {a:>7.1} µs   B {b:>7.1} µs   B − A {:>+7.1} µs   B/A {ratio:.3}", b - a);
    }
    for cell in cells.iter().filter(|c| c.concurrency == 64) {
        let cost = 1.0 - cell.b.throughput() / cell.a.throughput().max(f64::EPSILON);
        let verdict = if cost < TARGET_COST { "met" } else { "NOT met" };
        let (mode, cost, target) = (cell.mode.label(), cost * 100.0, TARGET_COST * 100.0);
        println!("throughput cost at c=64, {mode}: {cost:.1}% (target < {target:.0}%: {verdict})");
    }
}

/// Waits until B's budgets have settled every request (nothing in flight), prints them, and checks that each
/// windowed budget whose window began before the run counted exactly the `sent` requests.
async fn check_budgets(daemon: &Daemon, sent: u64, run_started_ms: i64) -> anyhow::Result<()> {
    let client = BudgetServiceClient::new(daemon.grpc_channel().await?);
    let list = || {
        let mut client = client.clone();
        async move {
            let response = client.list_budgets(pb::ListBudgetsRequest {}).await.context("ListBudgets")?;
            anyhow::Ok(response.into_inner().budgets)
        }
    };
    let settled = |budgets: &[pb::Budget]| budgets.iter().all(|b| b.in_flight == 0 && b.reserved == 0.0);
    wait_until(Duration::from_secs(10), || async { list().await.is_ok_and(|b| settled(&b)) }).await;
    let budgets = list().await?;
    println!("\nB's budgets after {sent} requests:");
    println!(
        "{:<22} {:<17} {:<7} {:<10} {:>12} {:>10} {:>9}",
        "name", "scope", "window", "kind", "used", "requests", "in flight"
    );
    let mut wrong = Vec::new();
    for budget in &budgets {
        let whole_run = !budget.window.is_empty() && budget.window_start_unix_ms <= run_started_ms;
        let note = if budget.window.is_empty() {
            "(no window)"
        } else if !whole_run {
            "(window began during the run: not checked)"
        } else if budget.requests == sent {
            "ok"
        } else {
            wrong.push(format!("{}: {} requests", budget.name, budget.requests));
            "WRONG"
        };
        println!(
            "{:<22} {:<17} {:<7} {:<10} {:>12.4} {:>10} {:>9}  {note}",
            budget.name, budget.scope, budget.window, budget.limit_kind, budget.used, budget.requests, budget.in_flight
        );
    }
    if budgets.len() != 6 || !settled(&budgets) || !wrong.is_empty() {
        bail!("B's budgets did not record every request exactly once ({sent} sent): {wrong:?}");
    }
    println!("budgets: every request to B was counted");
    Ok(())
}

/// The key's SHA-256 as the daemon computes it (`llmopsd hash-key`).
async fn hash_key(program: &std::path::Path, key: &str) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(program)
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run llmopsd hash-key")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(key.as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await??;
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || hash.len() != 64 {
        bail!("llmopsd hash-key failed ({}): {hash}", output.status);
    }
    Ok(hash)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
