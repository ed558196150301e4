//! What a stream said so far, from its events: text, tool calls, finish reason, usage and per-chunk timing
//! for the trace, and what kind of event each is for the client (a usage chunk only when asked for).
use super::holdback::EventKind;
use super::trace_guard::AnswerSummary;
use serde::Deserialize;
use std::borrow::Cow;

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
pub(super) struct StreamSummary {
    pub(super) text: String,
    pub(super) finish_reason: Option<String>,
    pub(super) usage: Option<(u64, u64)>,
    pub(super) model: Option<String>,
    pub(super) content_chunks: u64,
    pub(super) chunk_offsets_ms: Vec<f64>,
    /// Characters each of those chunks added to `text`.
    pub(super) chunk_chars: Vec<u32>,
    /// Tool calls, gathered from their pieces.
    pub(super) tool_calls: super::tool_calls::ToolCalls,
    pub(super) done: bool,
    /// The start of the first data event that was not JSON: the stream is broken, not an answer.
    pub(super) invalid: Option<String>,
}

impl StreamSummary {
    /// For the trace. An engine that ignored include_usage is counted by chunks (one token each on
    /// OpenAI-compatible servers).
    pub(super) fn into_answer(mut self) -> AnswerSummary {
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
    pub(super) fn observe_kind(&mut self, event: &str, offset_ms: f64) -> Option<EventKind> {
        let data = super::sse::event_data(event);
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
