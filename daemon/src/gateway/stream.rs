//! Streaming answers: each upstream SSE event is forwarded the moment it is complete (never held back to wait
//! for more; events that arrived in the same read leave in the same write), while
//! the trace collects text, token timing and usage. The body is pulled by the client's connection, with no
//! task or channel in between: when the client goes away, hyper drops the body, which drops the upstream
//! response (cancelling the engine's work) and records the trace as cancelled. An upstream that breaks off
//! mid-stream ends the client's stream with an explicit error event.
use super::error::GatewayError;
use super::holdback::{EventKind, HoldBack, Released};
use super::sse::{SseSplitter, MAX_EVENT_BYTES};
use super::trace_guard::{AnswerSummary, TraceGuard};
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
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
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

/// The parts of a chunk the trace needs, borrowed from the event text (no tree of values per chunk).
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<UsageView>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    /// Completions stream `text` instead of `delta`.
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<super::tool_calls::CallDelta<'a>>>,
}

#[derive(Deserialize)]
struct UsageView {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// What the stream said so far.
#[derive(Default, Debug)]
struct StreamSummary {
    text: String,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    model: Option<String>,
    content_chunks: u64,
    chunk_offsets_ms: Vec<f64>,
    /// Characters each of those chunks added to `text`.
    chunk_chars: Vec<u32>,
    /// Tool calls, gathered from their pieces.
    tool_calls: super::tool_calls::ToolCalls,
    done: bool,
    /// The start of the first data event that was not JSON: the stream is broken, not an answer.
    invalid: Option<String>,
}

impl StreamSummary {
    /// For the trace. An engine that ignored include_usage is counted by chunks (one token each on
    /// OpenAI-compatible servers).
    fn into_answer(mut self) -> AnswerSummary {
        self.tool_calls.append_to(&mut self.text);
        AnswerSummary {
            text: self.text,
            finish_reason: self.finish_reason.unwrap_or_default(),
            model: self.model,
            usage: self.usage,
            counted_output: self.content_chunks,
            chunk_offsets_ms: self.chunk_offsets_ms,
            chunk_chars: self.chunk_chars,
        }
    }

    /// Notes one event; returns whether the client should get it (a usage-only chunk is held back from a
    /// client that did not ask for usage: the daemon asked for it on its own account).
    #[cfg(test)]
    fn observe(&mut self, event: &str, offset_ms: f64, client_wants_usage: bool) -> bool {
        match self.observe_kind(event, offset_ms) {
            Some(EventKind::UsageOnly) => client_wants_usage,
            Some(_) => true,
            None => false,
        }
    }

    /// Notes one event and says what it is; `None` for data that is not JSON (never sent: the stream is broken).
    fn observe_kind(&mut self, event: &str, offset_ms: f64) -> Option<EventKind> {
        let mut data_lines =
            event.lines().filter_map(|line| line.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d));
        // One data line per event is the norm: borrow it; join only when an event spans several.
        let first = data_lines.next().unwrap_or_default();
        let data: Cow<'_, str> = match data_lines.next() {
            None => Cow::Borrowed(first),
            Some(second) => Cow::Owned([first, second].into_iter().chain(data_lines).collect::<Vec<_>>().join("\n")),
        };
        if data.trim() == "[DONE]" {
            self.done = true;
            return Some(EventKind::Done);
        }
        let Ok(chunk) = serde_json::from_str::<ChunkView<'_>>(&data) else {
            // Comments and events without data (keep-alives) pass; data that is not JSON is a broken stream.
            if data.trim().is_empty() {
                return Some(EventKind::Forward);
            }
            if self.invalid.is_none() {
                self.invalid = Some(data.chars().take(80).collect());
            }
            return None;
        };
        if let Some(model) = chunk.model.filter(|m| self.model.as_deref() != Some(m.as_ref())) {
            self.model = Some(model.into_owned());
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some((usage.prompt_tokens.unwrap_or(0), usage.completion_tokens.unwrap_or(0)));
        }
        let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) else {
            return Some(if chunk.usage.is_some() { EventKind::UsageOnly } else { EventKind::Forward });
        };
        let delta = choice.delta.as_ref();
        let content = delta.and_then(|d| d.content.as_deref()).or(choice.text.as_deref()).unwrap_or_default();
        let calls = delta.and_then(|d| d.tool_calls.as_deref());
        if let Some(calls) = calls {
            self.tool_calls.observe(calls);
        }
        if !content.is_empty() || calls.is_some() {
            self.text.push_str(content);
            self.content_chunks += 1;
            self.chunk_offsets_ms.push(offset_ms);
            self.chunk_chars.push(u32::try_from(content.chars().count()).unwrap_or(u32::MAX));
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish_reason = Some(reason.to_string());
        }
        Some(EventKind::Forward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(summary.chunk_chars, [2, 6]);
        assert_eq!(summary.usage, Some((4, 2)));
        assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
        assert_eq!(summary.model.as_deref(), Some("m"));
        assert!(summary.done);

        let mut asked = StreamSummary::default();
        assert!(asked.observe(usage, 1.0, true), "usage chunk is forwarded when asked for");
    }

    #[test]
    fn data_that_is_not_json_marks_the_stream_broken_but_keep_alives_pass() {
        let mut summary = StreamSummary::default();
        assert!(summary.observe(": keep-alive", 1.0, false), "comments pass through");
        assert!(summary.invalid.is_none());
        assert!(!summary.observe("data: <html>oops</html>", 2.0, false), "garbage is not forwarded");
        assert_eq!(summary.invalid.as_deref(), Some("<html>oops</html>"));
    }

    #[test]
    fn completion_chunks_count_text() {
        let mut summary = StreamSummary::default();
        summary.observe(r#"data: {"choices":[{"text":"abc","finish_reason":null}]}"#, 1.0, false);
        assert_eq!(summary.text, "abc");
        assert_eq!(summary.content_chunks, 1);
    }
}
