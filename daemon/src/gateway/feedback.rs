//! `POST /v1/feedback`: a score on a trace from the client that made the request (its `x-request-id`). Like
//! the generation endpoints it is authenticated before its body is read, and the body is bounded (a score is
//! small, so far below `server.max_body_bytes`); a client scores only its own tenant's traces. Answers 201 with
//! the stored score, or an OpenAI-shaped error naming the field.
use super::{authenticate, read_body, refusals, Gateway, GatewayError};
use crate::feedback::validate::{NewScore, MAX_BODY_BYTES};
use crate::feedback::{score_json, FeedbackError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn post_feedback(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let principal = match authenticate(&gateway, &headers) {
        Ok(principal) => principal,
        Err(error) => {
            gateway.refusals.count(refusals::Refused::Unauthenticated);
            return error.into_response();
        }
    };
    let limit = MAX_BODY_BYTES.min(gateway.max_body_bytes);
    let bytes = match read_body(body, limit, gateway.body_read_timeout).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let score = match NewScore::from_json(&bytes) {
        Ok(score) => score,
        Err(invalid) => {
            return GatewayError::InvalidRequest { message: invalid.message, param: invalid.param }.into_response()
        }
    };
    match gateway.feedback.add(score, Some(&principal.tenant)).await {
        Ok(score) => (StatusCode::CREATED, axum::Json(score_json(&score))).into_response(),
        Err(error) => http_error(error).into_response(),
    }
}

fn http_error(error: FeedbackError) -> GatewayError {
    let message = error.to_string();
    match error {
        FeedbackError::Invalid(invalid) => GatewayError::InvalidRequest { message, param: invalid.param },
        FeedbackError::UnknownTrace(_) => GatewayError::NotFound(message),
        // A hard limit, not a rate: 400 (an SDK would retry a 429 in vain).
        FeedbackError::TooMany(_) => GatewayError::invalid_param("trace_id", message),
        FeedbackError::StillRunning(_) => GatewayError::Conflict { message, code: "trace_in_flight" },
        FeedbackError::Busy(_) => GatewayError::Busy(message),
        FeedbackError::Store(_) => GatewayError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::validate::Invalid;

    #[test]
    fn each_refusal_has_its_status_and_names_what_it_can() {
        let invalid = Invalid { param: Some("name".into()), message: "`name` must not be empty".into() };
        let cases = [
            (FeedbackError::Invalid(invalid), 400, Some("name")),
            (FeedbackError::UnknownTrace("t".into()), 404, None),
            (FeedbackError::TooMany("trace t already has 100 scores".into()), 400, Some("trace_id")),
            (FeedbackError::StillRunning("t".into()), 409, None),
            (FeedbackError::Busy("queue full".into()), 503, None),
            (FeedbackError::Store("disk I/O error".into()), 500, None),
        ];
        for (error, status, param) in cases {
            let text = error.to_string();
            let error = http_error(error);
            assert_eq!(error.status().as_u16(), status, "{text}");
            let body = error.body();
            assert_eq!(body["error"]["message"], text);
            assert_eq!(body["error"]["param"].as_str(), param, "{body}");
        }
        assert_eq!(http_error(FeedbackError::Busy("full".into())).retry_after_secs(), Some(1));
    }
}
