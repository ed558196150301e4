//! The end of a run: per-evaluator summaries, the paired comparison (against a route, a baseline run, or
//! the pairwise judge's outcomes) and the verdict, from the items' stored results. Also the comparison of two
//! finished runs (`CompareEvalRuns`).
use super::evaluate::check::Outcome;
use super::evaluate::judge::PairOutcome;
use super::evaluate::spec::Evaluator;
use super::evaluate::stats;
use super::store::{ComparisonRecord, EvalStore, RunRecord, RunStatus, StoredResult, SummaryRecord};
use super::EvalError;
use std::collections::HashMap;

/// Summaries, the comparison and the verdict, from the items' results.
pub fn finish(
    run: &mut RunRecord,
    evaluators: &[Evaluator],
    baseline: &HashMap<u32, StoredResult>,
    results: &[StoredResult],
    cancelled: bool,
) {
    run.finished_at_unix_ms = crate::clock::unix_ms();
    // By item id, so the regressed and improved items are listed in dataset order.
    let mut answered: Vec<&StoredResult> = results.iter().filter(|r| r.error.is_empty()).collect();
    answered.sort_by_key(|r| r.item_id);
    let outcomes: Vec<Vec<Outcome>> = answered
        .iter()
        .map(|r| {
            r.results
                .iter()
                .map(|o| Outcome { name: o.name.clone(), passed: o.passed, score: o.score, reasoning: String::new() })
                .collect()
        })
        .collect();
    let summaries = stats::summarize(evaluators, &outcomes);
    let comparison = compare(run, baseline, &answered);
    let first_error = results
        .iter()
        .filter(|r| !r.error.is_empty())
        .min_by_key(|r| r.item_id)
        .map(|r| format!("item {}: {}", r.item_id, r.error));
    let baseline_name = comparison.as_ref().map(|(name, _)| name.clone());
    let verdict = stats::verdict(
        run.items_total,
        run.items_errored,
        first_error.as_deref(),
        &summaries,
        comparison.as_ref().map(|(_, c)| (baseline_name.as_deref().unwrap_or(""), c)),
    );
    run.evaluators = summaries.into_iter().map(summary_record).collect();
    run.comparison = comparison.map(|(baseline, c)| comparison_record(baseline, c));
    (run.status, run.verdict) = match verdict {
        _ if cancelled => {
            (RunStatus::Cancelled, format!("cancelled after {} of {} items", run.items_done, run.items_total))
        }
        stats::Verdict::Pass(line) => (RunStatus::Passed, line),
        stats::Verdict::Fail(line) => (RunStatus::Failed, line),
        stats::Verdict::Error(line) => (RunStatus::Error, line),
    };
}

/// Paired per item: the pairwise judge's outcomes when there is one, else each item's score against the
/// against route's answer or the baseline run's result.
fn compare(
    run: &RunRecord,
    baseline_results: &HashMap<u32, StoredResult>,
    answered: &[&StoredResult],
) -> Option<(String, stats::Comparison)> {
    let baseline = if !run.against_route.is_empty() {
        format!("route:{}", run.against_route)
    } else if !run.baseline_run.is_empty() {
        run.baseline_run.clone()
    } else {
        return None;
    };
    let pairwise: Vec<(String, PairOutcome)> =
        answered.iter().filter_map(|r| Some((r.item_id.to_string(), r.pairwise?))).collect();
    if !pairwise.is_empty() {
        return Some((baseline, stats::compare_pairwise(&pairwise)));
    }
    let pairs: Vec<(String, f64, f64)> = answered
        .iter()
        .filter_map(|r| {
            let base = match r.against_score {
                Some(score) => score,
                None => baseline_results.get(&r.item_id).filter(|b| b.error.is_empty())?.score,
            };
            Some((r.item_id.to_string(), base, r.score))
        })
        .collect();
    Some((baseline, stats::compare_paired(&pairs)))
}

fn summary_record(s: stats::EvaluatorSummary) -> SummaryRecord {
    SummaryRecord {
        name: s.name,
        kind: s.kind.to_string(),
        passed: s.passed,
        scored: s.scored,
        pass_rate: s.pass_rate,
        mean_score: s.mean_score,
        threshold: s.threshold,
        ok: s.ok,
    }
}

fn comparison_record(baseline: String, comparison: stats::Comparison) -> ComparisonRecord {
    ComparisonRecord { baseline, comparison }
}

/// Two finished runs of one dataset, item by item (answered in both): candidate minus baseline.
pub fn compare_runs(store: &EvalStore, baseline: &str, candidate: &str) -> Result<ComparisonRecord, EvalError> {
    let (base, cand) = (store.run(baseline)?, store.run(candidate)?);
    if base.dataset != cand.dataset {
        return Err(EvalError::Precondition(format!(
            "{} ran dataset `{}` and {} ran `{}`: only runs of one dataset compare",
            base.id, base.dataset, cand.id, cand.dataset
        )));
    }
    if base.status == RunStatus::Running || cand.status == RunStatus::Running {
        return Err(EvalError::Precondition("both runs must have finished".into()));
    }
    let base_results: HashMap<u32, StoredResult> =
        store.results(&base.id)?.into_iter().filter(|r| r.error.is_empty()).map(|r| (r.item_id, r)).collect();
    let pairs: Vec<(String, f64, f64)> = store
        .results(&cand.id)?
        .into_iter()
        .filter(|r| r.error.is_empty())
        .filter_map(|r| base_results.get(&r.item_id).map(|b| (r.item_id.to_string(), b.score, r.score)))
        .collect();
    Ok(comparison_record(base.id, stats::compare_paired(&pairs)))
}
