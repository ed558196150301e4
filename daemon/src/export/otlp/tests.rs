//! Golden payloads per profile (encoded, decoded, rendered as OTLP/JSON) and the span ids. Regenerate the
//! golden files with `UPDATE_GOLDEN=1 cargo test -p llmopsd otlp` and review the diff.
use super::spans::{span_id, trace_id};
use super::*;
use crate::trace::model::{CacheOutcome, GuardrailVerdict};
use crate::trace::{Attempt, Score, ScoreSource, ScoreValue, Trace, TraceStatus};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;

pub const ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
pub const FAILED_ID: &str = "imported-trace-17";

pub fn resource() -> ResourceInfo {
    ResourceInfo {
        service_name: "llmopsd".into(),
        service_version: "0.1.0".into(),
        host_name: "gpu-host-1".into(),
        node_name: "node-a".into(),
        project: "support-bot".into(),
    }
}

pub fn providers() -> BTreeMap<String, String> {
    [("vllm-a", "vllm"), ("vllm-b", "vllm")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn settings(profile: Profile, content: bool) -> SpanSettings {
    SpanSettings { profile, content, max_content_chars: 4096 }
}

/// Every text a client or engine wrote contains `SECRET`: none of it may leave without `content`.
pub fn rich_trace() -> Trace {
    let request_json = serde_json::json!({
        "model": "support-model",
        "messages": [
            {"role": "system", "content": "You are SECRET-SYSTEM."},
            {"role": "user", "content": [{"type": "text", "text": "What is SECRET-PROMPT?"}]},
        ],
        "temperature": 0.3, "top_p": 0.9, "max_completion_tokens": 256, "seed": 7,
        "frequency_penalty": 0.1, "presence_penalty": 0.2, "stop": ["###"], "n": 2,
        "response_format": {"type": "json_object"}, "stream": true,
    });
    Trace {
        id: ID.into(),
        started_at_unix_ms: 1_733_000_000_000,
        ended_at_unix_ms: 1_733_000_001_500,
        endpoint: "chat.completions".into(),
        route: "support".into(),
        model_requested: "support-model".into(),
        model_served: "llama-3.1-8b-instruct".into(),
        engine: "vllm-b".into(),
        tenant: "acme".into(),
        user: "user-42".into(),
        session_id: "session-7".into(),
        tags: [("env", "prod"), ("team", "billing")].into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        status: TraceStatus::Ok,
        http_status: 200,
        stream: true,
        finish_reason: "stop".into(),
        input_tokens: 42,
        output_tokens: 17,
        ttft_ms: Some(180.5),
        latency_ms: 1500.0,
        prompt_text: "system: You are SECRET-SYSTEM.\nuser: What is SECRET-PROMPT?".into(),
        response_text: "The answer is SECRET-ANSWER.".into(),
        request_json: request_json.to_string(),
        attempts: vec![
            Attempt {
                engine: "vllm-a".into(),
                model: "llama-3.1-8b-instruct".into(),
                start_offset_ms: 2.0,
                latency_ms: 300.0,
                ttft_ms: None,
                upstream_status: 503,
                error: "engine vllm-a failed with HTTP 503: SECRET-ATTEMPT-ERROR".into(),
            },
            Attempt {
                engine: "vllm-b".into(),
                model: "llama-3.1-8b-instruct".into(),
                start_offset_ms: 305.25,
                latency_ms: 1190.0,
                ttft_ms: Some(175.5),
                upstream_status: 200,
                error: String::new(),
            },
        ],
        cost_usd: Some(0.000123),
        energy_joules: Some(12.5),
        guardrails: vec![GuardrailVerdict {
            rule: "pii".into(),
            action: "mask".into(),
            stage: "input".into(),
            kind: "regex".into(),
            matches: 1,
            detail: "EMAIL".into(),
        }],
        cache: Some(CacheOutcome { result: "miss".into(), stored: true, key: "k1".into(), ..CacheOutcome::default() }),
        ..Trace::default()
    }
}

/// A failed request whose id is not a UUID (an import), on the completions endpoint.
pub fn failed_trace() -> Trace {
    Trace {
        id: FAILED_ID.into(),
        started_at_unix_ms: 1_733_000_002_000,
        ended_at_unix_ms: 1_733_000_002_040,
        endpoint: "completions".into(),
        route: "batch".into(),
        model_requested: "small".into(),
        engine: "llamacpp".into(),
        // A registry prompt: the input is the rendered prompt text, not the body's messages.
        prompt_id: "batch-complete".into(),
        prompt_version: "3".into(),
        prompt_hash: "5e884898da28047151d0e56f8dc62927".into(),
        status: TraceStatus::Error,
        http_status: 502,
        error_type: "upstream_error".into(),
        error_message: "engine llamacpp failed: SECRET-ERROR-MESSAGE".into(),
        prompt_text: "Complete SECRET-COMPLETION".into(),
        request_json: r#"{"model":"small","prompt":"Complete SECRET-COMPLETION","max_tokens":5}"#.into(),
        attempts: vec![Attempt {
            engine: "llamacpp".into(),
            model: String::new(),
            start_offset_ms: 1.0,
            latency_ms: 38.0,
            error: "connection refused: SECRET-ATTEMPT-2".into(),
            ..Attempt::default()
        }],
        ..Trace::default()
    }
}

pub fn scores() -> Vec<Score> {
    let score = |id: &str, name: &str, value, comment: &str, source| Score {
        id: id.into(),
        trace_id: ID.into(),
        name: name.into(),
        value,
        comment: comment.into(),
        source,
        created_at_unix_ms: 1_733_000_060_000,
    };
    vec![
        score("s1", "helpfulness", ScoreValue::Number(0.8), "SECRET-COMMENT: good", ScoreSource::Human),
        score("s2", "grounded", ScoreValue::Passed(false), "", ScoreSource::Llm),
        score("s3", "tone", ScoreValue::Label("polite".into()), "", ScoreSource::Code),
    ]
}

pub fn items() -> Vec<TraceToExport> {
    vec![TraceToExport { trace: rich_trace() }, TraceToExport { trace: failed_trace() }]
}

/// Through the wire format and back, as the collector would read it.
pub fn round_trip(request: &ExportTraceServiceRequest) -> (Vec<u8>, ExportTraceServiceRequest) {
    let bytes = request.encode_to_vec();
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(&decoded, request);
    (bytes, decoded)
}

pub fn spans(request: &ExportTraceServiceRequest) -> &[Span] {
    &request.resource_spans[0].scope_spans[0].spans
}

pub fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

pub fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

fn check_golden(profile: Profile, file: &str) {
    let request = export_request(&resource(), &items(), &scores(), &settings(profile, true), &providers());
    let (_, decoded) = round_trip(&request);
    let rendered = serde_json::to_string_pretty(&decoded).expect("renders") + "\n";
    let path = format!("{}/src/export/otlp/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).expect("writes the golden file");
        return;
    }
    let golden = std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    if let Some((line, (want, got))) = golden.lines().zip(rendered.lines()).enumerate().find(|(_, (a, b))| a != b) {
        panic!("{path} differs at line {}: want {want:?}, got {got:?}; UPDATE_GOLDEN=1 rewrites it", line + 1);
    }
    assert_eq!(golden.lines().count(), rendered.lines().count(), "{path}: UPDATE_GOLDEN=1 rewrites it");
}

#[test]
fn golden_genai() {
    check_golden(Profile::Genai, "genai.json");
}

#[test]
fn golden_phoenix() {
    check_golden(Profile::Phoenix, "phoenix.json");
}

#[test]
fn golden_langfuse() {
    check_golden(Profile::Langfuse, "langfuse.json");
}

#[test]
fn ids_are_deterministic_and_attempts_hang_under_the_request() {
    let first = export_request(&resource(), &items(), &scores(), &settings(Profile::Genai, false), &providers());
    let again = export_request(&resource(), &items(), &scores(), &settings(Profile::Genai, false), &providers());
    assert_eq!(first.encode_to_vec(), again.encode_to_vec(), "a re-export is byte for byte the same");

    let spans = spans(&first);
    assert_eq!(spans.len(), 8, "two traces (a request span and its attempts each) and three scores");
    let (request, attempts) = (&spans[0], &spans[1..3]);
    let uuid = uuid::Uuid::parse_str(ID).expect("uuid");
    assert_eq!(request.trace_id, uuid.as_bytes());
    assert_eq!(request.span_id, span_id(&format!("span:{ID}")));
    assert!(request.parent_span_id.is_empty(), "the request span is the root");
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.trace_id, request.trace_id);
        assert_eq!(attempt.parent_span_id, request.span_id);
        assert_eq!(attempt.span_id, span_id(&format!("attempt:{index}:{ID}")));
        assert_eq!(attempt.span_id.len(), 8);
    }
    assert_ne!(attempts[0].span_id, attempts[1].span_id);
    assert_eq!(attempts[1].start_time_unix_nano, 1_733_000_000_305_250_000, "start + offset, in ns");
    assert_eq!(attempts[1].end_time_unix_nano, 1_733_000_001_495_250_000);

    let failed = &spans[3];
    assert_eq!(failed.trace_id, trace_id(FAILED_ID));
    assert_ne!(failed.trace_id, request.trace_id);
    assert_eq!(spans[4].parent_span_id, failed.span_id);

    // Scores hang under the request span they score, each with its own id and result event.
    for (score, span) in scores().iter().zip(&spans[5..]) {
        assert_eq!(span.trace_id, request.trace_id);
        assert_eq!(span.parent_span_id, request.span_id);
        assert_eq!(span.span_id, span_id(&format!("score:{}", score.id)));
        assert_eq!(span.name, format!("evaluation {}", score.name));
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "gen_ai.evaluation.result");
    }
    // A score sent on its own (its trace went earlier) is the same span.
    let alone = export_request(&resource(), &[], &scores()[..1], &settings(Profile::Genai, false), &providers());
    assert_eq!(super::tests::spans(&alone)[0], spans[5]);
}

#[test]
fn an_id_that_is_not_a_uuid_still_gets_sixteen_bytes() {
    use sha2::{Digest, Sha256};
    let id = trace_id(FAILED_ID);
    assert_eq!(id[..], Sha256::digest(FAILED_ID.as_bytes())[..16]);
    assert_ne!(trace_id("00000000-0000-0000-0000-000000000000"), [0; 16], "the nil UUID is OTLP's no-id");
    assert_ne!(trace_id(""), [0; 16]);
    let uuid = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    assert_eq!(trace_id(uuid)[..4], [0x01, 0x93, 0xa1, 0xb2]);
}

#[test]
fn resource_and_scope_say_who_sent_it() {
    let request = export_request(&resource(), &[], &[], &settings(Profile::Phoenix, false), &BTreeMap::new());
    let resource_spans = &request.resource_spans[0];
    let attributes = &resource_spans.resource.as_ref().expect("resource").attributes;
    let keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["service.name", "service.version", "host.name", "k8s.node.name", "openinference.project.name"]);
    let scope = resource_spans.scope_spans[0].scope.as_ref().expect("scope");
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("llmopsd", "0.1.0"));

    let bare = ResourceInfo { node_name: String::new(), project: String::new(), ..resource() };
    let request = export_request(&bare, &[], &[], &settings(Profile::Phoenix, false), &BTreeMap::new());
    let attributes = &request.resource_spans[0].resource.as_ref().expect("resource").attributes;
    assert!(!attributes.iter().any(|kv| kv.key == "k8s.node.name"));
    let project = attributes.iter().find(|kv| kv.key == "openinference.project.name").and_then(|kv| kv.value.clone());
    assert_eq!(project, Some(AnyValue { value: Some(Value::StringValue("default".into())) }));
}

#[test]
fn providers_default_to_openai_and_the_cache_has_its_own() {
    let cached = Trace { id: "c".into(), engine: "cache".into(), ..Trace::default() };
    let items = [TraceToExport { trace: cached }, TraceToExport { trace: failed_trace() }];
    let request = export_request(&resource(), &items, &[], &settings(Profile::Genai, false), &BTreeMap::new());
    let [cache, other, ..] = spans(&request) else { panic!("two request spans and an attempt") };
    assert_eq!(string_attribute(cache, "gen_ai.provider.name"), Some("llmops.cache"));
    assert_eq!(string_attribute(other, "gen_ai.provider.name"), Some("openai"));
    let configured: BTreeMap<String, String> = [("llamacpp".to_string(), "llama.cpp".to_string())].into();
    let request = export_request(&resource(), &items[1..], &[], &settings(Profile::Genai, false), &configured);
    assert_eq!(string_attribute(&spans(&request)[0], "gen_ai.provider.name"), Some("llama.cpp"));
}
