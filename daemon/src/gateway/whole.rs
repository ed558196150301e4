//! Whole (non-streamed) answers: read within the request deadline and a size bound, checked by the output
//! guardrails, recorded, kept for the response cache when asked, and passed on (unchanged unless masked).
use super::answer::{read_whole, MAX_UPSTREAM_BODY_BYTES};
use super::error::GatewayError;
use super::proxy::fail;
use super::request::Endpoint;
use super::trace_guard::{AnswerSummary, TraceGuard};
use super::usage::estimate_tokens;
use crate::cache::CachedBody;
use crate::engine::Answer;
use crate::guardrails::Guardrails;
use crate::shutdown::Shutdown;
use crate::trace::TraceStatus;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::time::Instant;

/// Output guardrails for a whole answer.
pub struct WholeOutput<'a> {
    pub guardrails: &'a Guardrails,
    pub selected: Vec<usize>,
}

/// A non-streaming answer: read it whole (within the request deadline), record it, pass it on unchanged.
pub async fn complete(
    endpoint: Endpoint,
    mut guard: TraceGuard,
    upstream: Answer,
    deadline: Instant,
    mut closing: Shutdown,
    output: WholeOutput<'_>,
) -> Response {
    let engine = guard.trace_mut().engine.clone();
    let read = tokio::select! {
        read = tokio::time::timeout_at(deadline.into(), read_whole(upstream, MAX_UPSTREAM_BODY_BYTES)) => read,
        _ = closing.wait() => {
            return fail(guard, GatewayError::Upstream("the daemon is shutting down; the answer was not complete".into()));
        }
    };
    let parsed = match read {
        Err(_) => {
            Err(GatewayError::UpstreamTimeout(format!("engine {engine} did not finish within the request timeout")))
        }
        Ok(Err(e)) => Err(GatewayError::Upstream(format!("engine {engine}: reading the answer failed: {e}"))),
        Ok(Ok(bytes)) => serde_json::from_slice::<Value>(&bytes)
            .map(|value| (bytes, value))
            .map_err(|e| GatewayError::Upstream(format!("engine {engine} sent invalid JSON: {e}"))),
    };
    let (mut bytes, mut value) = match parsed {
        Ok(ok) => ok,
        Err(error) => {
            guard.end_attempt(Some(error.message()));
            return fail(guard, error);
        }
    };
    guard.end_attempt(None);
    let text = response_text(endpoint, &value);
    let usage = value.get("usage").filter(|u| u.is_object()).map(|usage| {
        let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
        (count("prompt_tokens"), count("completion_tokens"))
    });
    let summary = AnswerSummary {
        counted_output: estimate_tokens(&text),
        text,
        finish_reason: value.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or_default().into(),
        model: value.get("model").and_then(Value::as_str).map(str::to_string),
        usage,
        ..AnswerSummary::default()
    };
    guard.record_answer(summary);
    // Not seen token by token: the whole answer counts toward the last interval's energy share.
    let output_tokens = guard.trace_mut().output_tokens;
    guard.add_tokens(output_tokens);
    if !output.selected.is_empty() {
        match super::guardrail::check_output(output.guardrails, &output.selected, endpoint, &mut value, &mut guard) {
            Err(error) => return fail(guard, error),
            Ok(true) => bytes = Bytes::from(value.to_string()),
            Ok(false) => {}
        }
    }
    if guard.wants_cache_answer() {
        guard.cache_answer(CachedBody::Whole(bytes.clone()));
    }
    guard.finish(TraceStatus::Ok, 200);
    ([(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response()
}

/// The whole body of a non-streaming answer.
fn response_text(endpoint: Endpoint, value: &Value) -> String {
    match endpoint {
        Endpoint::ChatCompletions => {
            let message = value.pointer("/choices/0/message");
            let mut text =
                message.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or_default().to_string();
            super::tool_calls::ToolCalls::from_message(message).append_to(&mut text);
            return text;
        }
        Endpoint::Completions => value.pointer("/choices/0/text"),
        Endpoint::Embeddings => {
            let data = value.get("data").and_then(Value::as_array);
            let count = data.map_or(0, Vec::len);
            // A list of floats, or base64 of little-endian f32s (4 bytes, 4/3 longer in base64).
            let dims = match data.and_then(|d| d.first()).and_then(|e| e.get("embedding")) {
                Some(Value::Array(values)) => values.len(),
                Some(Value::String(base64)) => base64.trim_end_matches('=').len() * 3 / 4 / 4,
                _ => 0,
            };
            return format!("{count} embeddings of {dims} dimensions");
        }
    }
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_string()
}
