//! Datasets, runs and item results as JSON (`--json`, `eval run --jsonl`), and their status names.
use llmops_proto::v1::{
    Dataset, DatasetItem, EvalComparison, EvalItemResult, EvalRun, EvalStatus, EvaluatorSummary, PairOutcome,
};
use serde_json::{json, Value};

pub fn status_name(status: i32) -> &'static str {
    match EvalStatus::try_from(status).unwrap_or(EvalStatus::Unspecified) {
        EvalStatus::Running => "RUNNING",
        EvalStatus::Passed => "PASSED",
        EvalStatus::Failed => "FAILED",
        EvalStatus::Error => "ERROR",
        EvalStatus::Cancelled => "CANCELLED",
        EvalStatus::Unspecified => "UNKNOWN",
    }
}

pub fn pair_name(outcome: i32) -> &'static str {
    match PairOutcome::try_from(outcome).unwrap_or(PairOutcome::Unspecified) {
        PairOutcome::Win => "win",
        PairOutcome::Tie => "tie",
        PairOutcome::Loss => "loss",
        PairOutcome::Unspecified => "",
    }
}

/// A JSON string field as the value it holds (empty: absent as `null`).
fn parsed(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub fn dataset_json(d: &Dataset) -> Value {
    json!({
        "name": d.name,
        "description": d.description,
        "route": d.route,
        "evaluators": parsed(&d.evaluators_json),
        "items": d.items,
        "created_at_unix_ms": d.created_at_unix_ms,
        "updated_at_unix_ms": d.updated_at_unix_ms,
    })
}

/// The JSONL shape `dataset import` reads (fields that are empty are left out).
pub fn item_jsonl(item: &DatasetItem) -> Value {
    let mut line = serde_json::Map::new();
    line.insert("messages".into(), parsed(&item.messages_json));
    line.insert("reference".into(), Value::String(item.reference.clone()));
    for (key, text) in
        [("variables", &item.variables_json), ("parameters", &item.parameters_json), ("metadata", &item.metadata_json)]
    {
        if !text.is_empty() {
            line.insert(key.into(), parsed(text));
        }
    }
    if !item.prompt.is_empty() {
        line.insert("prompt".into(), Value::String(item.prompt.clone()));
    }
    Value::Object(line)
}

fn summary_json(s: &EvaluatorSummary) -> Value {
    json!({
        "name": s.name, "kind": s.kind, "passed": s.passed, "scored": s.scored, "pass_rate": s.pass_rate,
        "mean_score": s.mean_score, "threshold": s.threshold, "ok": s.ok,
    })
}

pub fn comparison_json(c: &EvalComparison) -> Value {
    json!({
        "baseline": c.baseline, "paired": c.paired, "wins": c.wins, "ties": c.ties, "losses": c.losses,
        "mean_difference": c.mean_difference, "ci95": [c.ci_low, c.ci_high],
        "regressed_items": c.regressed_items, "improved_items": c.improved_items,
    })
}

pub fn run_json(r: &EvalRun) -> Value {
    json!({
        "id": r.id,
        "dataset": r.dataset,
        "route": r.route,
        "prompt": r.prompt,
        "baseline_run": r.baseline_run,
        "against_route": r.against_route,
        "status": status_name(r.status),
        "verdict": r.verdict,
        "items_total": r.items_total,
        "items_done": r.items_done,
        "items_passed": r.items_passed,
        "items_errored": r.items_errored,
        "evaluators": r.evaluators.iter().map(summary_json).collect::<Vec<_>>(),
        "comparison": r.comparison.as_ref().map(comparison_json),
        "started_at_unix_ms": r.started_at_unix_ms,
        "finished_at_unix_ms": r.finished_at_unix_ms,
        "by": r.by,
        "judge_input_tokens": r.judge_input_tokens,
        "judge_output_tokens": r.judge_output_tokens,
        "cost_usd": r.cost_usd,
    })
}

pub fn item_result_json(i: &EvalItemResult) -> Value {
    json!({
        "item_id": i.item_id,
        "trace_id": i.trace_id,
        "passed": i.passed && i.error.is_empty(),
        "error": i.error,
        "output": i.output,
        "reference": i.reference,
        "input_preview": i.input_preview,
        "latency_ms": i.latency_ms,
        "cost_usd": (i.cost_usd >= 0.0).then_some(i.cost_usd),
        "results": i.results.iter().map(|r| json!({
            "name": r.name, "passed": r.passed, "score": r.score, "reasoning": r.reasoning,
        })).collect::<Vec<_>>(),
        "against_trace_id": i.against_trace_id,
        "against_output": i.against_output,
        "pairwise": Some(pair_name(i.pairwise)).filter(|p| !p.is_empty()),
        "pairwise_reasoning": i.pairwise_reasoning,
    })
}
