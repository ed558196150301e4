//! Streaming answers: each upstream SSE event is forwarded the moment it is complete (no coalescing), while
//! the trace collects text, token timing and usage. A client that goes away cancels the upstream request; an
//! upstream that breaks off mid-stream ends the client's stream with an explicit error event.
use super::proxy::estimate_tokens;
use super::trace_guard::TraceGuard;
use crate::trace::TraceStatus;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc;

/// Events buffered towards a slow client before the upstream read waits for it.
const CLIENT_BUFFER: usize = 64;

pub fn respond(
    guard: TraceGuard,
    upstream: reqwest::Response,
    client_wants_usage: bool,
    attempt_start: f64,
    deadline: Instant,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(CLIENT_BUFFER);
    tokio::spawn(pump(guard, upstream, tx, client_wants_usage, attempt_start, deadline));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// How the stream ended.
enum End {
    Done,
    ClientGone,
    Cut(String),
    Timeout,
}

async fn pump(
    mut guard: TraceGuard,
    upstream: reqwest::Response,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    client_wants_usage: bool,
    attempt_start: f64,
    deadline: Instant,
) {
    let mut bytes = upstream.bytes_stream();
    let mut events = SseSplitter::default();
    let mut seen = StreamSummary::default();
    let end = 'read: loop {
        let next = tokio::select! {
            _ = tx.closed() => break 'read End::ClientGone,
            _ = tokio::time::sleep_until(deadline.into()) => break 'read End::Timeout,
            next = bytes.next() => next,
        };
        let chunk = match next {
            None if seen.done || seen.finish_reason.is_some() => break End::Done,
            None => break End::Cut("the engine closed the stream before the answer was complete".into()),
            Some(Err(error)) => break End::Cut(format!("the engine's stream broke off: {error}")),
            Some(Ok(chunk)) => chunk,
        };
        for event in events.push(&chunk) {
            let forward = seen.observe(&event, guard.elapsed_ms(), client_wants_usage);
            if forward && tx.send(Ok(Bytes::from(format!("{event}\n\n")))).await.is_err() {
                break 'read End::ClientGone;
            }
        }
        if seen.done {
            break End::Done;
        }
    };
    // Dropping the upstream body closes its connection: that is what cancels the engine's work.
    drop(bytes);
    let engine = guard.trace_mut().engine.clone();
    let failure = match &end {
        End::Done | End::ClientGone => None,
        End::Cut(message) => Some(("stream_interrupted", format!("engine {engine}: {message}"))),
        End::Timeout => {
            Some(("upstream_timeout", format!("engine {engine} did not finish within the request timeout")))
        }
    };
    if let Some((code, message)) = &failure {
        let event = json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}});
        let _ = tx.send(Ok(Bytes::from(format!("data: {event}\n\n")))).await;
    }
    fill_trace(&mut guard, seen, attempt_start, failure.as_ref().map(|(_, m)| m.clone()));
    match end {
        End::Done => guard.finish(TraceStatus::Ok, 200),
        // The guard's Drop records `cancelled`.
        End::ClientGone => drop(guard),
        End::Cut(_) | End::Timeout => {
            let trace = guard.trace_mut();
            trace.error_type = "upstream_error".into();
            trace.finish_reason = "error".into();
            // The client already got 200 and the error event; the trace says what happened.
            guard.finish(TraceStatus::Error, 200);
        }
    }
}

fn fill_trace(guard: &mut TraceGuard, seen: StreamSummary, attempt_start: f64, error: Option<String>) {
    let elapsed = guard.elapsed_ms();
    let trace = guard.trace_mut();
    if let Some(attempt) = trace.attempts.last_mut() {
        attempt.latency_ms = elapsed - attempt_start;
        attempt.ttft_ms = seen.chunk_offsets_ms.first().map(|first| first - attempt_start);
        if let Some(error) = &error {
            attempt.error = error.clone();
        }
    }
    if let Some(error) = error {
        trace.error_message = error;
    }
    if let Some(model) = seen.model {
        trace.model_served = model;
    }
    trace.ttft_ms = seen.chunk_offsets_ms.first().copied();
    trace.finish_reason = seen.finish_reason.unwrap_or_default();
    match seen.usage {
        Some((input, output)) => {
            trace.input_tokens = input;
            trace.output_tokens = output;
        }
        None => {
            // The engine ignored include_usage: count chunks (one token each on OpenAI-compatible servers).
            trace.input_tokens = estimate_tokens(&trace.prompt_text);
            trace.output_tokens = seen.content_chunks;
            trace.tokens_estimated = true;
        }
    }
    trace.response_text = seen.text;
    trace.chunk_offsets_ms = seen.chunk_offsets_ms;
}

/// Splits a byte stream into SSE events (the text between blank lines), across chunk boundaries.
#[derive(Default)]
pub struct SseSplitter {
    buffer: String,
    /// Bytes of a UTF-8 character split across chunks.
    partial: Vec<u8>,
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(error) => error.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&self.partial[..valid]).replace("\r\n", "\n");
        self.buffer.push_str(&text);
        self.partial.drain(..valid);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let event: String = self.buffer.drain(..end + 2).collect();
            let event = event.trim_end_matches('\n');
            if !event.is_empty() {
                events.push(event.to_string());
            }
        }
        events
    }
}

/// What the stream said so far.
#[derive(Default, Debug)]
pub struct StreamSummary {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<(u64, u64)>,
    pub model: Option<String>,
    pub content_chunks: u64,
    pub chunk_offsets_ms: Vec<f64>,
    pub done: bool,
}

impl StreamSummary {
    /// Notes one event; returns whether the client should get it (a usage-only chunk is held back from a
    /// client that did not ask for usage: the daemon asked for it on its own account).
    pub fn observe(&mut self, event: &str, offset_ms: f64, client_wants_usage: bool) -> bool {
        let data: String = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect::<Vec<_>>()
            .join("\n");
        if data.trim() == "[DONE]" {
            self.done = true;
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else { return true };
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_string());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some((count("prompt_tokens"), count("completion_tokens")));
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        let Some(choice) = choices.and_then(|c| c.first()) else {
            return client_wants_usage || self.usage.is_none();
        };
        let delta = choice.get("delta");
        let content = delta
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let has_tool_call = delta.and_then(|d| d.get("tool_calls")).is_some_and(|t| !t.is_null());
        if !content.is_empty() || has_tool_call {
            self.text.push_str(content);
            self.content_chunks += 1;
            self.chunk_offsets_ms.push(offset_ms);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_handles_events_across_chunks_and_crlf() {
        let mut splitter = SseSplitter::default();
        assert!(splitter.push(b"data: {\"a\":").is_empty());
        assert_eq!(splitter.push(b"1}\n\ndata: [DONE]\r\n\r\n"), ["data: {\"a\":1}", "data: [DONE]"]);
        // A multi-byte character split between chunks survives.
        let bytes = "data: é\n\n".as_bytes();
        assert!(splitter.push(&bytes[..7]).is_empty());
        assert_eq!(splitter.push(&bytes[7..]), ["data: é"]);
    }

    #[test]
    fn summary_collects_text_timing_usage_and_hides_unasked_usage() {
        let mut summary = StreamSummary::default();
        let role = r#"data: {"model":"m","choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        assert!(summary.observe(role, 1.0, false));
        assert!(summary.observe(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#, 2.0, false));
        assert!(summary.observe(
            r#"data: {"choices":[{"delta":{"content":" there"},"finish_reason":"stop"}]}"#,
            3.5,
            false
        ));
        let usage = r#"data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#;
        assert!(!summary.observe(usage, 4.0, false), "usage chunk is not forwarded unasked");
        assert!(summary.observe("data: [DONE]", 5.0, false));
        assert_eq!(summary.text, "Hi there");
        assert_eq!(summary.chunk_offsets_ms, [2.0, 3.5]);
        assert_eq!(summary.usage, Some((4, 2)));
        assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
        assert_eq!(summary.model.as_deref(), Some("m"));
        assert!(summary.done);

        let mut asked = StreamSummary::default();
        assert!(asked.observe(usage, 1.0, true), "usage chunk is forwarded when asked for");
    }

    #[test]
    fn completion_chunks_count_text() {
        let mut summary = StreamSummary::default();
        summary.observe(r#"data: {"choices":[{"text":"abc","finish_reason":null}]}"#, 1.0, false);
        assert_eq!(summary.text, "abc");
        assert_eq!(summary.content_chunks, 1);
    }
}
