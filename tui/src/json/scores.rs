//! `--json` for feedback scores: a trace's scores (`trace`, `score`) and the score rates of `metrics`.
use llmops_proto::v1::score::Value as ScoreValue;
use llmops_proto::v1::{Score, ScoreRate};
use serde_json::{json, Value};

use crate::scores::{kind_name, source_name};

/// `value` is a number, a boolean or a string, as `kind` says (`null` without one).
pub fn score_to_json(score: &Score) -> Value {
    let value = match &score.value {
        Some(ScoreValue::Number(number)) => json!(number),
        Some(ScoreValue::Passed(passed)) => json!(passed),
        Some(ScoreValue::Label(label)) => json!(label),
        None => Value::Null,
    };
    json!({
        "id": score.id,
        "trace_id": score.trace_id,
        "name": score.name,
        "kind": kind_name(score),
        "value": value,
        "comment": score.comment,
        "source": source_name(score.source),
        "created_at_unix_ms": score.created_at_unix_ms,
    })
}

pub fn score_rate_to_json(rate: &ScoreRate) -> Value {
    json!({
        "route": rate.route,
        "prompt_id": rate.prompt_id,
        "prompt_version": rate.prompt_version,
        "name": rate.name,
        "source": rate.source,
        "scores": rate.scores,
        "booleans": rate.booleans,
        "passed": rate.passed,
        "pass_rate": rate.pass_rate,
        "numbers": rate.numbers,
        "mean": rate.mean,
        "labels": rate.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmops_proto::v1::ScoreSource;

    #[test]
    fn scores_keep_their_typed_value() {
        let score = Score {
            id: "s".into(),
            trace_id: "t".into(),
            name: "thumbs".into(),
            value: Some(ScoreValue::Passed(false)),
            source: ScoreSource::Human as i32,
            created_at_unix_ms: 5,
            ..Score::default()
        };
        let json = score_to_json(&score);
        assert_eq!(json["value"], json!(false));
        assert_eq!(json["kind"], "boolean");
        assert_eq!(json["source"], "human");
        assert_eq!(score_to_json(&Score::default())["value"], Value::Null);
        let rate = score_rate_to_json(&ScoreRate { pass_rate: Some(0.5), ..ScoreRate::default() });
        assert_eq!((rate["pass_rate"].as_f64(), rate["mean"].is_null()), (Some(0.5), true));
    }
}
