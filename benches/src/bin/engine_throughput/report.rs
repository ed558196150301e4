//! The tables: one per metric, a row per server, then the llmopsd/llama-server ratio against its target.
use crate::measure::{Aggregate, Decode, Samples, Ttft};

/// What one server measured; the aggregate runs in the order of `--parallel`.
#[derive(Default)]
pub struct Results {
    pub decode: Option<Decode>,
    pub ttft: Option<Ttft>,
    pub aggregate: Vec<Aggregate>,
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

/// Prints the ratio line; returns whether the target was met (None: nothing to compare).
fn ratio_line(llama: Option<f64>, ours: Option<f64>, target: Target) -> Option<bool> {
    let (Some(llama), Some(ours)) = (llama, ours) else {
        println!("  ratio llmopsd/llama-server: n/a   target {}", target.describe());
        return None;
    };
    let ratio = ours / llama.max(f64::EPSILON);
    let met = target.met(ratio);
    println!(
        "  ratio llmopsd/llama-server: {ratio:.3}x   target {}: {}",
        target.describe(),
        if met { "met" } else { "MISSED" }
    );
    Some(met)
}

fn samples_row(label: &str, samples: Option<&Samples>, decimals: usize, extra: &str) {
    let median = samples.and_then(Samples::median);
    let (min, max) = (samples.and_then(Samples::min), samples.and_then(Samples::max));
    println!(
        "  {label:<13} {:>10} {:>10} {:>10}   {extra}",
        fmt(median, decimals),
        fmt(min, decimals),
        fmt(max, decimals)
    );
}

/// Prints every table; returns (targets met, targets compared).
pub fn print(llama: &Results, ours: Option<&Results>, runs: usize, max_tokens: u32, seconds: u64) -> (usize, usize) {
    let mut verdicts = Vec::new();
    let servers: Vec<(&str, &Results)> =
        std::iter::once(("llama-server", llama)).chain(ours.map(|r| ("llmopsd", r))).collect();

    println!("\n== single-stream decode, tokens/s (median of {runs}, max_tokens {max_tokens}) ==");
    println!("  {:<13} {:>10} {:>10} {:>10}   completion tokens", "server", "median", "min", "max");
    for (label, results) in &servers {
        let tokens = results.decode.as_ref().map_or(String::new(), |d| list(&d.tokens));
        samples_row(label, results.decode.as_ref().map(|d| &d.tokens_per_second), 1, &tokens);
    }
    let median = |r: Option<&Results>| r.and_then(|r| r.decode.as_ref()).and_then(|d| d.tokens_per_second.median());
    verdicts.push(ratio_line(median(Some(llama)), median(ours), Target::AtLeast(0.95)));

    println!("\n== time to first token, ms (median of {runs}, max_tokens 1) ==");
    println!("  {:<13} {:>10} {:>10} {:>10}   prompt tokens", "server", "median", "min", "max");
    for (label, results) in &servers {
        let tokens = results.ttft.as_ref().map_or(String::new(), |t| list(&t.prompt_tokens));
        samples_row(label, results.ttft.as_ref().map(|t| &t.millis), 1, &tokens);
    }
    let median = |r: Option<&Results>| r.and_then(|r| r.ttft.as_ref()).and_then(|t| t.millis.median());
    verdicts.push(ratio_line(median(Some(llama)), median(ours), Target::AtMost(1.05)));

    for (i, reference) in llama.aggregate.iter().enumerate() {
        let clients = reference.clients;
        println!(
            "\n== aggregate decode, {clients} clients, tokens/s ({seconds} s closed loop, max_tokens {max_tokens}) =="
        );
        println!("  {:<13} {:>10} {:>10} {:>10} {:>10}", "server", "tokens/s", "answers", "tok/answer", "errors");
        for (label, results) in &servers {
            let Some(run) = results.aggregate.get(i) else { continue };
            let per_answer = (run.completed > 0).then(|| run.completed_tokens as f64 / run.completed as f64);
            println!(
                "  {label:<13} {:>10.1} {:>10} {:>10} {:>10}",
                run.tokens_per_second(),
                run.completed,
                fmt(per_answer, 1),
                run.errors
            );
            if let Some(error) = &run.first_error {
                println!("    first error: {error}");
            }
        }
        let ours_rate = ours.and_then(|r| r.aggregate.get(i)).map(Aggregate::tokens_per_second);
        verdicts.push(ratio_line(Some(reference.tokens_per_second()), ours_rate, Target::AtLeast(1.0)));
    }
    let compared: Vec<bool> = verdicts.into_iter().flatten().collect();
    (compared.iter().filter(|met| **met).count(), compared.len())
}
