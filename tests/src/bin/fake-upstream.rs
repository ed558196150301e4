//! Runs the fake OpenAI-compatible upstream as its own process, for the Python tests and manual checks.
//! Prints `fake-upstream listening on http://HOST:PORT/v1` once bound, then serves until SIGTERM or SIGINT.
use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(about = "Fake OpenAI-compatible upstream with deterministic, controllable answers")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Pause between streamed word chunks.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Pause before the first byte of each answer.
    #[arg(long, default_value_t = 0)]
    first_token_delay_ms: u64,
    /// Never send usage.
    #[arg(long)]
    omit_usage: bool,
    /// Reply "w1 … wN" instead of echoing the prompt.
    #[arg(long)]
    reply_words: Option<usize>,
    /// Answer generation and embeddings requests with this HTTP status and an OpenAI error.
    #[arg(long)]
    fail_status: Option<u16>,
    /// With --fail-status: also send `Retry-After: N`.
    #[arg(long)]
    retry_after_secs: Option<u64>,
    /// With --fail-status: fail only the first N requests, then answer normally.
    #[arg(long)]
    fail_first_requests: Option<u64>,
    /// Streams: break the connection after N word chunks, without `[DONE]`.
    #[arg(long)]
    cut_after_chunks: Option<usize>,
    /// Streams: go silent after N word chunks but keep the connection open.
    #[arg(long)]
    stall_after_chunks: Option<usize>,
    /// Streams: send `data:` events that are not JSON, then `[DONE]`.
    #[arg(long)]
    garbage_stream: bool,
    /// Non-streaming answers: a 200 whose JSON body is truncated.
    #[arg(long)]
    invalid_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let behavior = Behavior {
        token_delay_ms: args.token_delay_ms,
        first_token_delay_ms: args.first_token_delay_ms,
        omit_usage: args.omit_usage,
        reply_words: args.reply_words,
        fail_status: args.fail_status,
        retry_after_secs: args.retry_after_secs,
        fail_first_requests: args.fail_first_requests,
        cut_after_chunks: args.cut_after_chunks,
        stall_after_chunks: args.stall_after_chunks,
        garbage_stream: args.garbage_stream,
        invalid_json: args.invalid_json,
        ..Behavior::default()
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let upstream = FakeUpstream::start_on(args.listen, behavior).await?;
    // The one line a parent process waits for; flushed because stdout is a pipe there.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake-upstream listening on {}", upstream.base_url())?;
    stdout.flush()?;
    drop(stdout);
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    upstream.shutdown().await;
    Ok(())
}
