//! `score`'s arguments: the trace, the score's name, exactly one value, and an optional comment and source.
use clap::{ArgGroup, Args, ValueEnum};
use llmops_proto::v1::{add_score_request::Value, AddScoreRequest, ScoreSource};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("score_value").required(true).args(["value", "pass", "fail", "label"])))]
pub struct ScoreArgs {
    /// The trace id: the x-request-id the client got back (the ID column of `llmopsctl traces`)
    pub trace_id: String,

    /// The score's name, e.g. thumbs, helpfulness, correct (at most 64 bytes)
    pub name: String,

    /// A numeric score, e.g. 0.8 or -1
    #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = parse_finite)]
    pub value: Option<f64>,

    /// A pass/fail score that passed
    #[arg(long)]
    pub pass: bool,

    /// A pass/fail score that failed
    #[arg(long)]
    pub fail: bool,

    /// A category, e.g. off-topic (at most 256 bytes)
    #[arg(long, value_name = "L")]
    pub label: Option<String>,

    /// Why, in words (at most 4 KiB; not kept in privacy mode)
    #[arg(long, value_name = "C")]
    pub comment: Option<String>,

    /// Who scored: a person, an LLM judge or a check in code
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = SourceArg::Human)]
    pub source: SourceArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Human,
    Llm,
    Code,
}

impl ScoreArgs {
    pub fn request(&self) -> AddScoreRequest {
        let value = match (&self.value, &self.label) {
            (Some(number), _) => Value::Number(*number),
            (None, Some(label)) => Value::Label(label.clone()),
            // clap requires exactly one of the four, so neither a number nor a label is --pass or --fail.
            (None, None) => Value::Passed(self.pass),
        };
        let source = match self.source {
            SourceArg::Human => ScoreSource::Human,
            SourceArg::Llm => ScoreSource::Llm,
            SourceArg::Code => ScoreSource::Code,
        };
        AddScoreRequest {
            trace_id: self.trace_id.clone(),
            name: self.name.clone(),
            value: Some(value),
            comment: self.comment.clone().unwrap_or_default(),
            source: source as i32,
        }
    }
}

fn parse_finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err("expected a finite number, e.g. 0.8".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

    fn request(args: &[&str]) -> AddScoreRequest {
        let cli = parse(args).expect("parses");
        let Command::Score(score) = cli.command else { panic!("parsed as {:?}", cli.command) };
        score.request()
    }

    #[test]
    fn exactly_one_value_becomes_the_request() {
        let number = request(&["score", "t1", "quality", "--value", "-0.5", "--source", "llm", "--comment", "meh"]);
        assert_eq!(
            (number.value, number.source, number.comment.as_str()),
            (Some(Value::Number(-0.5)), ScoreSource::Llm as i32, "meh")
        );
        assert_eq!(request(&["score", "t1", "thumbs", "--pass"]).value, Some(Value::Passed(true)));
        let fail = request(&["score", "t1", "thumbs", "--fail"]);
        assert_eq!((fail.value, fail.source), (Some(Value::Passed(false)), ScoreSource::Human as i32));
        assert_eq!(request(&["score", "t1", "tone", "--label", "curt"]).value, Some(Value::Label("curt".into())));
    }

    #[test]
    fn no_value_two_values_or_a_bad_one_is_a_usage_error() {
        for args in [
            &["score", "t1", "thumbs"][..],
            &["score", "t1", "thumbs", "--pass", "--fail"],
            &["score", "t1", "thumbs", "--value", "1", "--label", "x"],
            &["score", "t1", "thumbs", "--value", "NaN"],
            &["score", "t1", "thumbs", "--value", "high"],
            &["score", "t1", "thumbs", "--pass", "--source", "robot"],
            &["score", "t1", "--pass"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
