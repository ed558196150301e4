use super::*;
use crate::evals::evaluate::spec::parse;

fn one(json: &str) -> Evaluator {
    parse(&format!("[{json}]")).unwrap().remove(0)
}

fn answer<'a>(output: &'a str, reference: &'a str) -> Candidate<'a> {
    Candidate { output, reference, latency_ms: 100.0, cost_usd: Some(0.0001) }
}

fn run(json: &str, candidate: &Candidate) -> Outcome {
    check(&one(json), candidate).unwrap()
}

#[test]
fn exact_trims_and_uses_the_reference() {
    let pass = run(r#"{"type":"exact"}"#, &answer("  Paris\n", "Paris "));
    assert_eq!(pass, Outcome { name: "exact".into(), passed: true, score: 1.0, reasoning: String::new() });
    let fail = run(r#"{"type":"exact"}"#, &answer("Lyon", "Paris"));
    assert!(!fail.passed && fail.score == 0.0);
    assert_eq!(fail.reasoning, r#"expected "Paris", got "Lyon""#);
    assert!(run(r#"{"type":"exact","value":"42"}"#, &answer("42", "unused")).passed);
    assert!(!run(r#"{"type":"exact","value":"42"}"#, &answer("42.0", "42.0")).passed);
    let no_reference = run(r#"{"type":"exact"}"#, &answer("", ""));
    assert!(!no_reference.passed && no_reference.reasoning.contains("no reference"));
}

#[test]
fn contains_with_value_reference_and_case() {
    assert!(run(r#"{"type":"contains","value":"Paris"}"#, &answer("It is Paris.", "")).passed);
    let fail = run(r#"{"type":"contains","value":"Paris"}"#, &answer("it is paris.", ""));
    assert!(!fail.passed && fail.reasoning.contains("does not contain \"Paris\""), "{}", fail.reasoning);
    assert!(run(r#"{"type":"contains","value":"PARIS","ignore_case":true}"#, &answer("it is paris.", "")).passed);
    assert!(run(r#"{"type":"contains"}"#, &answer("the answer is 42", "42")).passed);
    assert!(!run(r#"{"type":"contains"}"#, &answer("the answer is 41", "42")).passed);
    assert!(!run(r#"{"type":"contains"}"#, &answer("anything", "")).passed, "nothing to look for is a failure");
}

#[test]
fn regex_matches_the_output() {
    assert!(run(r#"{"type":"regex","pattern":"^\\d+$"}"#, &answer("12345", "")).passed);
    let fail = run(r#"{"type":"regex","pattern":"^\\d+$"}"#, &answer("12a45", ""));
    assert!(!fail.passed && fail.reasoning == r"the answer does not match /^\d+$/", "{}", fail.reasoning);
    // Linear time even on input that makes backtracking engines explode.
    let hostile = format!("{}!", "a".repeat(100_000));
    assert!(!run(r#"{"type":"regex","pattern":"^(a+)+$"}"#, &answer(&hostile, "")).passed);
}

#[test]
fn json_schema_parses_plain_and_fenced_answers() {
    let evaluator =
        r#"{"type":"json_schema","schema":{"type":"object","required":["a"],"properties":{"a":{"type":"integer"}}}}"#;
    assert!(run(evaluator, &answer(r#"  {"a": 1}  "#, "")).passed);
    assert!(run(evaluator, &answer("Here it is:\n```json\n{\"a\": 2}\n```\n", "")).passed);
    assert!(run(evaluator, &answer("```\n{\"a\": 3}\n```", "")).passed);
    let missing = run(evaluator, &answer(r#"{"b": 1}"#, ""));
    assert!(!missing.passed && missing.reasoning.starts_with("at /:") && missing.reasoning.contains("\"a\""));
    let wrong = run(evaluator, &answer(r#"{"a": "one"}"#, ""));
    assert!(!wrong.passed && wrong.reasoning.starts_with("at /a:"), "{}", wrong.reasoning);
    let prose = run(evaluator, &answer("I cannot answer that.", ""));
    assert!(!prose.passed && prose.reasoning.starts_with("the answer is not JSON"), "{}", prose.reasoning);
    let long = run(evaluator, &answer(&format!(r#"{{"a": "{}"}}"#, "é".repeat(5000)), ""));
    assert!(!long.passed && long.reasoning.len() <= MAX_REASONING_BYTES);
}

#[test]
fn latency_and_cost_limits() {
    let mut candidate = answer("x", "");
    assert!(run(r#"{"type":"max_latency_ms","value":100}"#, &candidate).passed);
    candidate.latency_ms = 2500.0;
    let slow = run(r#"{"type":"max_latency_ms","value":2000}"#, &candidate);
    assert!(!slow.passed && slow.reasoning == "latency 2500 ms > 2000 ms", "{}", slow.reasoning);
    candidate.latency_ms = f64::NAN;
    assert!(!run(r#"{"type":"max_latency_ms","value":2000}"#, &candidate).passed);

    assert!(run(r#"{"type":"max_cost_usd","value":0.001}"#, &candidate).passed);
    candidate.cost_usd = Some(0.01);
    let costly = run(r#"{"type":"max_cost_usd","value":0.001}"#, &candidate);
    assert!(!costly.passed && costly.reasoning.contains("0.01"));
    candidate.cost_usd = None;
    let unknown = run(r#"{"type":"max_cost_usd","value":0.001}"#, &candidate);
    assert!(!unknown.passed && unknown.reasoning == "cost unknown (route has no price)");
}

#[test]
fn judges_are_left_to_the_runner() {
    let candidate = answer("x", "y");
    assert!(check(&one(r#"{"type":"judge","rubric":"r"}"#), &candidate).is_none());
    assert!(check(&one(r#"{"type":"pairwise","rubric":"r"}"#), &candidate).is_none());
}

#[test]
fn reasoning_is_bounded_on_a_char_boundary() {
    let outcome = Outcome::new("n", false, 7.0, &"é".repeat(600));
    assert!(outcome.reasoning.len() <= MAX_REASONING_BYTES && outcome.reasoning.chars().all(|c| c == 'é'));
    assert_eq!(outcome.score, 1.0);
    assert_eq!(Outcome::new("n", false, f64::NAN, "").score, 0.0);
}

#[test]
fn fenced_blocks() {
    assert_eq!(fenced("```json\n{}\n```"), Some("{}\n"));
    assert_eq!(fenced("```json\n{\"cut off\""), Some("{\"cut off\""));
    assert_eq!(fenced("no fence"), None);
}
