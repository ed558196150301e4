//! What never leaves without `content`, and what bounds a hostile trace.
use super::tests::{
    attribute, failed_trace, items, providers, resource, rich_trace, round_trip, scores, spans, string_attribute,
};
use super::*;
use crate::trace::{Trace, TraceStatus};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

const PROFILES: [Profile; 3] = [Profile::Genai, Profile::Phoenix, Profile::Langfuse];

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[test]
fn without_content_no_prompt_answer_error_or_comment_text_leaves() {
    for profile in PROFILES {
        let off = SpanSettings { profile, content: false, max_content_chars: 4096 };
        let request = export_request(&resource(), &items(), &scores(), &off, &providers());
        let (bytes, decoded) = round_trip(&request);
        assert!(!contains(&bytes, "SECRET"), "{profile:?}: {decoded:#?}");
        let failed = &spans(&decoded)[3];
        let status = failed.status.as_ref().expect("status");
        assert_eq!((status.code, status.message.as_str()), (StatusCode::Error as i32, "upstream_error"));
        let attempt_status = spans(&decoded)[1].status.as_ref().expect("attempt status");
        assert_eq!(attempt_status.message, "503", "the engine's HTTP status, not its text");

        // The same traces with content do carry the text: the search above is not vacuous.
        let on = SpanSettings { content: true, ..off };
        let bytes = export_request(&resource(), &items(), &scores(), &on, &providers()).encode_to_vec();
        for needle in
            ["SECRET-PROMPT", "SECRET-ANSWER", "SECRET-ERROR-MESSAGE", "SECRET-ATTEMPT-ERROR", "SECRET-COMMENT"]
        {
            assert!(contains(&bytes, needle), "{profile:?} with content lacks {needle}");
        }
    }
}

#[test]
fn content_is_cut_on_a_char_boundary_and_marked() {
    let trace = Trace {
        response_text: "ab€€€".into(),
        prompt_text: "ünïcödé".into(),
        request_json: String::new(),
        ..rich_trace()
    };
    let settings = SpanSettings { profile: Profile::Genai, content: true, max_content_chars: 3 };
    let request = export_request(&resource(), &[TraceToExport { trace }], &[], &settings, &providers());
    let (_, decoded) = round_trip(&request);
    let span = &spans(&decoded)[0];
    let output: serde_json::Value =
        serde_json::from_str(string_attribute(span, "gen_ai.output.messages").expect("output")).expect("json");
    assert_eq!(output[0]["parts"][0]["content"], "ab€");
    assert_eq!(output[0]["finish_reason"], "stop");
    let input: serde_json::Value =
        serde_json::from_str(string_attribute(span, "gen_ai.input.messages").expect("input")).expect("json");
    assert_eq!(input[0]["parts"][0]["content"], "ünï", "no body: the prompt text as one user message");
    assert_eq!(attribute(span, "llmops.content_truncated"), Some(&Value::BoolValue(true)));

    let roomy = SpanSettings { max_content_chars: 100, ..settings };
    let request = export_request(&resource(), &[TraceToExport { trace: rich_trace() }], &[], &roomy, &providers());
    assert_eq!(attribute(&spans(&request)[0], "llmops.content_truncated"), None);
}

#[test]
fn a_flood_of_tool_calls_is_cut() {
    // Not a registry prompt's run: the messages are read from the request body.
    let mut trace = Trace { prompt_id: String::new(), ..rich_trace() };
    // Within the 1 MiB of request body read (a bigger one is not parsed at all).
    let calls: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"id": format!("c{i}"), "function": {"name": "f", "arguments": ""}}))
        .collect();
    trace.request_json = serde_json::json!({"messages": [{"role": "assistant", "tool_calls": calls}]}).to_string();
    let settings = SpanSettings { profile: Profile::Phoenix, content: true, max_content_chars: 1000 };
    let request = export_request(&resource(), &[TraceToExport { trace }], &[], &settings, &providers());
    let span = &spans(&request)[0];
    let call_names = span.attributes.iter().filter(|kv| kv.key.ends_with(".tool_call.function.name")).count();
    assert_eq!(call_names, 64, "tool calls kept per message");
    assert_eq!(attribute(span, "llmops.content_truncated"), Some(&Value::BoolValue(true)));
}

#[test]
fn a_hostile_trace_stays_bounded() {
    let mut trace = rich_trace();
    trace.tags = (0..10_000).map(|i| (format!("tag{i:05}{}", "k".repeat(300)), "v".repeat(1000))).collect();
    let filler = "x".repeat(5 << 20);
    trace.request_json =
        serde_json::json!({"temperature": 0.5, "messages": [{"role": "user", "content": filler}]}).to_string();
    trace.response_text = "y".repeat(2 << 20);
    trace.prompt_text = "z".repeat(2 << 20);
    trace.route = "r".repeat(100_000);
    for profile in PROFILES {
        let settings = SpanSettings { profile, content: true, max_content_chars: 1000 };
        let item = TraceToExport { trace: trace.clone() };
        let request = export_request(&resource(), &[item], &[], &settings, &providers());
        let (bytes, decoded) = round_trip(&request);
        assert!(bytes.len() < 256 << 10, "{profile:?}: {} bytes", bytes.len());
        let span = &spans(&decoded)[0];
        let tags = span.attributes.iter().filter(|kv| kv.key.starts_with("llmops.tag.")).count();
        assert_eq!(tags, MAX_TAGS, "{profile:?}");
        for kv in span.attributes.iter().filter(|kv| kv.key.starts_with("llmops.tag.")) {
            assert!(kv.key.chars().count() <= "llmops.tag.".len() + 256);
        }
        assert_eq!(attribute(span, "gen_ai.request.temperature"), None, "a 5 MB body is not parsed");
        let output: serde_json::Value =
            serde_json::from_str(string_attribute(span, "gen_ai.output.messages").expect("output")).expect("json");
        assert_eq!(output[0]["parts"][0]["content"].as_str().map(|text| text.chars().count()), Some(1000));
        assert_eq!(attribute(span, "llmops.content_truncated"), Some(&Value::BoolValue(true)));
        assert!(span.attributes.iter().all(|kv| kv.key.len() < 2048), "{profile:?}");
    }
}

#[test]
fn many_messages_share_one_budget() {
    let messages: Vec<_> =
        (0..10_000).map(|i| serde_json::json!({"role": "user", "content": format!("message {i}")})).collect();
    let trace = Trace { request_json: serde_json::json!({"messages": messages}).to_string(), ..rich_trace() };
    for profile in PROFILES {
        let settings = SpanSettings { profile, content: true, max_content_chars: 2000 };
        let item = TraceToExport { trace: trace.clone() };
        let request = export_request(&resource(), &[item], &[], &settings, &providers());
        let span = &spans(&request)[0];
        let input: serde_json::Value =
            serde_json::from_str(string_attribute(span, "gen_ai.input.messages").expect("input")).expect("json");
        let count = input.as_array().map(Vec::len).unwrap_or_default();
        assert!((1..=128).contains(&count), "{profile:?}: {count} messages");
        assert!(span.attributes.len() < 400, "{profile:?}: {} attributes", span.attributes.len());
    }
}

#[test]
fn failures_set_error_status_and_type() {
    let cancelled = Trace { status: TraceStatus::Cancelled, error_type: String::new(), ..failed_trace() };
    let item = TraceToExport { trace: cancelled };
    let settings = SpanSettings { profile: Profile::Genai, content: true, max_content_chars: 100 };
    let request = export_request(&resource(), &[item], &[], &settings, &providers());
    let span = &spans(&request)[0];
    assert_eq!(string_attribute(span, "error.type"), Some("cancelled"));
    let status = span.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "engine llamacpp failed: SECRET-ERROR-MESSAGE", "with content, the message");
    let attempt = &spans(&request)[1];
    assert_eq!(string_attribute(attempt, "error.type"), Some("_OTHER"));
    assert_eq!(attempt.name, "text_completion batch", "no attempt model: the route");
}
