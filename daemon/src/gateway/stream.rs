//! Streaming answers: each upstream SSE event is forwarded the moment it is complete (never held back to wait
//! for more; events that arrived in the same read leave in the same write), while
//! the trace collects text, token timing and usage. The body is pulled by the client's connection, with no
//! task or channel in between: when the client goes away, hyper drops the body, which drops the upstream
//! response (cancelling the engine's work) and records the trace as cancelled. An upstream that breaks off
//! mid-stream ends the client's stream with an explicit error event.
use super::error::GatewayError;
use super::holdback::{EventKind, HoldBack, Released};
use super::sse::{SseSplitter, MAX_EVENT_BYTES};
use super::stream_summary::StreamSummary;
use super::trace_guard::TraceGuard;
use super::usage::estimate_tokens;
use crate::cache::store::CachedBody;
use crate::engine::Answer;
use crate::shutdown::Shutdown;
use crate::trace::TraceStatus;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Instant;

/// What a stream's output passes through besides the relay itself.
pub struct StreamOutput {
    /// Output guardrails (none: relayed as it comes).
    pub hold_back: Option<HoldBack>,
    /// Keep the events for the response cache.
    pub capture: bool,
}

pub fn respond(
    guard: TraceGuard,
    upstream: Answer,
    client_wants_usage: bool,
    deadline: Instant,
    closing: Shutdown,
    output: StreamOutput,
) -> Response {
    let mut guard = guard;
    let trace = guard.trace_mut();
    let fallback_usage = FallbackUsage {
        prompt_tokens: estimate_tokens(&trace.prompt_text),
        object: if trace.endpoint == "completions" { "text_completion" } else { "chat.completion.chunk" },
        id: format!("llmops-{}", trace.id),
    };
    let relay = Relay {
        fallback_usage,
        guard: Some(guard),
        upstream: upstream.body,
        events: SseSplitter::default(),
        seen: StreamSummary::default(),
        ready: BytesMut::new(),
        client_wants_usage,
        deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
        closing,
        hold_back: output.hold_back,
        released: Vec::new(),
        capture: output.capture.then(Capture::default),
    };
    let frames = futures::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), relay))
    });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(frames))
        .into_response()
}

/// How the stream ended.
enum End {
    Done,
    Cut(String),
    Timeout,
}

/// For a client that asked for usage (`stream_options.include_usage`) from an engine that sent none: the final
/// usage chunk the daemon sends from its own count (the trace says `tokens_estimated`).
struct FallbackUsage {
    prompt_tokens: u64,
    object: &'static str,
    id: String,
}

impl FallbackUsage {
    fn event(&self, seen: &StreamSummary) -> String {
        let completion = seen.content_chunks;
        let created = crate::clock::unix_ms() / 1000;
        let chunk = json!({
            "id": self.id,
            "object": self.object,
            "created": created,
            "model": seen.model.as_deref().unwrap_or_default(),
            "choices": [],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": self.prompt_tokens.saturating_add(completion),
            },
        });
        format!("data: {chunk}\n\n")
    }
}

/// The state of one relayed stream; dropped by hyper when the client disconnects.
struct Relay {
    fallback_usage: FallbackUsage,
    /// Taken when the trace is recorded; still here on drop means the client went away.
    guard: Option<TraceGuard>,
    upstream: BoxStream<'static, Result<Bytes, String>>,
    events: SseSplitter,
    seen: StreamSummary,
    /// Bytes to send before reading the upstream again.
    ready: BytesMut,
    client_wants_usage: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
    closing: Shutdown,
    hold_back: Option<HoldBack>,
    /// Events out of the hold-back buffer (or straight from the upstream), on their way to `ready`.
    released: Vec<Released>,
    /// The events as sent, for the response cache; dropped when they grow past its entry limit.
    capture: Option<Capture>,
}

/// A stream's events as the client got them (usage chunks included), with when each left.
#[derive(Default)]
struct Capture {
    events: Vec<String>,
    offsets_ms: Vec<f64>,
    bytes: usize,
}

/// A stream longer than this is not cached (a cache entry has a size bound of its own too).
const MAX_CAPTURE_BYTES: usize = 8 << 20;

impl Relay {
    /// The next bytes for the client: every event that has arrived, as soon as one has. Never waits for more:
    /// events already received together leave together (as through nginx), which saves a write per event.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if !self.ready.is_empty() {
                return Some(self.ready.split().freeze());
            }
            self.guard.as_ref()?;
            // Checked here too: the biased select below never polls the timer while the upstream has data.
            if self.deadline.is_elapsed() {
                self.end(End::Timeout);
                continue;
            }
            if self.closing.is_set() {
                self.end(End::Cut("the daemon is shutting down".into()));
                continue;
            }
            // Biased: the upstream first, so the timer is only polled (and re-armed) when it has nothing.
            let next = tokio::select! {
                biased;
                next = self.upstream.next() => next,
                _ = self.deadline.as_mut() => {
                    self.end(End::Timeout);
                    continue;
                }
                _ = self.closing.wait() => continue,
            };
            self.take(next);
            // Whatever else has already arrived, without waiting.
            while self.guard.is_some() {
                match self.upstream.next().now_or_never() {
                    Some(next) => self.take(next),
                    None => break,
                }
            }
        }
    }

    /// Handles one read from the upstream: its complete events go to `ready`; the end of the stream ends it.
    fn take(&mut self, next: Option<Result<Bytes, String>>) {
        let chunk = match next {
            None if self.seen.done || self.seen.finish_reason.is_some() => return self.end(End::Done),
            None => return self.end(End::Cut("the engine closed the stream before the answer was complete".into())),
            Some(Err(error)) => return self.end(End::Cut(format!("the engine's stream broke off: {error}"))),
            Some(Ok(chunk)) => chunk,
        };
        let Some(guard) = &self.guard else { return };
        let offset_ms = guard.elapsed_ms();
        let tokens_before = self.seen.content_chunks;
        for event in self.events.push(&chunk) {
            let text_before = self.seen.text.len();
            let Some(kind) = self.seen.observe_kind(&event, offset_ms) else { continue };
            let text = &self.seen.text[text_before..];
            match &mut self.hold_back {
                Some(hold_back) => {
                    if let Err(rule) = hold_back.push(event, kind, text, &mut self.released) {
                        return self.block(rule);
                    }
                }
                None => self.released.push(Released { event, kind, text: text.to_string() }),
            }
        }
        if let Some(guard) = &self.guard {
            guard.add_tokens(self.seen.content_chunks - tokens_before);
        }
        self.send_released(offset_ms);
        if self.events.overflowed {
            let limit = MAX_EVENT_BYTES / 1024;
            self.end(End::Cut(format!("the engine sent an event over {limit} KiB without a blank line")));
        } else if let Some(invalid) = self.seen.invalid.clone() {
            self.end(End::Cut(format!("the engine sent an event that is not JSON: {invalid:?}")));
        } else if self.seen.done {
            self.end(End::Done);
        }
    }

    /// Moves released events to the client's bytes (a usage chunk only when asked for, the daemon's own usage
    /// count before `[DONE]` when the engine sent none) and to the capture.
    fn send_released(&mut self, offset_ms: f64) {
        for Released { event, kind, text } in self.released.drain(..) {
            if let Some(guard) = &self.guard {
                guard.chunk(&text);
            }
            if kind == EventKind::Done && self.client_wants_usage && self.seen.usage.is_none() {
                self.ready.extend_from_slice(self.fallback_usage.event(&self.seen).as_bytes());
            }
            if kind != EventKind::UsageOnly || self.client_wants_usage {
                self.ready.extend_from_slice(event.as_bytes());
                self.ready.extend_from_slice(b"\n\n");
            }
            if let Some(capture) = &mut self.capture {
                capture.bytes += event.len();
                if capture.bytes > MAX_CAPTURE_BYTES {
                    self.capture = None;
                } else {
                    capture.events.push(event);
                    capture.offsets_ms.push(offset_ms);
                }
            }
        }
    }

    /// An output guardrail blocked the answer: nothing held is sent, the error event ends the stream.
    fn block(&mut self, rule: usize) {
        let Some(mut guard) = self.guard.take() else { return };
        let verdicts = self.hold_back.as_mut().map(|h| h.verdicts(Some(rule))).unwrap_or_default();
        let name = verdicts.iter().find(|v| v.action == "block").map(|v| v.rule.clone()).unwrap_or_default();
        let error = GatewayError::guardrail(&name, "output", "the answer matched it");
        let mut answer = std::mem::take(&mut self.seen).into_answer();
        answer.text = self.hold_back.as_ref().map(|h| h.redact(&answer.text)).unwrap_or(answer.text);
        guard.record_answer(answer);
        guard.trace_mut().guardrails.extend(verdicts);
        guard.end_attempt(None);
        self.capture = None;
        self.ready.extend_from_slice(error.sse_event().as_bytes());
        guard.fail_streamed(&error);
    }

    /// Records the trace and, for a failure, queues the error event that ends the client's stream.
    fn end(&mut self, end: End) {
        if self.guard.is_none() {
            return;
        }
        // What the hold-back buffer still has leaves first (checked and masked), also before an error event.
        if let Some(hold_back) = &mut self.hold_back {
            if let Err(rule) = hold_back.finish(&mut self.released) {
                return self.block(rule);
            }
        }
        let offset_ms = self.guard.as_ref().map_or(0.0, |g| g.elapsed_ms());
        self.send_released(offset_ms);
        let Some(mut guard) = self.guard.take() else { return };
        if let Some(hold_back) = &mut self.hold_back {
            let verdicts = hold_back.verdicts(None);
            guard.trace_mut().guardrails.extend(verdicts);
        }
        let engine = guard.trace_mut().engine.clone();
        let failure = match end {
            End::Done => None,
            End::Cut(message) => Some(GatewayError::StreamInterrupted(format!("engine {engine}: {message}"))),
            End::Timeout => Some(GatewayError::UpstreamTimeout(format!(
                "engine {engine} did not finish within the request timeout"
            ))),
        };
        let mut answer = std::mem::take(&mut self.seen).into_answer();
        if let Some(hold_back) = &self.hold_back {
            answer.text = hold_back.redact(&answer.text);
        }
        guard.record_answer(answer);
        guard.end_attempt(failure.as_ref().map(GatewayError::message));
        match failure {
            None => {
                if let Some(capture) = self.capture.take() {
                    guard.cache_answer(CachedBody::Stream { events: capture.events, offsets_ms: capture.offsets_ms });
                }
                guard.finish(TraceStatus::Ok, 200)
            }
            Some(error) => {
                // The client already got 200; the error event ends its stream, the trace says what happened.
                self.ready.extend_from_slice(error.sse_event().as_bytes());
                guard.fail_streamed(&error);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client went away mid-stream: keep what was said so far; the guard records `cancelled`.
        if let Some(mut guard) = self.guard.take() {
            let mut answer = std::mem::take(&mut self.seen).into_answer();
            if let Some(hold_back) = &self.hold_back {
                answer.text = hold_back.redact(&answer.text);
            }
            guard.record_answer(answer);
            guard.end_attempt(None);
        }
    }
}
