//! Both servers run side by side and take turns, so that slow drift on a noisy machine (other processes,
//! clock and cache effects) hits both alike: single requests alternate llama-server, llmopsd,
//! llama-server, ... and aggregate windows alternate the same way. The headline numbers are the medians of
//! the ratios of neighbouring measurements (llmopsd / llama-server), not the ratio of two medians taken
//! minutes apart. Only one server works at a time; the other idles.
use std::time::Duration;

use anyhow::Context;

use crate::measure::{self, Aggregate, Metric, Samples, Series};
use crate::server::Server;

/// `runs` rounds of one `metric` request per server, in the order of `servers`, after one unmeasured
/// warm-up round (the first use of a prompt size or answer length may allocate). Returns one series per
/// server; the i-th values of all series were measured back to back. Fails on the first failed request.
pub async fn alternate(
    client: &reqwest::Client,
    servers: &[&Server],
    metric: Metric,
    runs: usize,
) -> anyhow::Result<Vec<Series>> {
    let mut all: Vec<Series> = servers.iter().map(|_| Series::default()).collect();
    for run in 0..=runs {
        for (server, series) in servers.iter().zip(&mut all) {
            let sample = measure::once(client, server, metric).await.with_context(|| {
                format!("{} {} run {run}/{runs} (0: warm-up)\n{}", server.label, metric.name(), server.log_tail())
            })?;
            if run > 0 {
                series.values.0.push(sample.value);
                series.tokens.extend(sample.tokens);
            }
        }
    }
    Ok(all)
}

/// `rounds` rounds of one aggregate window of `clients` clients per server, in the order of `servers`.
/// Returns, per server, its windows in order.
pub async fn alternate_windows(
    servers: &[&Server],
    clients: usize,
    window: Duration,
    rounds: usize,
    max_tokens: u32,
    request_timeout: Duration,
) -> anyhow::Result<Vec<Vec<Aggregate>>> {
    let mut all: Vec<Vec<Aggregate>> = servers.iter().map(|_| Vec::with_capacity(rounds)).collect();
    for round in 1..=rounds {
        for (server, windows) in servers.iter().zip(&mut all) {
            eprintln!("round {round}/{rounds}: {} with {clients} clients for {} s", server.label, window.as_secs());
            windows.push(measure::aggregate(server, clients, window, max_tokens, request_timeout).await?);
        }
    }
    Ok(all)
}

/// `b[i] / a[i]` of each pair (as far as both go).
pub fn paired_ratios(a: &[f64], b: &[f64]) -> Samples {
    Samples(a.iter().zip(b).map(|(a, b)| b / a.max(f64::EPSILON)).collect())
}

/// The per-round ratios of the aggregate rates of `b` over those of `a`.
pub fn window_ratios(a: &[Aggregate], b: &[Aggregate]) -> Samples {
    let rates = |windows: &[Aggregate]| windows.iter().map(Aggregate::tokens_per_second).collect::<Vec<_>>();
    paired_ratios(&rates(a), &rates(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratio_cancels_drift() {
        // The machine slows down by half between the pairs; b is 10% slower than a within each pair.
        let a = [100.0, 50.0, 100.0];
        let b = [90.0, 45.0, 90.0];
        let ratios = paired_ratios(&a, &b);
        assert_eq!(ratios.0.len(), 3);
        let median = ratios.median().expect("three ratios");
        assert!((median - 0.9).abs() < 1e-9, "{median}");
    }

    #[test]
    fn medians_of_odd_even_and_empty() {
        assert_eq!(Samples(vec![3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(Samples(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Samples(Vec::new()).median(), None);
    }

    #[test]
    fn windows_sum_and_compare() {
        let window = |tokens, completed| Aggregate {
            clients: 4,
            tokens,
            completed,
            completed_tokens: completed * 10,
            window: Duration::from_secs(10),
            ..Aggregate::default()
        };
        let a = [window(1000, 5), window(500, 2)];
        let b = [window(1100, 6), window(550, 3)];
        let total = Aggregate::total(&a);
        assert_eq!((total.clients, total.tokens, total.completed), (4, 1500, 7));
        assert_eq!(total.window, Duration::from_secs(20));
        assert!((total.tokens_per_second() - 75.0).abs() < 1e-9);
        let ratios = window_ratios(&a, &b);
        assert!(ratios.0.iter().all(|r| (r - 1.1).abs() < 1e-9), "{ratios:?}");
    }
}
