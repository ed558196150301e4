//! Engine throughput: llmopsd's embedded GGUF engine against llama.cpp's own `llama-server`, on the same
//! GGUF, the same threads and the same machine, one server at a time, through their OpenAI-compatible
//! HTTP APIs with streaming chat completions. Measures single-stream decode tokens/s, time to first token
//! for a ~500-token prompt, and aggregate tokens/s of N closed-loop clients (llama-server restarted with
//! `-np N` for each N; llmopsd runs once with `parallel` = the largest N).
//!
//! ```text
//! benches/build-llama-server.sh            # prints the llama-server path; fetches the model too
//! cargo build --release -p llmopsd -p llmops-bench
//! target/release/engine-throughput --llama-server PATH --model FILE.gguf
//! ```
//!
//! Every HTTP call has a timeout and every server start a deadline; the servers are killed on exit, on
//! errors and on Ctrl-C.
#[path = "engine_throughput/measure.rs"]
mod measure;
#[path = "engine_throughput/report.rs"]
mod report;
#[path = "engine_throughput/server.rs"]
mod server;
#[path = "engine_throughput/stream.rs"]
mod stream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use report::Results;
use server::Server;

#[derive(Debug, Parser)]
#[command(about = "Decode and prefill speed of llmopsd's embedded engine against llama.cpp's llama-server")]
struct Args {
    /// The llama-server binary (benches/build-llama-server.sh builds one).
    #[arg(long)]
    llama_server: PathBuf,
    /// The GGUF model both servers load.
    #[arg(long)]
    model: PathBuf,
    /// The llmopsd binary (default: the one next to this executable, or in $LLMOPS_BIN_DIR).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// CPU threads of each server.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Concurrent clients of the aggregate runs (llama-server's -np; llmopsd gets the largest as `parallel`).
    #[arg(long, value_delimiter = ',', default_value = "4,8")]
    parallel: Vec<usize>,
    /// Measured requests of the single-stream and TTFT runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// max_tokens of the decode and aggregate requests.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Prompt size of the TTFT runs, in tokens as the first server counts them (±5%).
    #[arg(long, default_value_t = 500)]
    prompt_tokens: u64,
    /// Seconds of each aggregate run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Timeout of every single HTTP request.
    #[arg(long, default_value_t = 120)]
    request_timeout_secs: u64,
    /// Measure llama-server alone (checks the setup without llmopsd).
    #[arg(long)]
    only_llama_server: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.parallel.is_empty() || args.parallel.contains(&0) {
        bail!("--parallel needs positive values");
    }
    if args.runs == 0 || args.threads == 0 || args.max_tokens < 2 || args.seconds == 0 {
        bail!("--runs, --threads and --seconds must be positive and --max-tokens at least 2");
    }
    // One thread is plenty for a few streams and leaves the cores to the servers.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        // Returning drops the running servers, which kills them.
        tokio::select! {
            result = run(&args) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = terminate.recv() => bail!("terminated"),
        }
    })
}

fn existing_file(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let path = path.canonicalize().with_context(|| format!("{what} {} not found", path.display()))?;
    if !path.is_file() {
        bail!("{what} {} is not a file", path.display());
    }
    Ok(path)
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("warning: debug build of the client; build with --release");
    }
    let llama_program = existing_file(&args.llama_server, "--llama-server")?;
    let model = existing_file(&args.model, "--model")?;
    let daemon = match (&args.daemon, args.only_llama_server) {
        (_, true) => None,
        (Some(path), false) => Some(existing_file(path, "--daemon")?),
        (None, false) => Some(llmops_e2e::daemon::binary("llmopsd")?),
    };
    let work = tempfile::tempdir().context("cannot create a work directory")?;
    let client = stream::client(Duration::from_secs(args.request_timeout_secs))?;

    println!("llama-server: {} ({})", llama_program.display(), server::version(&llama_program).await);
    if let Some(daemon) = &daemon {
        println!("llmopsd:      {} ({})", daemon.display(), server::version(daemon).await);
    }
    println!("model: {}   threads: {}   cores: {}", model.display(), args.threads, cores());
    let before = load_average();
    println!("load average (1 min) before: {before}");
    if before.parse::<f64>().is_ok_and(|load| load >= 0.5) {
        println!("warning: the machine is not idle (a cargo build?); the numbers will be skewed");
    }

    let window = Duration::from_secs(args.seconds);
    let request_timeout = Duration::from_secs(args.request_timeout_secs);
    let max_parallel = args.parallel.iter().copied().max().unwrap_or(1);
    let mut llama = Results::default();
    let mut ours = None;
    let mut sentences = 1;
    // llama-server at the first -np, then llmopsd for everything, then llama-server at the other -np:
    // never two servers at once.
    for (i, &parallel) in args.parallel.iter().enumerate() {
        let server = Server::llama_server(&llama_program, &model, args.threads, parallel, work.path()).await?;
        if i == 0 {
            let (count, counted) = measure::calibrate_notes_prompt(&client, &server, args.prompt_tokens).await?;
            sentences = count;
            eprintln!("TTFT prompt: {sentences} sentences, {counted} tokens by llama-server");
            single_stream(&client, &server, args, sentences, &mut llama).await?;
        }
        eprintln!("llama-server: {parallel} clients for {} s", args.seconds);
        llama.aggregate.push(measure::aggregate(&server, parallel, window, args.max_tokens, request_timeout).await?);
        server.stop().await;

        if let (0, Some(daemon)) = (i, &daemon) {
            let server = Server::llmopsd(daemon, &model, args.threads, max_parallel, work.path()).await?;
            let mut results = Results::default();
            single_stream(&client, &server, args, sentences, &mut results).await?;
            for &clients in &args.parallel {
                eprintln!("llmopsd: {clients} clients for {} s", args.seconds);
                results
                    .aggregate
                    .push(measure::aggregate(&server, clients, window, args.max_tokens, request_timeout).await?);
            }
            server.stop().await;
            ours = Some(results);
        }
    }

    let (met, compared) = report::print(&llama, ours.as_ref(), args.runs, args.max_tokens, args.seconds);
    println!();
    println!("load average (1 min) after: {}", load_average());
    if compared > 0 {
        println!("targets met: {met} of {compared}");
    }
    Ok(())
}

async fn single_stream(
    client: &reqwest::Client,
    server: &Server,
    args: &Args,
    sentences: usize,
    results: &mut Results,
) -> anyhow::Result<()> {
    eprintln!("{}: single-stream decode, {} runs", server.label, args.runs);
    results.decode = Some(measure::decode(client, server, args.max_tokens, args.runs).await?);
    eprintln!("{}: time to first token, {} runs", server.label, args.runs);
    results.ttft = Some(measure::ttft(client, server, sentences, args.runs).await?);
    Ok(())
}

fn cores() -> String {
    std::thread::available_parallelism().map_or_else(|_| "unknown".into(), |n| n.to_string())
}
