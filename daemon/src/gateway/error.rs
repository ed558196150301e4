//! One error type for the HTTP API, mapped to a status code and an OpenAI-shaped body
//! (`{"error":{"message","type","code"}}`), so every SDK surfaces it the way it would from OpenAI.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Malformed or ill-typed input; the message names the field.
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("{0}")]
    ModelNotFound(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    /// The upstream could not be reached or answered with a server error.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    /// A stream that broke off after the client got its 200 (sent as the stream's last event).
    #[error("{0}")]
    StreamInterrupted(String),
    /// No engine of the route can take the request now (model not loaded, engine stopped).
    #[error("{0}")]
    EngineUnavailable(String),
    /// A budget with action `reject` (or the last target's `downgrade`) is spent; `message` names it and when
    /// it resets.
    #[error("{message}")]
    BudgetExceeded { message: String, retry_after_secs: u64 },
    /// The key's requests or tokens per minute are used up.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// No valid API key; `code` is OpenAI's (`invalid_api_key`, ...).
    #[error("{message}")]
    Unauthorized { message: String, code: &'static str },
    /// Refused before it is read: a browser origin or host that is not allowed.
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// A POST whose body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client did not send the body within `server.body_read_timeout_ms`.
    #[error("{0}")]
    BodyTimeout(String),
    /// The request names something in a state that refuses it now (feedback on a trace still running).
    #[error("{message}")]
    Conflict { message: String, code: &'static str },
    /// The daemon cannot take this now (a full write queue); nothing was done, a retry may succeed.
    #[error("{0}")]
    Busy(String),
    /// The daemon itself failed (e.g. its prompt store could not be read).
    #[error("{0}")]
    Internal(String),
    /// A guardrail rule with action `block` matched (or its classifier said unsafe, or failed closed). The
    /// message names the rule and the stage, never the matched text.
    #[error("{message}")]
    GuardrailBlocked { message: String },
    /// The upstream refused the request itself (4xx): passed through with its status and body.
    #[error("upstream answered {status}")]
    UpstreamRejected { status: StatusCode, body: serde_json::Value },
}

impl GatewayError {
    /// Refused by guardrail `rule` on `stage` (`input` or `output`); `why` says how, without the matched text.
    pub fn guardrail(rule: &str, stage: &str, why: &str) -> Self {
        Self::GuardrailBlocked { message: format!("blocked by guardrail `{rule}` on the {stage}: {why}") }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest { message: message.into(), param: None }
    }

    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest { message: message.into(), param: Some(param.into()) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::GuardrailBlocked { .. } => StatusCode::BAD_REQUEST,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Upstream(_) | Self::StreamInterrupted(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::EngineUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamRejected { status, .. } => *status,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BudgetExceeded { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The OpenAI `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::ModelNotFound(_)
            | Self::BodyTooLarge { .. }
            | Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::UnsupportedMediaType(_)
            | Self::BodyTimeout(_)
            | Self::Conflict { .. }
            | Self::GuardrailBlocked { .. } => "invalid_request_error",
            Self::NotFound(_) => "not_found_error",
            Self::Upstream(_) | Self::StreamInterrupted(_) | Self::UpstreamRejected { .. } => "upstream_error",
            Self::UpstreamTimeout(_) => "timeout_error",
            Self::EngineUnavailable(_) | Self::Busy(_) => "service_unavailable_error",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::Internal(_) => "server_error",
        }
    }

    /// The OpenAI `error.code`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::ModelNotFound(_) => Some("model_not_found"),
            Self::BodyTooLarge { .. } => Some("request_too_large"),
            Self::UpstreamTimeout(_) => Some("upstream_timeout"),
            Self::StreamInterrupted(_) => Some("stream_interrupted"),
            Self::EngineUnavailable(_) => Some("engine_unavailable"),
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::Unauthorized { code, .. } | Self::Forbidden { code, .. } | Self::Conflict { code, .. } => Some(code),
            Self::Busy(_) => Some("busy"),
            Self::GuardrailBlocked { .. } => Some("guardrail_blocked"),
            Self::UnsupportedMediaType(_) => Some("unsupported_media_type"),
            Self::BodyTimeout(_) => Some("request_timeout"),
            Self::BudgetExceeded { .. } => Some("budget_exceeded"),
            Self::RateLimited { .. } => Some("rate_limit_exceeded"),
            Self::Internal(_) => Some("internal_error"),
            _ => None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        if let Self::UpstreamRejected { body, .. } = self {
            if body.get("error").is_some() {
                return body.clone();
            }
        }
        let param = match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        };
        crate::engine::openai_error_body(&self.message(), self.error_type(), param, self.code())
    }

    /// The body as the last event of a stream that already answered 200.
    pub fn sse_event(&self) -> String {
        format!("data: {}\n\n", self.body())
    }

    /// The message as the client sees it (for upstream rejections, the upstream's own message).
    pub fn message(&self) -> String {
        if let Self::UpstreamRejected { body, status } = self {
            return body
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("upstream answered {status}"));
        }
        self.to_string()
    }
}

impl GatewayError {
    /// Seconds a client should wait before trying again, for `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::BudgetExceeded { retry_after_secs, .. } | Self::RateLimited { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::Busy(_) => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_secs() {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_openai_shaped_with_the_right_status() {
        let cases = [
            (GatewayError::invalid_param("messages", "missing field `messages`"), 400, "invalid_request_error"),
            (GatewayError::ModelNotFound("model x".into()), 404, "invalid_request_error"),
            (GatewayError::BodyTooLarge { limit: 10 }, 413, "invalid_request_error"),
            (GatewayError::Upstream("refused".into()), 502, "upstream_error"),
            (GatewayError::UpstreamTimeout("slow".into()), 504, "timeout_error"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            let body = error.body();
            assert_eq!(body["error"]["type"], kind);
            assert_eq!(body["error"]["message"], error.to_string());
            assert!(body["error"].get("code").is_some());
        }
    }

    #[test]
    fn upstream_rejection_keeps_the_upstream_body() {
        let body = json!({"error": {"message": "max_tokens too large", "type": "invalid_request_error", "code": null}});
        let error = GatewayError::UpstreamRejected { status: StatusCode::BAD_REQUEST, body: body.clone() };
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.body(), body);
        assert_eq!(error.message(), "max_tokens too large");
    }
}
