//! CPU cost of the drift detectors per recorded trace, against the request-metrics observer that already
//! sees every trace (both measured in this run, on the same traces). Prints microseconds per trace and
//! what that is as a share of one core at a given trace rate (default: the gateway benchmark's ~9,000 req/s).
use clap::Parser;
use llmopsd::drift::{DriftConfig, DriftEngine, Observation};
use llmopsd::telemetry::requests::RequestMetrics;
use llmopsd::trace::{Trace, TraceStatus};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "CPU cost of drift detection per trace")]
struct Args {
    /// Traces to push through the detectors.
    #[arg(long, default_value_t = 200_000)]
    traces: usize,
    /// Routes the traces are spread over (each route/model/prompt version has its own detectors).
    #[arg(long, default_value_t = 8)]
    routes: usize,
    /// Trace rate to express the cost at, per second.
    #[arg(long, default_value_t = 9_000.0)]
    rate: f64,
}

/// splitmix64 and lognormal draws: realistic, reproducible streams.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn lognormal(&mut self, mean: f64, cv: f64) -> f64 {
        let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let sigma2 = (1.0 + cv * cv).ln();
        (mean.ln() - sigma2 / 2.0 + sigma2.sqrt() * normal).exp()
    }
}

fn traces(args: &Args) -> Vec<Trace> {
    let mut rng = Rng(42);
    (0..args.traces)
        .map(|i| {
            let output = rng.lognormal(180.0, 0.5).round().max(1.0);
            let ttft = rng.lognormal(120.0, 0.3);
            let latency = ttft + output * rng.lognormal(25.0, 0.1);
            let offsets = (0..output as usize).map(|t| ttft + t as f64 * (latency - ttft) / output).collect();
            Trace {
                route: format!("route-{}", i % args.routes),
                model_served: "qwen".into(),
                prompt_version: "v1".into(),
                endpoint: "chat.completions".into(),
                status: if rng.uniform() < 0.01 { TraceStatus::Error } else { TraceStatus::Ok },
                finish_reason: "stop".into(),
                input_tokens: rng.lognormal(600.0, 0.4).round() as u64,
                output_tokens: output as u64,
                ttft_ms: Some(ttft),
                latency_ms: latency,
                response_text: "Berlin is the capital of Germany.".into(),
                chunk_offsets_ms: offsets,
                ended_at_unix_ms: 1_700_000_000_000 + i as i64,
                ..Trace::default()
            }
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    let traces = traces(&args);
    let config = DriftConfig::default().normalized();

    let metrics = RequestMetrics::new();
    let started = Instant::now();
    for trace in &traces {
        metrics.observe_trace(trace);
    }
    let baseline = started.elapsed().as_secs_f64() / traces.len() as f64;

    let mut engine = DriftEngine::new(config.clone());
    let mut alerts = 0;
    let started = Instant::now();
    for trace in &traces {
        if let Some(observation) = Observation::from_trace(trace, &config) {
            alerts += engine.observe(&observation).len();
        }
    }
    let drift = started.elapsed().as_secs_f64() / traces.len() as f64;

    println!("{} traces over {} routes (release build? {})", traces.len(), args.routes, !cfg!(debug_assertions));
    println!("request metrics (baseline): {:.2} us per trace", baseline * 1e6);
    println!("drift detectors:            {:.2} us per trace ({:.2}x the baseline)", drift * 1e6, drift / baseline);
    println!(
        "at {:.0} traces/s the detectors use {:.2}% of one core (target < 2%); alerts raised: {alerts}",
        args.rate,
        drift * args.rate * 100.0
    );
}
