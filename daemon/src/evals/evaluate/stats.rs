//! A run's numbers and its verdict: pass rates per evaluator against their thresholds, and a paired comparison
//! with a baseline run over the same items. Pairing by item removes the items' own difficulty from the
//! difference, so a small dataset can still show a real regression; the interval is Student's t on the
//! per-item differences.
use super::check::Outcome;
use super::judge::PairOutcome;
use super::spec::{clip, Evaluator};

/// Item ids listed in a comparison (each of regressed and improved).
pub const MAX_LISTED_ITEMS: usize = 1000;
/// Regressed item ids a verdict line names.
const VERDICT_ITEMS: usize = 10;
/// A difference smaller than this is no difference (scores are fractions of evaluators).
const EPSILON: f64 = 1e-9;

/// Two-sided 95% critical values of Student's t for 1 to 30 degrees of freedom; 1.96 beyond.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorSummary {
    pub name: String,
    pub kind: &'static str,
    pub passed: u32,
    /// Items that have an outcome of this evaluator.
    pub scored: u32,
    /// 1 when nothing was scored.
    pub pass_rate: f64,
    /// 0 when nothing was scored.
    pub mean_score: f64,
    pub threshold: f64,
    pub ok: bool,
}

/// Per evaluator, over the items' outcomes (`results[i]`: item i's; items that errored are not passed). An
/// evaluator that scored nothing is ok: there is nothing to hold against it.
pub fn summarize(evaluators: &[Evaluator], results: &[Vec<Outcome>]) -> Vec<EvaluatorSummary> {
    evaluators
        .iter()
        .map(|evaluator| {
            let (mut passed, mut scored, mut total) = (0u32, 0u32, 0.0f64);
            for outcome in results.iter().flatten().filter(|o| o.name == evaluator.name) {
                scored = scored.saturating_add(1);
                passed = passed.saturating_add(u32::from(outcome.passed));
                total += if outcome.score.is_finite() { outcome.score.clamp(0.0, 1.0) } else { 0.0 };
            }
            let (pass_rate, mean_score) = if scored == 0 {
                (1.0, 0.0)
            } else {
                (f64::from(passed) / f64::from(scored), total / f64::from(scored))
            };
            EvaluatorSummary {
                name: evaluator.name.clone(),
                kind: evaluator.kind.type_name(),
                passed,
                scored,
                pass_rate,
                mean_score,
                threshold: evaluator.threshold,
                ok: scored == 0 || pass_rate + EPSILON >= evaluator.threshold,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    pub paired: u32,
    pub wins: u32,
    pub ties: u32,
    pub losses: u32,
    /// Candidate minus baseline, averaged over the pairs.
    pub mean_difference: f64,
    /// The 95% interval of the mean difference, within -1 to 1.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Item ids the candidate did worse on (at most [`MAX_LISTED_ITEMS`]).
    pub regressed: Vec<String>,
    pub improved: Vec<String>,
}

/// Paired per-item comparison: each pair is (item id, baseline score, candidate score), scores 0 to 1 (the
/// fraction of the item's evaluators that passed). A pair with a score that is not a number is left out.
pub fn compare_paired(pairs: &[(String, f64, f64)]) -> Comparison {
    let differences: Vec<(&str, f64)> = pairs
        .iter()
        .filter(|(_, baseline, candidate)| baseline.is_finite() && candidate.is_finite())
        .map(|(id, baseline, candidate)| (id.as_str(), candidate.clamp(0.0, 1.0) - baseline.clamp(0.0, 1.0)))
        .collect();
    compare(&differences)
}

/// The same statistics from a pairwise judge's results: a win is +1, a tie 0, a loss -1.
pub fn compare_pairwise(outcomes: &[(String, PairOutcome)]) -> Comparison {
    let differences: Vec<(&str, f64)> = outcomes
        .iter()
        .map(|(id, outcome)| {
            let d = match outcome {
                PairOutcome::Win => 1.0,
                PairOutcome::Tie => 0.0,
                PairOutcome::Loss => -1.0,
            };
            (id.as_str(), d)
        })
        .collect();
    compare(&differences)
}

fn compare(differences: &[(&str, f64)]) -> Comparison {
    let mut comparison = Comparison {
        paired: u32::try_from(differences.len()).unwrap_or(u32::MAX),
        wins: 0,
        ties: 0,
        losses: 0,
        mean_difference: 0.0,
        ci_low: -1.0,
        ci_high: 1.0,
        regressed: Vec::new(),
        improved: Vec::new(),
    };
    for &(id, d) in differences {
        if d > EPSILON {
            comparison.wins += 1;
            if comparison.improved.len() < MAX_LISTED_ITEMS {
                comparison.improved.push(id.to_string());
            }
        } else if d < -EPSILON {
            comparison.losses += 1;
            if comparison.regressed.len() < MAX_LISTED_ITEMS {
                comparison.regressed.push(id.to_string());
            }
        } else {
            comparison.ties += 1;
        }
    }
    let n = differences.len();
    if n == 0 {
        return comparison;
    }
    let count = n as f64;
    let mean = differences.iter().map(|(_, d)| d).sum::<f64>() / count;
    comparison.mean_difference = mean;
    if n < 2 {
        return comparison;
    }
    let variance = differences.iter().map(|(_, d)| (d - mean).powi(2)).sum::<f64>() / (count - 1.0);
    let sd = variance.sqrt();
    let half_width = if sd < EPSILON { 0.0 } else { t95(n - 1) * sd / count.sqrt() };
    comparison.ci_low = (mean - half_width).clamp(-1.0, 1.0);
    comparison.ci_high = (mean + half_width).clamp(-1.0, 1.0);
    comparison
}

fn t95(df: usize) -> f64 {
    df.checked_sub(1).and_then(|i| T95.get(i)).copied().unwrap_or(1.96)
}

/// A run's result, with one line saying why (`PASS: ...`, `FAIL: ...`, `ERROR: ...`).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Error(String),
}

/// The run's verdict. Error when items could not be run (`errored` of `total`; `first_error` is the first
/// one's message) or there were none; Fail when an evaluator missed its threshold or the comparison with the
/// baseline (named) is significantly worse (the whole interval below 0); else Pass.
pub fn verdict(
    total: u32,
    errored: u32,
    first_error: Option<&str>,
    summaries: &[EvaluatorSummary],
    comparison: Option<(&str, &Comparison)>,
) -> Verdict {
    if total == 0 {
        return Verdict::Error("ERROR: could not run: the dataset has no items".to_string());
    }
    if errored > 0 {
        let first = first_error.map(|e| format!(" (first: {})", one_line(e, 300))).unwrap_or_default();
        return Verdict::Error(format!("ERROR: could not run: {errored} of {total} items failed{first}"));
    }
    let mut failures: Vec<String> = summaries
        .iter()
        .filter(|s| !s.ok)
        .map(|s| {
            format!(
                "{} {}/{} passed ({}) < threshold {}",
                s.name,
                s.passed,
                s.scored,
                percent(s.pass_rate),
                percent(s.threshold)
            )
        })
        .collect();
    if let Some((baseline, c)) = comparison {
        if c.ci_high < 0.0 {
            failures.push(format!("significantly worse than {} ({})", one_line(baseline, 64), interval(c)));
        }
        if !failures.is_empty() && c.losses > 0 {
            failures.push(regressions(baseline, c));
        }
    }
    if !failures.is_empty() {
        return Verdict::Fail(format!("FAIL: {}", failures.join("; ")));
    }
    let evaluators: Vec<String> = summaries.iter().map(|s| format!("{} {}/{}", s.name, s.passed, s.scored)).collect();
    let mut line = format!("PASS: {total} items");
    if !evaluators.is_empty() {
        line.push_str(&format!("; {}", evaluators.join(", ")));
    }
    if let Some((baseline, c)) = comparison {
        line.push_str(&format!(
            "; vs {}: {} wins, {} ties, {} losses ({})",
            one_line(baseline, 64),
            c.wins,
            c.ties,
            c.losses,
            interval(c)
        ));
    }
    Verdict::Pass(line)
}

/// `3 regressions vs run-4: 2, 5, 9` (the first ten ids).
fn regressions(baseline: &str, c: &Comparison) -> String {
    let ids: Vec<String> = c.regressed.iter().take(VERDICT_ITEMS).map(|id| one_line(id, 64)).collect();
    let more = if c.losses as usize > ids.len() { ", ..." } else { "" };
    let noun = if c.losses == 1 { "regression" } else { "regressions" };
    format!("{} {noun} vs {}: {}{more}", c.losses, one_line(baseline, 64), ids.join(", "))
}

fn interval(c: &Comparison) -> String {
    format!("mean difference {:+.2}, 95% CI [{:.2}, {:.2}]", c.mean_difference, c.ci_low, c.ci_high)
}

/// `70%`, `66.7%`: whole percents when exact, else one decimal.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-6 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A caller's text made fit for a one-line verdict: bounded, newlines as spaces.
fn one_line(text: &str, max: usize) -> String {
    clip(text, max).replace(['\n', '\r'], " ")
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
