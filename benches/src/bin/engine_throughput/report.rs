//! The tables: one per metric, a row per server, then the paired ratio llmopsd/llama-server (the median of
//! the ratios of neighbouring measurements) against its target.
use crate::interleave::{paired_ratios, window_ratios};
use crate::measure::{Aggregate, Samples, Series};

/// What the servers measured; index i of every list belongs to `labels[i]`, llama-server first.
#[derive(Default)]
pub struct Results {
    pub labels: Vec<&'static str>,
    pub decode: Vec<Series>,
    pub ttft: Vec<Series>,
    /// Per `--parallel` value: the number of clients and, per server, its windows in order.
    pub aggregate: Vec<(usize, Vec<Vec<Aggregate>>)>,
}

/// The run's settings, for the table headings.
pub struct Setup {
    pub runs: usize,
    pub max_tokens: u32,
    pub seconds: u64,
    pub rounds: usize,
}

/// How a ratio llmopsd/llama-server must compare with its bound.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::AtLeast(bound) => format!(">= {bound:.2}x"),
            Target::AtMost(bound) => format!("<= {bound:.2}x"),
        }
    }

    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(bound) => ratio >= bound,
            Target::AtMost(bound) => ratio <= bound,
        }
    }
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn list(values: &[u64]) -> String {
    let mut distinct = values.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
}

/// Prints the paired-ratio line; returns whether the target was met (None: nothing to compare).
fn ratio_line(ratios: Option<Samples>, of: &str, target: Target) -> Option<bool> {
    let Some((ratios, median)) = ratios.and_then(|r| r.median().map(|median| (r, median))) else {
        println!("  paired ratio llmopsd/llama-server: n/a   target {}", target.describe());
        return None;
    };
    let met = target.met(median);
    println!(
        "  paired ratio llmopsd/llama-server: {median:.3}x (median of {} {of}, range {}..{})   target {}: {}",
        ratios.0.len(),
        fmt(ratios.min(), 3),
        fmt(ratios.max(), 3),
        target.describe(),
        if met { "met" } else { "MISSED" }
    );
    Some(met)
}

/// A table of one single-request metric: median, min and max per server, then the paired ratio.
fn series_table(results: &Results, all: &[Series], decimals: usize, tokens: &str, target: Target) -> Option<bool> {
    println!("  {:<13} {:>10} {:>10} {:>10}   {tokens}", "server", "median", "min", "max");
    for (label, series) in results.labels.iter().zip(all) {
        let samples = &series.values;
        println!(
            "  {label:<13} {:>10} {:>10} {:>10}   {}",
            fmt(samples.median(), decimals),
            fmt(samples.min(), decimals),
            fmt(samples.max(), decimals),
            list(&series.tokens)
        );
    }
    let ratios = match all {
        [llama, ours, ..] => Some(paired_ratios(&llama.values.0, &ours.values.0)),
        _ => None,
    };
    ratio_line(ratios, "pairs", target)
}

/// A table of one `--parallel` value: each server's windows summed, its rate per window, then the paired
/// ratio of the rounds.
fn aggregate_table(results: &Results, per_server: &[Vec<Aggregate>]) -> Option<bool> {
    println!(
        "  {:<13} {:>10} {:>10} {:>10} {:>10}   tokens/s per window",
        "server", "tokens/s", "answers", "tok/answer", "errors"
    );
    for (label, windows) in results.labels.iter().zip(per_server) {
        let total = Aggregate::total(windows);
        let per_answer = (total.completed > 0).then(|| total.completed_tokens as f64 / total.completed as f64);
        let rates: Vec<String> = windows.iter().map(|w| format!("{:.1}", w.tokens_per_second())).collect();
        println!(
            "  {label:<13} {:>10.1} {:>10} {:>10} {:>10}   {}",
            total.tokens_per_second(),
            total.completed,
            fmt(per_answer, 1),
            total.errors,
            rates.join(" / ")
        );
        if let Some(error) = &total.first_error {
            println!("    first error: {error}");
        }
    }
    let ratios = match per_server {
        [llama, ours, ..] => Some(window_ratios(llama, ours)),
        _ => None,
    };
    ratio_line(ratios, "rounds", Target::AtLeast(1.0))
}

/// Prints every table; returns (targets met, targets compared).
pub fn print(results: &Results, setup: &Setup) -> (usize, usize) {
    let Setup { runs, max_tokens, seconds, rounds } = *setup;
    let mut verdicts = Vec::new();

    println!("\n== single-stream decode, tokens/s ({runs} interleaved runs each, max_tokens {max_tokens}) ==");
    verdicts.push(series_table(results, &results.decode, 1, "completion tokens", Target::AtLeast(0.95)));

    println!("\n== time to first token, ms ({runs} interleaved runs each, max_tokens 1) ==");
    verdicts.push(series_table(results, &results.ttft, 1, "prompt tokens", Target::AtMost(1.05)));

    for (clients, per_server) in &results.aggregate {
        println!(
            "\n== aggregate decode, {clients} clients, tokens/s ({rounds} alternating windows of {seconds} s each, \
             closed loop, max_tokens {max_tokens}) =="
        );
        verdicts.push(aggregate_table(results, per_server));
    }
    let compared: Vec<bool> = verdicts.into_iter().flatten().collect();
    (compared.iter().filter(|met| **met).count(), compared.len())
}
