//! CPU and memory of llmops-top attached to a daemon, in a real terminal (a private tmux). Before anything is
//! measured, a request must show as a row of the console's traces view, else the bench fails (it would measure
//! a console that shows nothing). Then: first with no requests (the baseline), then while the daemon takes a
//! steady request rate (default 100/s, streamed, from an instant fake upstream), on the overview and then on
//! the live traces view. CPU is utime+stime from /proc/PID/stat over each phase, as a share of one core. RSS
//! (VmRSS, and VmHWM as the peak) is read after those phases and again after enough further requests to fill
//! the trace tail (10,000).
use anyhow::Context;
use clap::Parser;
use llmops_e2e::daemon::{binary, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::tmux::Tmux;
use std::time::{Duration, Instant};

#[path = "../proc_stat.rs"]
mod proc_stat;

#[derive(Parser)]
#[command(about = "CPU and RSS of llmops-top attached to a busy daemon")]
struct Args {
    /// Requests per second sent to the daemon during the loaded phases.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests sent at the end (at 500/s, on the traces view) so the tail is full before RSS is read.
    #[arg(long, default_value_t = 10_000)]
    fill: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(Tmux::available(), "tmux is needed (scripts/setup.sh installs it)");
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(16), ..Behavior::default() }).await?;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await?;
    let top = binary("llmops-top")?;
    let command = format!("exec {} --connect unix:{}", top.display(), daemon.grpc_socket.display());
    let tmux = Tmux::start(&command, 120, 40)?;
    tmux.wait_for("the console to connect", Duration::from_secs(15), |screen| {
        screen.contains("fake-model") || screen.contains("Overview")
    })?;
    check_traces_shown(&tmux, &daemon.url("/v1/chat/completions")).await?;
    let pid: u32 = tmux.pane_format("#{pane_pid}")?.parse().context("pane pid")?;
    let ticks = proc_stat::clock_ticks()?;
    let phase = Duration::from_secs(args.seconds);
    println!("llmops-top (pid {pid}) in a 120x40 tmux window, {} s per phase", args.seconds);

    let cpu = |load: Option<u64>| {
        let daemon_url = daemon.url("/v1/chat/completions");
        async move {
            let before = proc_stat::cpu_ticks(pid)?;
            let sent = match load {
                Some(rate) => steady_load(&daemon_url, rate, phase).await?,
                None => {
                    tokio::time::sleep(phase).await;
                    0
                }
            };
            let used = (proc_stat::cpu_ticks(pid)? - before) as f64 / ticks;
            anyhow::Ok((used / phase.as_secs_f64() * 100.0, sent))
        }
    };
    let (idle, _) = cpu(None).await?;
    println!("{:<40} {:>6.2}% of a core", "overview, no requests (baseline)", idle);
    let (overview, sent) = cpu(Some(args.rate)).await?;
    println!("{:<40} {:>6.2}% of a core  ({sent} requests)", format!("overview, {} req/s", args.rate), overview);
    tmux.send_keys(&["2"])?;
    let (traces, sent) = cpu(Some(args.rate)).await?;
    let screen = tmux.capture()?;
    anyhow::ensure!(screen.lines().any(is_trace_row), "the traces view shows no traces after the load:\n{screen}");
    println!(
        "{:<40} {:>6.2}% of a core  ({sent} requests)",
        format!("traces view (live), {} req/s", args.rate),
        traces
    );
    let rss = proc_stat::status_kib(pid, "VmRSS:")?;
    println!("RSS {:.1} MiB after {} requests", rss as f64 / 1024.0, 2 * args.rate * args.seconds);
    if args.fill > 0 {
        let fill_rate = 500;
        let sent =
            steady_load(&daemon.url("/v1/chat/completions"), fill_rate, Duration::from_secs(args.fill / fill_rate))
                .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, hwm) = (proc_stat::status_kib(pid, "VmRSS:")?, proc_stat::status_kib(pid, "VmHWM:")?);
        println!(
            "RSS {:.1} MiB (peak {:.1} MiB) after {sent} more requests on the traces view (tail full at 10,000)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    Ok(())
}

/// A console that shows no traces would measure an idle loop: one request must show as a row of the traces
/// view (route, model and status ok) before anything is measured. Then back to the overview.
async fn check_traces_shown(tmux: &Tmux, url: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"model": "fake-model", "messages": [{"role": "user", "content": "Say hi."}]});
    let response = reqwest::Client::new().post(url).json(&body).send().await.context("the check request")?;
    anyhow::ensure!(response.status().is_success(), "the check request failed: HTTP {}", response.status());
    tmux.send_keys(&["2"])?;
    tmux.wait_for("the request's trace in the traces view", Duration::from_secs(15), |screen| {
        screen.contains("Traces LIVE") && screen.lines().any(is_trace_row)
    })
    .context("llmops-top shows no traces: nothing to measure")?;
    tmux.send_keys(&["1"])?;
    tmux.wait_for("the overview", Duration::from_secs(15), |screen| {
        !screen.contains("Traces LIVE") && screen.lines().any(|line| line.starts_with("llmopsd "))
    })?;
    Ok(())
}

/// A finished request's row: "│ 16:26:36 fake-model   fake-model   ok   1 ms ...".
fn is_trace_row(line: &str) -> bool {
    line.contains("fake-model") && line.split_whitespace().any(|word| word == "ok")
}

/// Open-loop: one streamed request every 1/rate s, each on its own task; returns how many completed.
async fn steady_load(url: &str, rate: u64, length: Duration) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": "fake-model", "stream": true,
        "messages": [{"role": "user", "content": "Say something short."}]});
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let deadline = Instant::now() + length;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        tick.tick().await;
        let request = client.post(url).json(&body);
        tasks.spawn(async move { request.send().await.ok()?.bytes().await.ok() });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        done += u64::from(matches!(result, Ok(Some(_))));
    }
    Ok(done)
}
