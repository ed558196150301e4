//! What the request span carries in every profile: the GenAI semantic conventions (v1.37 and later), the
//! daemon's own `llmops.*` attributes, and its events (guardrail verdicts).
use super::attrs::{truncate, Attrs};
use super::spans::View;
use crate::trace::{Trace, TraceStatus};
use opentelemetry_proto::tonic::trace::v1::span::Event;

/// Guardrail verdicts past this many are not exported (a route has a handful of rules).
const MAX_GUARDRAILS: usize = 64;
const MAX_DETAIL_CHARS: usize = 256;

/// `error.type` and the status message without content: the gateway's error type, or the status itself.
pub fn error_type(trace: &Trace) -> &str {
    if trace.error_type.is_empty() {
        trace.status.as_str()
    } else {
        &trace.error_type
    }
}

fn failed(status: TraceStatus) -> bool {
    matches!(status, TraceStatus::Error | TraceStatus::Rejected | TraceStatus::Cancelled)
}

pub fn request_attributes(view: &View, attrs: &mut Attrs) {
    let trace = view.trace;
    attrs.str("gen_ai.operation.name", view.operation);
    attrs.str("gen_ai.provider.name", view.provider);
    attrs.str_set("gen_ai.request.model", &trace.model_requested);
    attrs.str_set("gen_ai.response.model", &trace.model_served);
    attrs.str("gen_ai.response.id", &trace.id);
    if !trace.finish_reason.is_empty() {
        attrs.strs("gen_ai.response.finish_reasons", [&trace.finish_reason]);
    }
    attrs.uint("gen_ai.usage.input_tokens", trace.input_tokens);
    attrs.uint("gen_ai.usage.output_tokens", trace.output_tokens);
    attrs.str_set("gen_ai.conversation.id", &trace.session_id);
    view.params.add_genai(attrs);
    if let Some(ttft_ms) = trace.ttft_ms {
        // The conventions name the server-side metric `gen_ai.server.time_to_first_token`; the per-request
        // value goes on the span as `gen_ai.response.time_to_first_chunk` (seconds), the attribute they give
        // streaming responses.
        attrs.float("gen_ai.response.time_to_first_chunk", ttft_ms / 1000.0);
        attrs.float("llmops.ttft_ms", ttft_ms);
    }
    if failed(trace.status) {
        attrs.str("error.type", error_type(trace));
    }
    if trace.http_status != 0 {
        attrs.int("http.response.status_code", i64::from(trace.http_status));
    }
    if let Some(content) = &view.content {
        if !content.input.is_empty() {
            attrs.text("gen_ai.input.messages", content.genai_input());
        }
        let finish_reason = match trace.finish_reason.as_str() {
            "" if failed(trace.status) => "error",
            "" => "stop",
            reason => reason,
        };
        if let Some(output) = content.genai_output(finish_reason) {
            attrs.text("gen_ai.output.messages", output);
        }
        if content.truncated {
            attrs.bool("llmops.content_truncated", true);
        }
    }
    daemon_attributes(view, attrs);
}

fn daemon_attributes(view: &View, attrs: &mut Attrs) {
    let trace = view.trace;
    attrs.str("llmops.trace_id", &trace.id);
    attrs.str_set("llmops.tenant", &trace.tenant);
    attrs.str_set("llmops.route", &trace.route);
    attrs.str_set("llmops.engine", &trace.engine);
    attrs.str_set("llmops.user", &trace.user);
    attrs.str("llmops.status", trace.status.as_str());
    attrs.int("llmops.http_status", i64::from(trace.http_status));
    attrs.bool("llmops.stream", trace.stream);
    attrs.bool("llmops.tokens_estimated", trace.tokens_estimated);
    if let Some(cost) = trace.cost_usd {
        attrs.float("llmops.cost_usd", cost);
    }
    if let Some(energy) = trace.energy_joules {
        attrs.float("llmops.energy_joules", energy);
    }
    attrs.str_set("llmops.prompt.name", &trace.prompt_id);
    attrs.str_set("llmops.prompt.version", &trace.prompt_version);
    attrs.str_set("llmops.prompt.hash", &trace.prompt_hash);
    attrs.str_set("llmops.replay_of", &trace.replay_of);
    for (name, value) in &view.tags {
        attrs.str(format!("llmops.tag.{name}"), value);
    }
    if let Some(cache) = &trace.cache {
        attrs.str("llmops.cache.result", &cache.result);
        attrs.bool("llmops.cache.stored", cache.stored);
        attrs.str_set("llmops.cache.source_trace_id", &cache.source_trace_id);
        attrs.uint("llmops.cache.saved_input_tokens", cache.saved_input_tokens);
        attrs.uint("llmops.cache.saved_output_tokens", cache.saved_output_tokens);
        attrs.float("llmops.cache.saved_usd", cache.saved_usd);
    }
    if !trace.guardrails.is_empty() {
        let verdicts = trace.guardrails.iter().take(MAX_GUARDRAILS);
        attrs.strs("llmops.guardrails", verdicts.map(|v| format!("{}:{}:{}", v.rule, v.stage, v.action)));
    }
}

/// One `llmops.guardrail` event per verdict (at the span's start for input rules, at its end for output
/// rules: the verdict has no time of its own). Scores are spans of their own (evaluation.rs).
pub fn events(view: &View) -> Vec<Event> {
    let mut events = Vec::new();
    for verdict in view.trace.guardrails.iter().take(MAX_GUARDRAILS) {
        let mut attrs = Attrs::default();
        attrs.str("llmops.guardrail.rule", &verdict.rule);
        attrs.str("llmops.guardrail.stage", &verdict.stage);
        attrs.str("llmops.guardrail.action", &verdict.action);
        attrs.str("llmops.guardrail.kind", &verdict.kind);
        attrs.int("llmops.guardrail.matches", i64::from(verdict.matches));
        // Detectors or mask tokens, never the matched text (see `GuardrailVerdict`).
        attrs.str_set("llmops.guardrail.detail", truncate(&verdict.detail, MAX_DETAIL_CHARS).0);
        let time = if verdict.stage == "input" { view.start_ns } else { view.end_ns };
        events.push(event("llmops.guardrail", time, attrs));
    }
    events
}

fn event(name: &str, time_unix_nano: u64, attrs: Attrs) -> Event {
    Event { time_unix_nano, name: name.to_string(), attributes: attrs.into_vec(), dropped_attributes_count: 0 }
}
