use super::*;
use crate::evals::evaluate::spec::parse;

fn outcome(name: &str, passed: bool, score: f64) -> Outcome {
    Outcome { name: name.into(), passed, score, reasoning: String::new() }
}

fn pairs(scores: &[(f64, f64)]) -> Vec<(String, f64, f64)> {
    scores.iter().enumerate().map(|(i, &(b, c))| (i.to_string(), b, c)).collect()
}

fn summaries() -> (Vec<Evaluator>, Vec<Vec<Outcome>>) {
    let evaluators =
        parse(r#"[{"type":"contains","value":"x"},{"type":"judge","rubric":"r","threshold":0.5},{"type":"exact"}]"#)
            .unwrap();
    let results = (0..10)
        .map(|i| vec![outcome("contains", i < 7, if i < 7 { 1.0 } else { 0.0 }), outcome("judge", i % 2 == 0, 0.6)])
        .collect();
    (evaluators, results)
}

#[test]
fn summarize_counts_against_thresholds() {
    let (evaluators, results) = summaries();
    let s = summarize(&evaluators, &results);
    assert_eq!(s.len(), 3);
    assert_eq!((s[0].name.as_str(), s[0].kind, s[0].passed, s[0].scored), ("contains", "contains", 7, 10));
    assert!((s[0].pass_rate - 0.7).abs() < 1e-12 && (s[0].mean_score - 0.7).abs() < 1e-12);
    assert!(!s[0].ok, "70% < 100%");
    assert_eq!((s[1].passed, s[1].scored, s[1].threshold), (5, 10, 0.5));
    assert!(s[1].ok && (s[1].mean_score - 0.6).abs() < 1e-12);
    // Nothing scored: ok, no NaN.
    assert_eq!((s[2].scored, s[2].pass_rate, s[2].mean_score, s[2].ok), (0, 1.0, 0.0, true));
    assert!(summarize(&evaluators, &[]).iter().all(|s| s.ok && s.pass_rate == 1.0));
}

#[test]
fn all_regressed_is_significant_and_fails_naming_items() {
    let comparison = compare_paired(&pairs(&[(1.0, 0.0); 12]));
    assert_eq!((comparison.paired, comparison.wins, comparison.ties, comparison.losses), (12, 0, 0, 12));
    assert_eq!((comparison.mean_difference, comparison.ci_low, comparison.ci_high), (-1.0, -1.0, -1.0));
    assert_eq!(comparison.regressed.len(), 12);
    assert!(comparison.improved.is_empty());
    let Verdict::Fail(line) = verdict(12, 0, None, &[], Some(("run-4", &comparison))) else { panic!() };
    assert!(line.starts_with("FAIL: significantly worse than run-4"), "{line}");
    assert!(line.contains("12 regressions vs run-4: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..."), "{line}");
    assert!(!line.contains("10, 11") && !line.contains('\n'));
}

#[test]
fn no_change_passes() {
    let comparison = compare_paired(&pairs(&[(1.0, 1.0), (0.5, 0.5), (0.0, 0.0), (1.0, 1.0)]));
    assert_eq!((comparison.wins, comparison.ties, comparison.losses), (0, 4, 0));
    assert_eq!((comparison.mean_difference, comparison.ci_low, comparison.ci_high), (0.0, 0.0, 0.0));
    let (evaluators, _) = summaries();
    let results: Vec<Vec<Outcome>> = (0..4).map(|_| vec![outcome("contains", true, 1.0)]).collect();
    let s = summarize(&evaluators, &results);
    let Verdict::Pass(line) = verdict(4, 0, None, &s, Some(("run-4", &comparison))) else { panic!() };
    assert!(line.starts_with("PASS: 4 items; contains 4/4"), "{line}");
    assert!(line.contains("vs run-4: 0 wins, 4 ties, 0 losses"), "{line}");
}

#[test]
fn small_samples_have_wide_intervals() {
    let none = compare_paired(&[]);
    assert_eq!((none.paired, none.mean_difference, none.ci_low, none.ci_high), (0, 0.0, -1.0, 1.0));
    let one = compare_paired(&pairs(&[(1.0, 0.0)]));
    assert_eq!((one.losses, one.mean_difference, one.ci_low, one.ci_high), (1, -1.0, -1.0, 1.0));
    // Two items, one lost and one unchanged: mean -0.5, sd 0.7071, t(1) = 12.706: the interval is clipped.
    let two = compare_paired(&pairs(&[(1.0, 0.0), (1.0, 1.0)]));
    assert_eq!((two.mean_difference, two.ci_low, two.ci_high), (-0.5, -1.0, 1.0));
    let Verdict::Pass(_) = verdict(2, 0, None, &[], Some(("base", &two))) else { panic!("not significant") };
    // Five items: d = -0.5, -0.5, -0.5, 0, 0: mean -0.3, sd 0.2739, se 0.1225, t(4) = 2.776.
    let five = compare_paired(&pairs(&[(1.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 0.5), (1.0, 1.0)]));
    assert!((five.mean_difference + 0.3).abs() < 1e-12);
    assert!((five.ci_low - (-0.3 - 2.776 * 0.122_474_487)).abs() < 1e-6, "{five:?}");
    assert!((five.ci_high - (-0.3 + 2.776 * 0.122_474_487)).abs() < 1e-6, "{five:?}");
    assert!(five.ci_high > 0.0);
    // Beyond 30 degrees of freedom the normal value is used.
    assert_eq!(t95(1), 12.706);
    assert_eq!(t95(30), 2.042);
    assert_eq!(t95(31), 1.96);
    assert_eq!(t95(0), 1.96);
}

#[test]
fn non_finite_scores_are_left_out_and_lists_are_capped() {
    let comparison = compare_paired(&[("a".into(), f64::NAN, 1.0), ("b".into(), 0.0, 1.0)]);
    assert_eq!((comparison.paired, comparison.wins, comparison.improved.clone()), (1, 1, vec!["b".to_string()]));
    let many = compare_paired(&pairs(&vec![(0.0, 1.0); 1500]));
    assert_eq!((many.wins, many.improved.len()), (1500, MAX_LISTED_ITEMS));
}

#[test]
fn pairwise_outcomes_compare_the_same_way() {
    let outcomes: Vec<(String, PairOutcome)> =
        [PairOutcome::Win, PairOutcome::Win, PairOutcome::Tie, PairOutcome::Loss]
            .into_iter()
            .enumerate()
            .map(|(i, o)| (format!("item-{i}"), o))
            .collect();
    let c = compare_pairwise(&outcomes);
    assert_eq!((c.paired, c.wins, c.ties, c.losses), (4, 2, 1, 1));
    assert!((c.mean_difference - 0.25).abs() < 1e-12);
    assert_eq!(c.regressed, ["item-3"]);
    assert_eq!(c.improved, ["item-0", "item-1"]);
    let all_lost: Vec<(String, PairOutcome)> = (0..5).map(|i| (i.to_string(), PairOutcome::Loss)).collect();
    assert_eq!(compare_pairwise(&all_lost).ci_high, -1.0);
}

#[test]
fn verdict_errors_before_anything_else() {
    let (evaluators, results) = summaries();
    let s = summarize(&evaluators, &results);
    let v = verdict(10, 2, Some("route `x`: upstream\ntimed out"), &s, None);
    assert_eq!(
        v,
        Verdict::Error("ERROR: could not run: 2 of 10 items failed (first: route `x`: upstream timed out)".into())
    );
    let Verdict::Error(line) = verdict(10, 1, None, &s, None) else { panic!() };
    assert_eq!(line, "ERROR: could not run: 1 of 10 items failed");
    let Verdict::Error(line) = verdict(0, 0, None, &[], None) else { panic!() };
    assert!(line.contains("no items"));
}

#[test]
fn threshold_failures_name_the_evaluator_and_regressions() {
    let (evaluators, results) = summaries();
    let s = summarize(&evaluators, &results);
    let Verdict::Fail(line) = verdict(10, 0, None, &s, None) else { panic!() };
    assert_eq!(line, "FAIL: contains 7/10 passed (70%) < threshold 100%");
    let comparison = compare_paired(&pairs(&[(1.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]));
    let Verdict::Fail(line) = verdict(10, 0, None, &s, Some(("run-4", &comparison))) else { panic!() };
    assert_eq!(line, "FAIL: contains 7/10 passed (70%) < threshold 100%; 2 regressions vs run-4: 2, 5");
}

#[test]
fn percents_are_exact_or_one_decimal() {
    assert_eq!(percent(0.7), "70%");
    assert_eq!(percent(2.0 / 3.0), "66.7%");
    assert_eq!(percent(1.0), "100%");
    assert_eq!(percent(0.995), "99.5%");
}
