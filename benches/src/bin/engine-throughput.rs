//! Engine throughput: llmopsd's embedded GGUF engine against llama.cpp's own `llama-server`, on the same
//! GGUF, the same threads and the same machine, through their OpenAI-compatible HTTP APIs with streaming
//! chat completions. Measures single-stream decode tokens/s, time to first token for a ~500-token prompt,
//! and aggregate tokens/s of N closed-loop clients (llama-server restarted with `-np N` for each N;
//! llmopsd runs throughout with `parallel` = the largest N). Both servers run at the same time and take
//! turns (see `interleave`), so drift of a noisy machine hits both alike; only one works at a time.
//!
//! ```text
//! benches/build-llama-server.sh            # prints the llama-server path; fetches the model too
//! cargo build --release -p llmopsd -p llmops-bench
//! target/release/engine-throughput --llama-server PATH --model FILE.gguf
//! ```
//!
//! Every HTTP call has a timeout and every server start a deadline; the servers are killed on exit, on
//! errors and on Ctrl-C.
#[path = "engine_throughput/host.rs"]
mod host;
#[path = "engine_throughput/interleave.rs"]
mod interleave;
#[path = "engine_throughput/measure.rs"]
mod measure;
#[path = "engine_throughput/report.rs"]
mod report;
#[path = "engine_throughput/server.rs"]
mod server;
#[path = "engine_throughput/stream.rs"]
mod stream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use measure::Metric;
use report::{Results, Setup};
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
    /// Measured requests per server of the single-stream and TTFT runs, alternating between the servers.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// max_tokens of the decode and aggregate requests.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Prompt size of the TTFT runs, in tokens as the first server counts them (±5%).
    #[arg(long, default_value_t = 500)]
    prompt_tokens: u64,
    /// Seconds of each aggregate window.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Aggregate windows per server and client count, alternating between the servers.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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
    if args.runs == 0 || args.rounds == 0 || args.threads == 0 || args.max_tokens < 2 || args.seconds == 0 {
        bail!("--runs, --rounds, --threads and --seconds must be positive and --max-tokens at least 2");
    }
    host::run_until_signal(run(&args))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("warning: debug build of the client; build with --release");
    }
    let (llama_program, model, daemon) =
        host::programs(&args.llama_server, &args.model, args.daemon.as_deref(), args.only_llama_server)?;
    let work = tempfile::tempdir().context("cannot create a work directory")?;
    let client = stream::client(Duration::from_secs(args.request_timeout_secs))?;

    println!("llama-server: {} ({})", llama_program.display(), server::version(&llama_program).await);
    if let Some(daemon) = &daemon {
        println!("llmopsd:      {} ({})", daemon.display(), server::version(daemon).await);
    }
    println!("model: {}   threads: {}   cores: {}", model.display(), args.threads, host::cores());
    host::print_load_before();

    let window = Duration::from_secs(args.seconds);
    let request_timeout = Duration::from_secs(args.request_timeout_secs);
    let max_parallel = args.parallel.iter().copied().max().unwrap_or(1);
    // llmopsd runs throughout; llama-server is restarted for each -np. Both idle between requests, and
    // dropping them (on errors and signals too) kills them.
    let ours = match &daemon {
        Some(daemon) => Some(Server::llmopsd(daemon, &model, args.threads, max_parallel, work.path()).await?),
        None => None,
    };
    let mut results = Results::default();
    for (i, &parallel) in args.parallel.iter().enumerate() {
        let llama = Server::llama_server(&llama_program, &model, args.threads, parallel, work.path()).await?;
        let servers: Vec<&Server> = std::iter::once(&llama).chain(ours.as_ref()).collect();
        if i == 0 {
            results.labels = servers.iter().map(|s| s.label).collect();
            let (sentences, counted) = measure::calibrate_notes_prompt(&client, &llama, args.prompt_tokens).await?;
            eprintln!("TTFT prompt: {sentences} sentences, {counted} tokens by llama-server");
            eprintln!("single-stream decode: {} interleaved runs per server (+1 warm-up)", args.runs);
            let metric = Metric::Decode { max_tokens: args.max_tokens };
            results.decode = interleave::alternate(&client, &servers, metric, args.runs).await?;
            eprintln!("time to first token: {} interleaved runs per server (+1 warm-up)", args.runs);
            let metric = Metric::Ttft { sentences };
            results.ttft = interleave::alternate(&client, &servers, metric, args.runs).await?;
        }
        let windows =
            interleave::alternate_windows(&servers, parallel, window, args.rounds, args.max_tokens, request_timeout)
                .await?;
        results.aggregate.push((parallel, windows));
        llama.stop().await;
    }
    if let Some(ours) = ours {
        ours.stop().await;
    }

    let setup = Setup { runs: args.runs, max_tokens: args.max_tokens, seconds: args.seconds, rounds: args.rounds };
    let (met, compared) = report::print(&results, &setup);
    println!();
    println!("load average (1 min) after: {}", host::load_average());
    if compared > 0 {
        println!("targets met: {met} of {compared}");
    }
    Ok(())
}
