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
#[path = "../ab.rs"]
mod ab;
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

use ab::{load_average, Harness, LoadArgs, Target};
use proc_stat::clock_ticks;

#[derive(Debug, Parser)]
#[command(about = "Throughput and latency cost of API keys, rate limits and budgets in llmopsd")]
struct Args {
    #[command(flatten)]
    load: LoadArgs,
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.load.validate()?;
    let harness = Harness::start(Behavior { reply_words: Some(args.reply_words), ..Behavior::default() })?;
    let outcome = harness.run(run(&args.load, harness.upstream()?));
    harness.stop();
    outcome
}

async fn run(args: &LoadArgs, upstream: &FakeUpstream) -> anyhow::Result<()> {
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
    let (cells, sent_b) = ab::measure_all(args, &target_a, &target_b).await?;
    let title = "A: plain; B: API key + rate limits + 6 budgets + price";
    ab::print_cells(title, &cells, clock_ticks()?, TARGET_COST);
    println!("load average (1 min) after: {}", load_average());
    let checked = check_budgets(&b, sent_b, run_started_ms).await;
    ab::stop([&mut a, &mut b]).await;
    checked
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
