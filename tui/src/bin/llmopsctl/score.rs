//! `llmopsctl score TRACE_ID NAME (--value X | --pass | --fail | --label L)`: a feedback score on a trace
//! through `FeedbackService.AddScore`, printed as stored.
use std::io::Write;

use llmops_tui::connect::Daemon;
use llmops_tui::json;
use llmops_tui::scores::{source_name, value_text};
use tonic::Code;

use super::cli::ScoreArgs;
use super::output::show;
use super::Failure;

pub async fn score(
    daemon: &Daemon,
    args: &ScoreArgs,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let score = match daemon.feedback().add_score(args.request()).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => return Err(Failure::NoSuchTrace(args.trace_id.clone())),
        Err(status) if matches!(status.code(), Code::InvalidArgument | Code::FailedPrecondition) => {
            return Err(Failure::Refused(format!("cannot score trace {}: {}", args.trace_id, status.message())));
        }
        Err(status) => return Err(rpc_failure(status)),
    };
    let text = || {
        format!(
            "scored trace {}: {} = {} ({}), score {}\n",
            score.trace_id,
            score.name,
            value_text(&score),
            source_name(score.source),
            score.id
        )
    };
    Ok(show(out, as_json, || json::score_to_json(&score), text)?)
}
