//! Feedback scores in words, shared by JSON, `llmopsctl trace`, `llmopsctl metrics` and the console so they
//! always agree: the source's name, the kind of value and the value as text ("pass", "fail", "0.75", a label).
use llmops_proto::v1::score::Value;
use llmops_proto::v1::{Score, ScoreSource};

/// The score name the console's thumbs up / thumbs down keys record.
pub const THUMBS: &str = "thumbs";

pub fn source_name(source: i32) -> &'static str {
    match ScoreSource::try_from(source) {
        Ok(ScoreSource::Human) => "human",
        Ok(ScoreSource::Llm) => "llm",
        Ok(ScoreSource::Code) => "code",
        Ok(ScoreSource::Unspecified) | Err(_) => "unspecified",
    }
}

/// `number`, `boolean` or `label` (`none` for a score without a value, from a newer daemon).
pub fn kind_name(score: &Score) -> &'static str {
    match score.value {
        Some(Value::Number(_)) => "number",
        Some(Value::Passed(_)) => "boolean",
        Some(Value::Label(_)) => "label",
        None => "none",
    }
}

/// "pass", "fail", a number with up to four decimals ("0.75", "3"), or the label.
pub fn value_text(score: &Score) -> String {
    match &score.value {
        Some(Value::Passed(true)) => "pass".to_owned(),
        Some(Value::Passed(false)) => "fail".to_owned(),
        Some(Value::Number(number)) => number_text(*number),
        Some(Value::Label(label)) => label.clone(),
        None => "-".to_owned(),
    }
}

fn number_text(number: f64) -> String {
    let text = format!("{number:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(value: Option<Value>) -> Score {
        Score { value, ..Score::default() }
    }

    #[test]
    fn values_and_sources_in_words() {
        assert_eq!(value_text(&score(Some(Value::Passed(true)))), "pass");
        assert_eq!(value_text(&score(Some(Value::Passed(false)))), "fail");
        assert_eq!(value_text(&score(Some(Value::Number(0.75)))), "0.75");
        assert_eq!(value_text(&score(Some(Value::Number(3.0)))), "3");
        assert_eq!(value_text(&score(Some(Value::Number(-0.00001)))), "0");
        assert_eq!(value_text(&score(Some(Value::Label("curt".into())))), "curt");
        assert_eq!(value_text(&score(None)), "-");
        assert_eq!(kind_name(&score(Some(Value::Number(1.0)))), "number");
        let names: Vec<_> = (0..=4).map(source_name).collect();
        assert_eq!(names, ["unspecified", "human", "llm", "code", "unspecified"]);
    }
}
