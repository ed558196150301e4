//! Scores (feedback, LLM judges, code checks) as spans of their own: each is a child of the request span it
//! scores, named `evaluation {name}`, carrying a `gen_ai.evaluation.result` event and the same values as
//! attributes (Phoenix and Langfuse show span attributes first). Scores often arrive long after their trace
//! was exported, so they travel separately, from outbox rows of their own; ids derive from the score's id, so a
//! score sent twice is the same span.
use super::attrs::{label, truncate, Attrs};
use super::spans::{epoch_ns, span_id, trace_id, Profile, SpanSettings};
use crate::trace::{Score, ScoreValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::Span;

/// W3C sampled flag and "parent is local", as the request spans have.
const SPAN_FLAGS: u32 = 0x01 | 0x100;

pub fn score_spans(scores: &[Score], settings: &SpanSettings) -> Vec<Span> {
    scores.iter().map(|score| score_span(score, settings)).collect()
}

fn score_span(score: &Score, settings: &SpanSettings) -> Span {
    let attributes = result_attributes(score, settings);
    let mut span_attributes = Attrs::default();
    match settings.profile {
        Profile::Genai => {}
        Profile::Phoenix => span_attributes.str("openinference.span.kind", "EVALUATOR"),
        Profile::Langfuse => span_attributes.str("langfuse.observation.type", "event"),
    }
    span_attributes.str("llmops.trace_id", &score.trace_id);
    let mut span_attributes = span_attributes.into_vec();
    span_attributes.extend(attributes.clone());
    let time = epoch_ns(score.created_at_unix_ms);
    Span {
        trace_id: trace_id(&score.trace_id).to_vec(),
        span_id: span_id(&format!("score:{}", score.id)).to_vec(),
        // The request span's id, as spans.rs derives it.
        parent_span_id: span_id(&format!("span:{}", score.trace_id)).to_vec(),
        flags: SPAN_FLAGS,
        name: format!("evaluation {}", label(&score.name)),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: time,
        end_time_unix_nano: time,
        attributes: span_attributes,
        events: vec![Event {
            time_unix_nano: time,
            name: "gen_ai.evaluation.result".into(),
            attributes,
            dropped_attributes_count: 0,
        }],
        ..Span::default()
    }
}

/// The semantic conventions' evaluation attributes, plus who scored.
fn result_attributes(score: &Score, settings: &SpanSettings) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    let mut attrs = Attrs::default();
    attrs.str("gen_ai.evaluation.name", &score.name);
    match &score.value {
        ScoreValue::Number(value) => attrs.float("gen_ai.evaluation.score.value", *value),
        ScoreValue::Passed(passed) => {
            attrs.float("gen_ai.evaluation.score.value", if *passed { 1.0 } else { 0.0 });
            attrs.str("gen_ai.evaluation.score.label", if *passed { "true" } else { "false" });
        }
        ScoreValue::Label(label) => attrs.str("gen_ai.evaluation.score.label", label),
    }
    // A reviewer's comment can quote the prompt or the answer.
    if settings.content && !score.comment.is_empty() {
        let (comment, _) = truncate(&score.comment, settings.max_content_chars);
        attrs.text("gen_ai.evaluation.explanation", comment.to_string());
    }
    attrs.str("llmops.score.source", score.source.as_str());
    attrs.str("llmops.score.id", &score.id);
    attrs.into_vec()
}
