//! The deterministic evaluators: each looks at one answer (its text, latency and cost) and says pass or fail,
//! with a short reason when it fails. The judges need a model and are run by the runner ([`super::judge`]).
use serde_json::Value;

use super::spec::{clip, Evaluator, EvaluatorKind};

/// The longest reasoning an outcome keeps (it is stored per item and shown in listings).
pub const MAX_REASONING_BYTES: usize = 512;
/// How much of an answer or an expected text a failure quotes.
const QUOTE_BYTES: usize = 160;

/// One item's answer as the evaluators see it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub output: &'a str,
    /// The item's reference answer; empty when it has none.
    pub reference: &'a str,
    pub latency_ms: f64,
    /// `None` when the route has no price.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// 0 to 1; deterministic checks give 1 or 0.
    pub score: f64,
    /// Why it failed (empty when it passed), at most [`MAX_REASONING_BYTES`].
    pub reasoning: String,
}

impl Outcome {
    pub(crate) fn new(name: &str, passed: bool, score: f64, reasoning: &str) -> Self {
        let score = if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 };
        Self { name: name.to_string(), passed, score, reasoning: clip(reasoning, MAX_REASONING_BYTES).to_string() }
    }
}

/// Scores one answer; `None` for `judge` and `pairwise` (the runner asks a model).
pub fn check(evaluator: &Evaluator, candidate: &Candidate) -> Option<Outcome> {
    let failure = match &evaluator.kind {
        EvaluatorKind::Exact { value } => exact(value.as_deref(), candidate),
        EvaluatorKind::Contains { value, ignore_case } => contains(value.as_deref(), *ignore_case, candidate),
        EvaluatorKind::Regex(regex) => (!regex.is_match(candidate.output))
            .then(|| format!("the answer does not match /{}/", clip(regex.as_str(), QUOTE_BYTES))),
        EvaluatorKind::JsonSchema(validator) => json_schema(validator, candidate.output),
        EvaluatorKind::MaxLatencyMs(max) => {
            let latency = candidate.latency_ms;
            (!(latency.is_finite() && latency <= *max)).then(|| format!("latency {latency:.0} ms > {max} ms"))
        }
        EvaluatorKind::MaxCostUsd(max) => match candidate.cost_usd {
            None => Some("cost unknown (route has no price)".to_string()),
            Some(cost) if cost.is_finite() && cost <= *max => None,
            Some(cost) => Some(format!("cost ${cost} > ${max}")),
        },
        EvaluatorKind::Judge { .. } | EvaluatorKind::Pairwise { .. } => return None,
    };
    Some(match failure {
        None => Outcome::new(&evaluator.name, true, 1.0, ""),
        Some(reason) => Outcome::new(&evaluator.name, false, 0.0, &reason),
    })
}

/// The text to compare with: the configured value, else the item's reference (which an item may lack: that is
/// a failure with its reason, rather than comparing with nothing).
fn expected<'a>(value: Option<&'a str>, candidate: &Candidate<'a>) -> Result<&'a str, String> {
    match value {
        Some(value) => Ok(value),
        None if candidate.reference.is_empty() => {
            Err("the item has no reference answer and the evaluator no `value`".to_string())
        }
        None => Ok(candidate.reference),
    }
}

fn exact(value: Option<&str>, candidate: &Candidate) -> Option<String> {
    let expected = match expected(value, candidate) {
        Ok(expected) => expected.trim(),
        Err(reason) => return Some(reason),
    };
    let output = candidate.output.trim();
    (output != expected).then(|| format!("expected {:?}, got {:?}", quote(expected), quote(output)))
}

fn contains(value: Option<&str>, ignore_case: bool, candidate: &Candidate) -> Option<String> {
    let needle = match expected(value, candidate) {
        Ok(needle) => needle,
        Err(reason) => return Some(reason),
    };
    let found = if ignore_case {
        candidate.output.to_lowercase().contains(&needle.to_lowercase())
    } else {
        candidate.output.contains(needle)
    };
    (!found).then(|| {
        let case = if ignore_case { " (ignoring case)" } else { "" };
        format!("the answer does not contain {:?}{case}", quote(needle))
    })
}

fn json_schema(validator: &jsonschema::Validator, output: &str) -> Option<String> {
    let instance = match parse_json_answer(output) {
        Ok(instance) => instance,
        Err(error) => return Some(format!("the answer is not JSON: {error}")),
    };
    validator.validate(&instance).err().map(|error| {
        let path = error.instance_path().as_str();
        format!("at {}: {error}", if path.is_empty() { "/" } else { path })
    })
}

/// Parses an answer as JSON: the whole (trimmed) text, or the first fenced code block (```json ... ```), which
/// chat models like to wrap JSON in.
pub(crate) fn parse_json_answer(output: &str) -> Result<Value, String> {
    let text = output.trim();
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(error) => match fenced(text) {
            Some(inner) => serde_json::from_str(inner.trim()).map_err(|e| e.to_string()),
            None => Err(error.to_string()),
        },
    }
}

/// The body of the first fenced block: after the opening ``` and its info string (`json`), up to the closing
/// ``` (or the end, for an answer cut off by its token limit).
pub(crate) fn fenced(text: &str) -> Option<&str> {
    let start = text.find("```")? + 3;
    let rest = &text[start..];
    let body = &rest[rest.find('\n')? + 1..];
    Some(body.find("```").map_or(body, |end| &body[..end]))
}

fn quote(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        text.to_string()
    } else {
        format!("{}…", clip(text, QUOTE_BYTES))
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
