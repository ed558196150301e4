//! The `phoenix` profile: the OpenInference attributes Arize Phoenix reads (its span kinds, `llm.*` token
//! counts and cost, `input.value`/`output.value` and the flattened `llm.*_messages`).
use super::attrs::Attrs;
use super::spans::View;
use serde_json::{Map, Value};

pub fn request_attributes(view: &View, attrs: &mut Attrs) {
    let trace = view.trace;
    if view.operation == "embeddings" {
        attrs.str("openinference.span.kind", "EMBEDDING");
        attrs.str_set("embedding.model_name", view.model());
    } else {
        attrs.str("openinference.span.kind", "LLM");
    }
    attrs.str_set("llm.model_name", view.model());
    // OpenInference's `llm.provider` is who hosts the model, `llm.system` the API family; an OpenAI-compatible
    // gateway answers for both with the configured provider name.
    attrs.str("llm.provider", view.provider);
    attrs.str("llm.system", view.provider);
    attrs.uint("llm.token_count.prompt", trace.input_tokens);
    attrs.uint("llm.token_count.completion", trace.output_tokens);
    attrs.uint("llm.token_count.total", trace.input_tokens.saturating_add(trace.output_tokens));
    if let Some(cost) = trace.cost_usd {
        attrs.float("llm.cost.total", cost);
    }
    if let Some(params) = view.params.to_json() {
        attrs.text("llm.invocation_parameters", params);
    }
    attrs.str_set("session.id", &trace.session_id);
    attrs.str_set("user.id", &trace.user);
    if !view.tags.is_empty() {
        let tags: Map<String, Value> =
            view.tags.iter().map(|(name, value)| (name.to_string(), Value::from(*value))).collect();
        attrs.text("metadata", Value::Object(tags).to_string());
        attrs.strs("tag.tags", view.tag_list());
    }
    let Some(content) = &view.content else { return };
    if content.structured_input {
        attrs.text("input.value", content.chat_input());
        attrs.str("input.mime_type", "application/json");
    } else if !content.prompt_text.is_empty() {
        attrs.text("input.value", content.prompt_text.clone());
        attrs.str("input.mime_type", "text/plain");
    }
    if !content.response_text.is_empty() {
        attrs.text("output.value", content.response_text.clone());
        attrs.str("output.mime_type", "text/plain");
    }
    for (index, message) in content.input.iter().enumerate() {
        let prefix = format!("llm.input_messages.{index}.message");
        attrs.str(format!("{prefix}.role"), &message.role);
        attrs.text(format!("{prefix}.content"), message.text.clone());
        attrs.str_set(format!("{prefix}.tool_call_id"), &message.tool_call_id);
        for (call_index, call) in message.tool_calls.iter().enumerate() {
            let call_prefix = format!("{prefix}.tool_calls.{call_index}.tool_call");
            attrs.str_set(format!("{call_prefix}.id"), &call.id);
            attrs.str(format!("{call_prefix}.function.name"), &call.name);
            attrs.text(format!("{call_prefix}.function.arguments"), call.arguments.clone());
        }
    }
    if !content.response_text.is_empty() {
        attrs.str("llm.output_messages.0.message.role", "assistant");
        attrs.text("llm.output_messages.0.message.content", content.response_text.clone());
    }
}

/// An engine attempt is a CHAIN step without token counts: Phoenix adds `llm.token_count.*` up over a span's
/// descendants, and the daemon knows the tokens once, for the request (on its LLM span). As LLM spans the
/// attempts would also show each request as two or three LLM calls in Phoenix's LLM views.
pub fn attempt_attributes(attrs: &mut Attrs) {
    attrs.str("openinference.span.kind", "CHAIN");
}
