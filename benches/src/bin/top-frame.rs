//! Frame time of llmops-top's traces view with a full tail (default 10,000 traces), against the same view
//! holding one screenful (50 traces) as the baseline, both measured in this run. Each frame is a complete
//! `ui::draw` into ratatui's in-memory backend (layout, filtering and sorting the tail, building the visible
//! rows, diffing the buffer); only the terminal write is left out. This is where the console's frame cost is
//! measured (mean and p99 per frame); the snapshot tests only check that a full tail draws.
use clap::Parser;
use llmops_proto::v1 as pb;
use llmops_tui::top::state::{App, Link, Look, SortKey, View};
use llmops_tui::top::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Frame time of llmops-top's traces view with many traces")]
struct Args {
    /// Traces in the tail.
    #[arg(long, default_value_t = 10_000)]
    traces: usize,
    /// Frames drawn per case.
    #[arg(long, default_value_t = 500)]
    frames: usize,
    #[arg(long, default_value_t = 120)]
    width: u16,
    #[arg(long, default_value_t = 40)]
    height: u16,
}

fn trace(i: usize) -> pb::Trace {
    let routes = ["chat", "code", "summarize", "embed"];
    let status = if i.is_multiple_of(17) { pb::TraceStatus::Error } else { pb::TraceStatus::Ok };
    pb::Trace {
        id: format!("0193{i:028x}"),
        started_at_unix_ms: 1_764_000_000_000 - i as i64 * 10,
        route: routes[i % routes.len()].into(),
        model_requested: routes[i % routes.len()].into(),
        model_served: format!("model-{}", i % 3),
        status: status as i32,
        http_status: if status == pb::TraceStatus::Ok { 200 } else { 502 },
        input_tokens: 20 + (i % 300) as u64,
        output_tokens: 50 + (i % 700) as u64,
        ttft_ms: Some(80.0 + (i % 50) as f64),
        latency_ms: 400.0 + (i * 37 % 2000) as f64,
        cost_usd: Some(0.0001 * (i % 9) as f64),
        prompt_text: format!("user: question number {i} about the sea"),
        response_text: format!("answer {i}"),
        ..pb::Trace::default()
    }
}

fn app(traces: usize) -> App {
    let mut app = App::new(&["unix:/run/llmops/grpc.sock".to_string()], Look::default());
    app.view = View::Traces;
    app.now_unix_ms = 1_764_000_000_000;
    let host = &mut app.hosts[0];
    host.link = Link::Up;
    host.traces.finished = (0..traces).map(trace).collect();
    app
}

/// Mean and p99 of `frames` draws.
fn measure(app: &App, args: &Args) -> anyhow::Result<(Duration, Duration)> {
    let mut terminal = Terminal::new(TestBackend::new(args.width, args.height))?;
    let mut times = Vec::with_capacity(args.frames);
    for _ in 0..args.frames {
        let start = Instant::now();
        terminal.draw(|frame| {
            ui::draw(frame, app);
        })?;
        times.push(start.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / args.frames.max(1) as u32;
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    Ok((mean, p99))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.frames > 0, "--frames must be at least 1");
    let baseline = app(50);
    let full = app(args.traces);
    let mut filtered = app(args.traces);
    filtered.traces.filter = "status:error route:chat".into();
    let mut sorted = app(args.traces);
    sorted.traces.sort = SortKey::Latency;
    println!("traces view, {}x{}, {} frames per case", args.width, args.height, args.frames);
    let (base_mean, base_p99) = measure(&baseline, &args)?;
    println!("{:<48} mean {:>8.3} ms  p99 {:>8.3} ms", "baseline: 50 traces", ms(base_mean), ms(base_p99));
    for (name, app) in
        [("newest first", &full), ("filtered (status:error route:chat)", &filtered), ("sorted by latency", &sorted)]
    {
        let (mean, p99) = measure(app, &args)?;
        println!(
            "{:<48} mean {:>8.3} ms  p99 {:>8.3} ms  = {:.2}x baseline",
            format!("{} traces, {name}", args.traces),
            ms(mean),
            ms(p99),
            mean.as_secs_f64() / base_mean.as_secs_f64()
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
