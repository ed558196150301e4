//! Evaluation records to their `llmops.v1` messages, and the request side's checks of a `RunEvalRequest`.
use crate::evals::evaluate::judge::PairOutcome;
use crate::evals::store::{ComparisonRecord, RunRecord, RunStatus, StoredResult};
use crate::evals::{Dataset, DatasetItem, EvalError};
use llmops_proto::v1 as pb;
use tonic::Status;

pub fn status(error: EvalError) -> Status {
    match error {
        EvalError::Invalid(_) => Status::invalid_argument(error.to_string()),
        EvalError::NoSuchDataset(_) | EvalError::NoSuchRun(_) => Status::not_found(error.to_string()),
        EvalError::DatasetExists(_) => Status::already_exists(error.to_string()),
        EvalError::Full(_) => Status::resource_exhausted(error.to_string()),
        EvalError::Precondition(_) => Status::failed_precondition(error.to_string()),
        EvalError::Store(_) => Status::internal(error.to_string()),
    }
}

pub fn dataset_to_proto(d: &Dataset) -> pb::Dataset {
    pb::Dataset {
        name: d.name.clone(),
        description: d.description.clone(),
        route: d.route.clone(),
        evaluators_json: d.evaluators_json.clone(),
        items: d.items,
        created_at_unix_ms: d.created_at_unix_ms,
        updated_at_unix_ms: d.updated_at_unix_ms,
    }
}

fn json_or_empty(map: &serde_json::Map<String, serde_json::Value>) -> String {
    if map.is_empty() {
        String::new()
    } else {
        serde_json::Value::Object(map.clone()).to_string()
    }
}

pub fn item_to_proto(stored: &DatasetItem) -> pb::DatasetItem {
    let item = &stored.item;
    pb::DatasetItem {
        id: stored.id.to_string(),
        messages_json: serde_json::Value::Array(item.messages.clone()).to_string(),
        reference: item.reference.clone(),
        variables_json: json_or_empty(&item.variables),
        prompt: item.prompt.clone(),
        parameters_json: json_or_empty(&item.parameters),
        metadata_json: json_or_empty(&item.metadata),
        source_trace_id: item.source_trace_id.clone(),
        created_at_unix_ms: stored.created_at_unix_ms,
    }
}

fn run_status(status: RunStatus) -> pb::EvalStatus {
    match status {
        RunStatus::Running => pb::EvalStatus::Running,
        RunStatus::Passed => pb::EvalStatus::Passed,
        RunStatus::Failed => pb::EvalStatus::Failed,
        RunStatus::Error => pb::EvalStatus::Error,
        RunStatus::Cancelled => pb::EvalStatus::Cancelled,
    }
}

pub fn comparison_to_proto(record: &ComparisonRecord) -> pb::EvalComparison {
    let c = &record.comparison;
    pb::EvalComparison {
        baseline: record.baseline.clone(),
        paired: c.paired,
        wins: c.wins,
        ties: c.ties,
        losses: c.losses,
        mean_difference: c.mean_difference,
        ci_low: c.ci_low,
        ci_high: c.ci_high,
        regressed_items: c.regressed.clone(),
        improved_items: c.improved.clone(),
    }
}

pub fn run_to_proto(run: &RunRecord) -> pb::EvalRun {
    pb::EvalRun {
        id: run.id.clone(),
        dataset: run.dataset.clone(),
        route: run.route.clone(),
        prompt: run.prompt.clone(),
        baseline_run: run.baseline_run.clone(),
        against_route: run.against_route.clone(),
        status: run_status(run.status) as i32,
        verdict: run.verdict.clone(),
        items_total: run.items_total,
        items_done: run.items_done,
        items_passed: run.items_passed,
        items_errored: run.items_errored,
        evaluators: run
            .evaluators
            .iter()
            .map(|s| pb::EvaluatorSummary {
                name: s.name.clone(),
                kind: s.kind.clone(),
                passed: s.passed,
                scored: s.scored,
                pass_rate: s.pass_rate,
                mean_score: s.mean_score,
                threshold: s.threshold,
                ok: s.ok,
            })
            .collect(),
        comparison: run.comparison.as_ref().map(comparison_to_proto),
        started_at_unix_ms: run.started_at_unix_ms,
        finished_at_unix_ms: run.finished_at_unix_ms,
        evaluators_json: run.evaluators_json.clone(),
        parameters_json: run.parameters_json.clone(),
        by: run.by.clone(),
        judge_input_tokens: run.judge_input_tokens,
        judge_output_tokens: run.judge_output_tokens,
        cost_usd: run.cost_usd,
    }
}

pub fn result_to_proto(r: &StoredResult) -> pb::EvalItemResult {
    let pairwise = match r.pairwise {
        Some(PairOutcome::Win) => pb::PairOutcome::Win,
        Some(PairOutcome::Tie) => pb::PairOutcome::Tie,
        Some(PairOutcome::Loss) => pb::PairOutcome::Loss,
        None => pb::PairOutcome::Unspecified,
    };
    pb::EvalItemResult {
        item_id: r.item_id.to_string(),
        trace_id: r.trace_id.clone(),
        output: r.output.clone(),
        latency_ms: r.latency_ms,
        cost_usd: r.cost_usd.unwrap_or(-1.0),
        error: r.error.clone(),
        passed: r.passed,
        results: r
            .results
            .iter()
            .map(|o| pb::EvaluatorResult {
                name: o.name.clone(),
                passed: o.passed,
                score: o.score,
                reasoning: o.reasoning.clone(),
            })
            .collect(),
        reference: r.reference.clone(),
        input_preview: r.input_preview.clone(),
        against_trace_id: r.against_trace_id.clone(),
        against_output: r.against_output.clone(),
        pairwise: pairwise as i32,
        pairwise_reasoning: r.pairwise_reasoning.clone(),
    }
}
