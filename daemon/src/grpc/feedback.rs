//! `llmops.v1.FeedbackService`: scores on traces over gRPC, through the same service as `POST /v1/feedback`
//! (the operator's API: any tenant's trace may be scored).
use crate::feedback::validate::NewScore;
use crate::feedback::{Feedback, FeedbackError};
use crate::trace::{Score, ScoreSource, ScoreValue};
use llmops_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct FeedbackApi {
    pub feedback: Arc<Feedback>,
}

#[tonic::async_trait]
impl pb::feedback_service_server::FeedbackService for FeedbackApi {
    async fn add_score(&self, request: Request<pb::AddScoreRequest>) -> Result<Response<pb::Score>, Status> {
        let request = request.into_inner();
        let value = match request.value {
            Some(pb::add_score_request::Value::Number(number)) => ScoreValue::Number(number),
            Some(pb::add_score_request::Value::Passed(passed)) => ScoreValue::Passed(passed),
            Some(pb::add_score_request::Value::Label(label)) => ScoreValue::Label(label),
            None => return Err(Status::invalid_argument("value: one of number, passed or label is required")),
        };
        let source = match pb::ScoreSource::try_from(request.source) {
            Ok(source) => source_from_proto(source),
            Err(_) => return Err(Status::invalid_argument(format!("source: unknown value {}", request.source))),
        };
        let new = NewScore { trace_id: request.trace_id, name: request.name, value, comment: request.comment, source };
        let score = self.feedback.add(new, None).await.map_err(status)?;
        Ok(Response::new(score_to_proto(&score)))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let trace_id = request.into_inner().trace_id;
        if trace_id.is_empty() || trace_id.len() > crate::feedback::validate::MAX_TRACE_ID_BYTES {
            return Err(Status::invalid_argument("trace_id: empty or longer than 64 bytes"));
        }
        let scores = self.feedback.list(&trace_id).await.map_err(status)?;
        Ok(Response::new(pb::ListScoresResponse { scores: scores.iter().map(score_to_proto).collect() }))
    }
}

/// Feedback refusals as gRPC statuses; an invalid field is named first, as `field: reason`.
fn status(error: FeedbackError) -> Status {
    let message = error.to_string();
    match error {
        FeedbackError::Invalid(invalid) => match invalid.param {
            Some(param) => Status::invalid_argument(format!("{param}: {message}")),
            None => Status::invalid_argument(message),
        },
        FeedbackError::TooMany(_) => Status::invalid_argument(format!("trace_id: {message}")),
        FeedbackError::UnknownTrace(_) => Status::not_found(message),
        FeedbackError::StillRunning(_) => Status::failed_precondition(message),
        FeedbackError::Busy(_) => Status::unavailable(message),
        FeedbackError::Store(_) => Status::internal(message),
    }
}

fn source_from_proto(source: pb::ScoreSource) -> ScoreSource {
    match source {
        pb::ScoreSource::Unspecified | pb::ScoreSource::Human => ScoreSource::Human,
        pb::ScoreSource::Llm => ScoreSource::Llm,
        pb::ScoreSource::Code => ScoreSource::Code,
    }
}

fn source_to_proto(source: ScoreSource) -> pb::ScoreSource {
    match source {
        ScoreSource::Human => pb::ScoreSource::Human,
        ScoreSource::Llm => pb::ScoreSource::Llm,
        ScoreSource::Code => pb::ScoreSource::Code,
    }
}

pub fn score_to_proto(score: &Score) -> pb::Score {
    let value = match &score.value {
        ScoreValue::Number(number) => pb::score::Value::Number(*number),
        ScoreValue::Passed(passed) => pb::score::Value::Passed(*passed),
        ScoreValue::Label(label) => pb::score::Value::Label(label.clone()),
    };
    pb::Score {
        id: score.id.clone(),
        trace_id: score.trace_id.clone(),
        name: score.name.clone(),
        value: Some(value),
        comment: score.comment.clone(),
        source: source_to_proto(score.source) as i32,
        created_at_unix_ms: score.created_at_unix_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn refusals_map_to_codes_naming_the_field() {
        let invalid = crate::feedback::validate::Invalid { param: Some("label".into()), message: "too long".into() };
        let cases = [
            (FeedbackError::Invalid(invalid), Code::InvalidArgument, "label: too long"),
            (FeedbackError::TooMany("trace t already has 100 scores".into()), Code::InvalidArgument, "trace_id: "),
            (FeedbackError::UnknownTrace("t".into()), Code::NotFound, "no trace"),
            (FeedbackError::StillRunning("t".into()), Code::FailedPrecondition, "still running"),
            (FeedbackError::Busy("full".into()), Code::Unavailable, "full"),
        ];
        for (error, code, text) in cases {
            let status = status(error);
            assert_eq!(status.code(), code);
            assert!(status.message().contains(text), "{status:?}");
        }
    }

    #[test]
    fn scores_keep_their_value_and_source() {
        let score = Score {
            id: "s".into(),
            trace_id: "t".into(),
            name: "tone".into(),
            value: ScoreValue::Label("curt".into()),
            comment: "c".into(),
            source: ScoreSource::Code,
            created_at_unix_ms: 9,
        };
        let proto = score_to_proto(&score);
        assert_eq!(proto.value, Some(pb::score::Value::Label("curt".into())));
        assert_eq!(proto.source, pb::ScoreSource::Code as i32);
        assert_eq!(source_from_proto(pb::ScoreSource::Unspecified), ScoreSource::Human);
    }
}
