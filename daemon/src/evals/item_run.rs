//! One item of a run: the candidate request, the answer it is compared with (the against route's or the
//! baseline run's), every evaluator on the answer (deterministic checks here, LLM judges through the gateway)
//! and the pairwise judge in both orders.
use super::evaluate::check::{self, Candidate, Outcome};
use super::evaluate::judge::{self, PairOutcome, Preference};
use super::evaluate::spec::{Evaluator, EvaluatorKind};
use super::item::DatasetItem;
use super::request::{self, Role, Shape};
use super::store::{OutcomeRecord, StoredResult};
use super::{limits, truncate};
use crate::gateway::Gateway;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// What every item of a run shares.
pub(super) struct ItemContext {
    pub gateway: Arc<Gateway>,
    pub run_id: String,
    pub route: String,
    pub against_route: String,
    pub evaluators: Vec<Evaluator>,
    pub shape: Shape,
    pub judge_route: String,
    pub baseline: HashMap<u32, StoredResult>,
}

/// The answer a candidate is compared with: the against route's, or the baseline run's.
struct Other {
    trace_id: String,
    output: String,
    latency_ms: f64,
    cost_usd: Option<f64>,
}

/// Judge tokens read and written.
pub(super) type JudgeTokens = (u64, u64);

impl ItemContext {
    pub async fn evaluate(&self, item: DatasetItem) -> (StoredResult, JudgeTokens) {
        let mut result = StoredResult {
            item_id: item.id,
            reference: truncate(&item.item.reference, limits::MAX_OUTPUT_BYTES).to_string(),
            input_preview: item.item.input_preview(),
            ..StoredResult::default()
        };
        let mut tokens = (0, 0);
        let body = request::item_body(&item.item, &self.route, &self.shape);
        let answer = request::send(&self.gateway, request::tags(&self.run_id, item.id, Role::Candidate), &body).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                result.error = error;
                return (result, tokens);
            }
        };
        result.trace_id = answer.trace.id.clone();
        result.latency_ms = answer.trace.latency_ms;
        result.cost_usd = answer.trace.cost_usd;
        result.output = truncate(&answer.trace.response_text, limits::MAX_OUTPUT_BYTES).to_string();
        if let Some(failure) = answer.failure() {
            result.error = failure;
            return (result, tokens);
        }
        let question = judge::question_text(&Value::Array(item.item.messages.clone()));
        let other = if self.against_route.is_empty() {
            self.baseline.get(&item.id).filter(|b| b.error.is_empty()).map(|b| Other {
                trace_id: b.trace_id.clone(),
                output: b.output.clone(),
                latency_ms: b.latency_ms,
                cost_usd: b.cost_usd,
            })
        } else {
            let body = request::item_body(&item.item, &self.against_route, &self.shape);
            match request::send(&self.gateway, request::tags(&self.run_id, item.id, Role::Against), &body).await {
                Ok(against) if against.failure().is_none() => Some(Other {
                    trace_id: against.trace.id.clone(),
                    output: against.trace.response_text.clone(),
                    latency_ms: against.trace.latency_ms,
                    cost_usd: against.trace.cost_usd,
                }),
                Ok(against) => {
                    result.error = format!("against route: {}", against.failure().unwrap_or_default());
                    return (result, tokens);
                }
                Err(error) => {
                    result.error = format!("against route: {error}");
                    return (result, tokens);
                }
            }
        };
        let candidate = Candidate {
            output: &answer.trace.response_text,
            reference: &item.item.reference,
            latency_ms: answer.trace.latency_ms,
            cost_usd: answer.trace.cost_usd,
        };
        match self.score(item.id, &question, &candidate, &mut tokens).await {
            Ok(outcomes) => {
                let passed = outcomes.iter().filter(|o| o.passed).count();
                result.passed = passed == outcomes.len();
                result.score = if outcomes.is_empty() { 1.0 } else { passed as f64 / outcomes.len() as f64 };
                result.results = outcomes.into_iter().map(outcome_record).collect();
            }
            Err(error) => {
                result.error = error;
                return (result, tokens);
            }
        }
        if let Some(other) = other {
            let output = other.output;
            result.against_trace_id = other.trace_id;
            result.against_output = truncate(&output, limits::MAX_OUTPUT_BYTES).to_string();
            if !self.against_route.is_empty() {
                // The against answer is scored too, so the comparison is like for like.
                let against = Candidate {
                    output: &output,
                    reference: &item.item.reference,
                    latency_ms: other.latency_ms,
                    cost_usd: other.cost_usd,
                };
                match self.score(item.id, &question, &against, &mut tokens).await {
                    Ok(outcomes) => {
                        let passed = outcomes.iter().filter(|o| o.passed).count();
                        let base = if outcomes.is_empty() { 1.0 } else { passed as f64 / outcomes.len() as f64 };
                        result.pairwise_reasoning = format!("against score {base:.3}");
                        result.against_score = Some(base);
                    }
                    Err(error) => {
                        result.error = error;
                        return (result, tokens);
                    }
                }
            }
            if let Some(pairwise) =
                self.pairwise(item.id, &question, &answer.trace.response_text, &output, &mut tokens).await
            {
                match pairwise {
                    Ok((outcome, reasoning)) => {
                        result.pairwise = Some(outcome);
                        result.pairwise_reasoning = reasoning;
                    }
                    Err(error) => result.error = error,
                }
            }
        }
        (result, tokens)
    }

    /// Every evaluator but the pairwise one, on one answer.
    async fn score(
        &self,
        item_id: u32,
        question: &str,
        candidate: &Candidate<'_>,
        tokens: &mut JudgeTokens,
    ) -> Result<Vec<Outcome>, String> {
        let mut outcomes = Vec::new();
        for evaluator in &self.evaluators {
            if let Some(outcome) = check::check(evaluator, candidate) {
                outcomes.push(outcome);
                continue;
            }
            let EvaluatorKind::Judge { rubric, route, min_score } = &evaluator.kind else { continue };
            let route = self.route_for(route)?;
            let input =
                judge::JudgeInput { rubric, question, reference: candidate.reference, answer: candidate.output };
            let body = judge::single_body(route, &input);
            let text = self.ask_judge(item_id, &body, tokens).await?;
            let outcome = match judge::parse_verdict(&text) {
                Ok(verdict) => judge::verdict_outcome(&evaluator.name, *min_score, &verdict),
                Err(error) => Outcome {
                    name: evaluator.name.clone(),
                    passed: false,
                    score: 0.0,
                    reasoning: format!("the judge's answer was not a verdict: {}", truncate(&error, 256)),
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The pairwise judge, both orders; `None` when the run has none.
    async fn pairwise(
        &self,
        item_id: u32,
        question: &str,
        candidate: &str,
        other: &str,
        tokens: &mut JudgeTokens,
    ) -> Option<Result<(PairOutcome, String), String>> {
        let (rubric, route) = self.evaluators.iter().find_map(|e| match &e.kind {
            EvaluatorKind::Pairwise { rubric, route } => Some((rubric, route)),
            _ => None,
        })?;
        Some(
            async {
                let route = self.route_for(route)?;
                let first = judge::pairwise_body(route, rubric, question, candidate, other);
                let first = judge::parse_preference(&self.ask_judge(item_id, &first, tokens).await?);
                let second = judge::pairwise_body(route, rubric, question, other, candidate);
                let second = judge::parse_preference(&self.ask_judge(item_id, &second, tokens).await?);
                let ((first, why_first), (second, why_second)) = match (first, second) {
                    (Ok(first), Ok(second)) => (first, second),
                    _ => ((Preference::Tie, String::new()), (Preference::Tie, String::new())),
                };
                let outcome = judge::combine(first, second);
                Ok((
                    outcome,
                    truncate(&format!("candidate shown first: {why_first} | shown second: {why_second}"), 2048)
                        .to_string(),
                ))
            }
            .await,
        )
    }

    fn route_for<'a>(&'a self, own: &'a str) -> Result<&'a str, String> {
        let route = if own.is_empty() { self.judge_route.as_str() } else { own };
        if route.is_empty() {
            return Err(
                "no judge route: no route is served by the embedded engine; set the evaluator's route or --judge-route"
                    .into(),
            );
        }
        Ok(route)
    }

    async fn ask_judge(&self, item_id: u32, body: &Value, tokens: &mut JudgeTokens) -> Result<String, String> {
        let answer = request::send(&self.gateway, request::tags(&self.run_id, item_id, Role::Judge), body).await?;
        tokens.0 += answer.trace.input_tokens;
        tokens.1 += answer.trace.output_tokens;
        if let Some(failure) = answer.failure() {
            return Err(format!("judge: {failure}"));
        }
        Ok(answer.trace.response_text)
    }
}

fn outcome_record(outcome: Outcome) -> OutcomeRecord {
    OutcomeRecord { name: outcome.name, passed: outcome.passed, score: outcome.score, reasoning: outcome.reasoning }
}
