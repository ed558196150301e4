//! Soak: mixed traffic through the release `llmopsd` for a long time (default 30 minutes), with the daemon's
//! resident memory and open file descriptors sampled every 10 s. The traffic mixes what a busy host sees:
//! plain and streamed answers, fallbacks past a failing engine, streams cut or stalled by their engine,
//! requests refused (unknown or oversized model names, no key, a foreign web page), and a new prompt
//! version, user and tag value on every request (the values a leak would grow with). Each upstream is a
//! `fake-upstream` process of its own.
//!
//! Prints every sample, then the growth of RSS and descriptors from the end of the warm-up to the end of
//! the run, and the traces written against the requests that must leave one. Exits non-zero when growth
//! passes `--max-growth-percent` or a trace is missing.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/soak --minutes 30
//! ```
// Only the memory reader is used here.
#[allow(dead_code)]
#[path = "../proc_stat.rs"]
mod proc_stat;
#[path = "soak/traffic.rs"]
mod traffic;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use llmops_e2e::daemon::Daemon;
use llmops_e2e::upstream_process::UpstreamProcess;
use llmops_proto::v1 as pb;
use pb::key_service_client::KeyServiceClient;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Long mixed traffic through llmopsd; RSS, descriptors and traces checked for growth and loss")]
struct Args {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Minutes at the start not counted in the growth (caches, pools and the SQLite page cache fill up).
    #[arg(long, default_value_t = 5.0)]
    warmup_minutes: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Send the same prompt id, version, user, session and tag on every request (to tell growth that comes
    /// from unique values from growth that comes from volume).
    #[arg(long)]
    same_values: bool,
    /// The daemon's telemetry.history_secs (default: the daemon's, one hour). Its sample history fills for
    /// that long by design, so a shorter history shows sooner whether anything else grows.
    #[arg(long)]
    history_secs: Option<u64>,
    /// Fail when RSS or descriptors grow more than this after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    max_growth_percent: f64,
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    /// Heap and other private memory; the rest of RSS is files mapped in (the SQLite WAL index among them).
    anon_kib: u64,
    fds: usize,
    sent: u64,
    written: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.minutes > 0.0 && args.warmup_minutes >= 0.0 && args.warmup_minutes < args.minutes) {
        bail!("--minutes must be positive and longer than --warmup-minutes");
    }
    if cfg!(debug_assertions) {
        println!("warning: debug build; run the release build");
    }
    let upstreams = Upstreams::start().await?;
    let data_dir = tempfile::tempdir().context("cannot create a data dir")?;
    let mut config = upstreams.config();
    if let Some(secs) = args.history_secs {
        config.push_str(&format!("[telemetry]\nhistory_secs = {secs}\n"));
    }
    let daemon = Daemon::start(&config, data_dir.path()).await?;
    let pid = daemon.pid().context("llmopsd is not running")?;
    let mut keys = KeyServiceClient::new(daemon.grpc_channel().await?);
    let request = pb::CreateKeyRequest { tenant: "soak".into(), name: "soak".into() };
    let key = keys.create_key(request).await.context("CreateKey")?.into_inner().secret;
    let written_before = store_written(&daemon).await?;

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let traffic = traffic::Traffic::start(daemon.http_base.clone(), key, args.concurrency, duration, args.same_values);
    let started = Instant::now();
    let mut samples = Vec::new();
    println!("{:>7} {:>9} {:>9} {:>5} {:>9} {:>9}", "secs", "RSS MiB", "anon MiB", "fds", "sent", "traces");
    loop {
        let sample = Sample {
            at: started.elapsed(),
            rss_kib: proc_stat::status_kib(pid, "VmRSS:")?,
            anon_kib: proc_stat::status_kib(pid, "RssAnon:")?,
            fds: open_fds(pid)?,
            sent: traffic.sent(),
            written: store_written(&daemon).await?.saturating_sub(written_before),
        };
        println!(
            "{:>7.0} {:>9.1} {:>9.1} {:>5} {:>9} {:>9}",
            sample.at.as_secs_f64(),
            sample.rss_kib as f64 / 1024.0,
            sample.anon_kib as f64 / 1024.0,
            sample.fds,
            sample.sent,
            sample.written
        );
        samples.push(sample);
        if traffic.finished() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(args.sample_secs)).await;
    }
    let counts = traffic.join().await?;
    println!();
    counts.print();

    let warmup = Duration::from_secs_f64(args.warmup_minutes * 60.0);
    // The last sample may come after the clients stopped, when connections are already closed.
    let under_load: Vec<Sample> = samples.into_iter().filter(|s| s.at <= duration).collect();
    let growth = report_growth(&under_load, warmup);
    let traces = report_traces(&daemon, written_before, counts.traced()).await;
    drop(upstreams);
    let within = match growth {
        Some((rss, fds)) if rss > args.max_growth_percent || fds > args.max_growth_percent => Err(anyhow::anyhow!(
            "growth after warm-up over {}%: RSS {rss:+.1}%, fds {fds:+.1}%",
            args.max_growth_percent
        )),
        _ => Ok(()),
    };
    within.and(traces)
}

/// One `fake-upstream` per behaviour.
struct Upstreams {
    good: UpstreamProcess,
    failing: UpstreamProcess,
    cutting: UpstreamProcess,
    stalling: UpstreamProcess,
}

impl Upstreams {
    async fn start() -> anyhow::Result<Upstreams> {
        Ok(Upstreams {
            good: UpstreamProcess::start(&["--reply-words", "16"]).await?,
            failing: UpstreamProcess::start(&["--fail-status", "500"]).await?,
            cutting: UpstreamProcess::start(&["--reply-words", "16", "--cut-after-chunks", "4"]).await?,
            stalling: UpstreamProcess::start(&["--reply-words", "16", "--stall-after-chunks", "2"]).await?,
        })
    }

    /// Routes: `chat` (served), `fallback` (a failing engine, then the good one), `cut` and `stall`.
    fn config(&self) -> String {
        let engine = |name: &str, upstream: &UpstreamProcess, extra: &str| {
            format!(
                "[engines.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n{extra}\n",
                upstream.base_url
            )
        };
        let route = |name: &str, engines: &[&str]| {
            let targets: Vec<String> =
                engines.iter().map(|e| format!("{{ engine = \"{e}\", model = \"fake-model\" }}")).collect();
            format!("[routes.{name}]\ntargets = [{}]\n", targets.join(", "))
        };
        [
            engine("good", &self.good, ""),
            engine("failing", &self.failing, ""),
            engine("cutting", &self.cutting, ""),
            engine("stalling", &self.stalling, "stream_idle_timeout_ms = 200"),
            route("chat", &["good"]),
            route("fallback", &["failing", "good"]),
            route("cut", &["cutting"]),
            route("stall", &["stalling"]),
        ]
        .concat()
    }
}

fn open_fds(pid: u32) -> anyhow::Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))?.count())
}

async fn store_written(daemon: &Daemon) -> anyhow::Result<u64> {
    let output = daemon.llmopsctl_async(&["--json", "status"]).await?;
    if !output.status.success() {
        bail!("llmopsctl status failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let status: Value = serde_json::from_slice(&output.stdout).context("llmopsctl status --json printed no JSON")?;
    match status.pointer("/store/written") {
        Some(Value::Number(n)) => n.as_u64().context("store.written is not a count"),
        Some(Value::String(s)) => s.parse().context("store.written is not a count"),
        _ => Ok(0),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Growth in percent of RSS and descriptors: the mean of the last three samples against the mean of the
/// three samples after the warm-up.
fn report_growth(samples: &[Sample], warmup: Duration) -> Option<(f64, f64)> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
    if after.len() < 6 {
        println!("growth: too few samples after the warm-up to tell (run longer)");
        return None;
    }
    let first = &after[..3];
    let last = &after[after.len() - 3..];
    let rss = |set: &[&Sample]| mean(set.iter().map(|s| s.rss_kib as f64));
    let fds = |set: &[&Sample]| mean(set.iter().map(|s| s.fds as f64));
    let anon = |set: &[&Sample]| mean(set.iter().map(|s| s.anon_kib as f64));
    let percent = |from: f64, to: f64| (to - from) / from.max(1.0) * 100.0;
    let (rss_from, rss_to, fds_from, fds_to) = (rss(first)?, rss(last)?, fds(first)?, fds(last)?);
    let rss_growth = percent(rss_from, rss_to);
    let fds_growth = percent(fds_from, fds_to);
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    println!(
        "RSS after warm-up {:.1} MiB, at the end {:.1} MiB ({rss_growth:+.1}%), peak {:.1} MiB",
        rss_from / 1024.0,
        rss_to / 1024.0,
        peak as f64 / 1024.0
    );
    let (anon_from, anon_to) = (anon(first)?, anon(last)?);
    println!(
        "of which anonymous (heap): {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1}%)",
        anon_from / 1024.0,
        anon_to / 1024.0,
        percent(anon_from, anon_to)
    );
    println!("open fds after warm-up {fds_from:.1}, at the end {fds_to:.1} ({fds_growth:+.1}%)");
    Some((rss_growth, fds_growth))
}

/// Waits (bounded) for the trace count to reach what was sent; an error when some are missing.
async fn report_traces(daemon: &Daemon, before: u64, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0;
    while Instant::now() < deadline {
        written = store_written(daemon).await?.saturating_sub(before);
        if written >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("traces: {written} written for {expected} requests that must leave one");
    if written != expected {
        bail!("{written} traces written for {expected} traced requests");
    }
    Ok(())
}
