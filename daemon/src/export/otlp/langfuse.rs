//! The `langfuse` profile: the `langfuse.*` attributes Langfuse's OTLP endpoint maps onto its traces and
//! observations (names as in Langfuse's `LangfuseOtelSpanAttributes`), so the request shows as one generation
//! with its model, usage, cost and time to first token.
use super::attrs::Attrs;
use super::spans::View;
use serde_json::{json, Value};

pub fn request_attributes(view: &View, attrs: &mut Attrs) {
    let trace = view.trace;
    attrs.str("langfuse.observation.type", "generation");
    attrs.str_set("langfuse.trace.name", &trace.route);
    // The OpenTelemetry names, and the `langfuse.*` ones older Langfuse versions read.
    attrs.str_set("user.id", &trace.user);
    attrs.str_set("langfuse.user.id", &trace.user);
    attrs.str_set("session.id", &trace.session_id);
    attrs.str_set("langfuse.session.id", &trace.session_id);
    if !view.tags.is_empty() {
        attrs.strs("langfuse.trace.tags", view.tag_list());
    }
    for (name, value) in &view.tags {
        attrs.str(format!("langfuse.trace.metadata.{name}"), value);
    }
    attrs.str_set("langfuse.observation.model.name", view.model());
    // Set explicitly: from `gen_ai.usage.*` alone Langfuse would work the total out itself, and with its
    // own key names per instrumentation.
    let total = trace.input_tokens.saturating_add(trace.output_tokens);
    let usage = json!({"input": trace.input_tokens, "output": trace.output_tokens, "total": total});
    attrs.text("langfuse.observation.usage_details", usage.to_string());
    // Without it Langfuse prices the generation from its own model table (a local model's name can match a
    // hosted one's); the daemon's price is the one it charged.
    if let Some(cost) = trace.cost_usd.filter(|cost| cost.is_finite()) {
        attrs.text("langfuse.observation.cost_details", json!({"total": cost}).to_string());
    }
    if let Some(params) = view.params.to_json() {
        attrs.text("langfuse.observation.model.parameters", params);
    }
    if let Some(ttft_ms) = trace.ttft_ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        let first_chunk_ms = trace.started_at_unix_ms.saturating_add(ttft_ms.round() as i64);
        attrs.text("langfuse.observation.completion_start_time", iso8601(first_chunk_ms));
    }
    let Some(content) = &view.content else { return };
    if content.structured_input {
        attrs.text("langfuse.observation.input", content.chat_input());
    } else if !content.prompt_text.is_empty() {
        attrs.text("langfuse.observation.input", content.prompt_text.clone());
    }
    if !content.response_text.is_empty() {
        let output = json!({"role": "assistant", "content": content.response_text});
        attrs.text("langfuse.observation.output", Value::to_string(&output));
    }
}

/// An engine attempt is a plain span: the request's generation carries the usage and cost, and a second
/// generation per request would make Langfuse count (and price) it twice.
pub fn attempt_attributes(attrs: &mut Attrs) {
    attrs.str("langfuse.observation.type", "span");
}

/// `2024-01-31T12:00:00.123Z`: the timestamp form Langfuse parses.
pub fn iso8601(unix_ms: i64) -> String {
    let (year, month, day) = crate::clock::civil_from_days(unix_ms.div_euclid(86_400_000));
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (hours, minutes) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (seconds, millis) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1700000000`.
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert!(!iso8601(i64::MAX).is_empty(), "no overflow");
    }
}
