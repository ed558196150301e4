//! Traces to one OTLP `ExportTraceServiceRequest`: a SERVER span per request and a CLIENT span per engine
//! attempt under it, with the GenAI semantic conventions and, per profile, what Phoenix or Langfuse read.
//!
//! Ids are derived from the trace id, so a batch sent again after a crash (the outbox cannot know whether the
//! collector got it) overwrites or deduplicates in the backend instead of doubling.
use super::attrs::{label, truncate, Attrs};
use super::content::Content;
use super::request::{self, Params};
use super::{genai, langfuse, phoenix};
use crate::trace::{Attempt, Score, Trace, TraceStatus};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Which backend's attribute names the spans carry besides the GenAI conventions (always there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Genai,
    /// Arize Phoenix: OpenInference attributes.
    Phoenix,
    /// Langfuse: its `langfuse.*` attributes.
    Langfuse,
}

impl Profile {
    /// The name in `[export.otlp] profile`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Genai => "genai",
            Profile::Phoenix => "phoenix",
            Profile::Langfuse => "langfuse",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSettings {
    pub profile: Profile,
    /// Export prompt, answer, error and comment text. Off, spans carry counts, names and timings only.
    pub content: bool,
    /// Budget in characters for each side of the content (input, prompt text, answer).
    pub max_content_chars: usize,
}

impl Default for SpanSettings {
    fn default() -> Self {
        Self { profile: Profile::Genai, content: false, max_content_chars: DEFAULT_MAX_CONTENT_CHARS }
    }
}

pub const DEFAULT_MAX_CONTENT_CHARS: usize = 16_384;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    pub service_name: String,
    pub service_version: String,
    pub host_name: String,
    /// Kubernetes node; empty off Kubernetes.
    pub node_name: String,
    /// Phoenix project; empty means Phoenix's `default`.
    pub project: String,
}

/// One trace to export.
#[derive(Debug, Clone)]
pub struct TraceToExport {
    pub trace: Trace,
}

/// The instrumentation scope every span is under.
pub const SCOPE_NAME: &str = "llmopsd";
/// The GenAI conventions these spans follow (v1.37 renamed `gen_ai.system` to `gen_ai.provider.name`).
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";
/// The engine a cache hit's trace names (`gateway::cache_path::CACHE_ENGINE`).
const CACHE_ENGINE: &str = "cache";
/// Tags past this many are not exported (sorted by name, the first are kept).
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_CHARS: usize = 256;
/// Retries and fallbacks are few; a longer list (an import) is cut.
const MAX_ATTEMPTS: usize = 64;
/// W3C flags: sampled, and "the parent is known not to be remote" (OTLP 1.1 `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE`).
const SPAN_FLAGS: u32 = 0x01 | 0x100;

/// What the attribute builders of every profile read for one trace.
pub(super) struct View<'a> {
    pub trace: &'a Trace,
    pub settings: &'a SpanSettings,
    /// `gen_ai.operation.name`.
    pub operation: &'a str,
    /// `gen_ai.provider.name` of the engine that answered.
    pub provider: &'a str,
    pub params: Params,
    /// Tags capped at [`MAX_TAGS`], names and values cut to [`MAX_TAG_CHARS`].
    pub tags: Vec<(&'a str, &'a str)>,
    /// Only with `settings.content`.
    pub content: Option<Content>,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl View<'_> {
    /// `model_served`, or the model asked for when none answered.
    pub fn model(&self) -> &str {
        if self.trace.model_served.is_empty() {
            &self.trace.model_requested
        } else {
            &self.trace.model_served
        }
    }

    /// `"name:value"` per tag (Langfuse and Phoenix tags are plain strings).
    pub fn tag_list(&self) -> Vec<String> {
        self.tags.iter().map(|(name, value)| format!("{name}:{value}")).collect()
    }
}

/// The spans of `items` (a request span and its attempts each) and of `scores` (one each, under the request
/// span of the trace they score, which may have gone in an earlier request), as one export request.
pub fn export_request(
    resource: &ResourceInfo,
    items: &[TraceToExport],
    scores: &[Score],
    settings: &SpanSettings,
    providers: &BTreeMap<String, String>,
) -> ExportTraceServiceRequest {
    let mut spans: Vec<Span> = items.iter().flat_map(|item| trace_spans(item, settings, providers)).collect();
    spans.extend(super::evaluation::score_spans(scores, settings));
    let scope = InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: resource.service_version.clone(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    };
    let scope_spans = ScopeSpans { scope: Some(scope), spans, schema_url: SCHEMA_URL.into() };
    let resource_spans = ResourceSpans {
        resource: Some(Resource { attributes: resource_attributes(resource, settings), dropped_attributes_count: 0 }),
        scope_spans: vec![scope_spans],
        schema_url: SCHEMA_URL.into(),
    };
    ExportTraceServiceRequest { resource_spans: vec![resource_spans] }
}

fn resource_attributes(resource: &ResourceInfo, settings: &SpanSettings) -> Vec<KeyValue> {
    let mut attrs = Attrs::default();
    attrs.str("service.name", &resource.service_name);
    attrs.str("service.version", &resource.service_version);
    attrs.str("host.name", &resource.host_name);
    attrs.str_set("k8s.node.name", &resource.node_name);
    if settings.profile == Profile::Phoenix {
        let project = if resource.project.is_empty() { "default" } else { &resource.project };
        attrs.str("openinference.project.name", project);
    }
    attrs.into_vec()
}

fn provider<'a>(providers: &'a BTreeMap<String, String>, engine: &str) -> &'a str {
    match providers.get(engine) {
        Some(name) => name,
        None if engine == CACHE_ENGINE => "llmops.cache",
        None => "openai",
    }
}

fn trace_spans(item: &TraceToExport, settings: &SpanSettings, providers: &BTreeMap<String, String>) -> Vec<Span> {
    let trace = &item.trace;
    let body = request::parse(&trace.request_json);
    let start_ns = epoch_ns(trace.started_at_unix_ms);
    let end_ns = if trace.ended_at_unix_ms >= trace.started_at_unix_ms {
        epoch_ns(trace.ended_at_unix_ms)
    } else {
        // Not finished (an in-flight trace): its latency so far.
        start_ns.saturating_add(ms_to_ns(trace.latency_ms))
    };
    let view = View {
        trace,
        settings,
        operation: crate::telemetry::requests::operation_name(&trace.endpoint),
        provider: provider(providers, &trace.engine),
        params: Params::of(body.as_ref()),
        tags: capped_tags(&trace.tags),
        content: settings.content.then(|| Content::build(trace, body.as_ref(), settings.max_content_chars)),
        start_ns,
        end_ns,
    };
    let trace_id = trace_id(&trace.id);
    let request_span_id = span_id(&format!("span:{}", trace.id));
    let mut spans = vec![request_span(&view, &trace_id, &request_span_id)];
    for (index, attempt) in trace.attempts.iter().take(MAX_ATTEMPTS).enumerate() {
        let provider = provider(providers, &attempt.engine);
        spans.push(attempt_span(&view, index, attempt, provider, &trace_id, &request_span_id));
    }
    spans
}

/// One engine attempt, a CLIENT span under the request's.
fn attempt_span(
    view: &View,
    index: usize,
    attempt: &Attempt,
    provider: &str,
    trace_id: &[u8; 16],
    parent_span_id: &[u8; 8],
) -> Span {
    let trace = view.trace;
    let span_id = span_id(&format!("attempt:{index}:{}", trace.id));
    let start = view.start_ns.saturating_add(ms_to_ns(attempt.start_offset_ms));
    let mut attrs = Attrs::default();
    attrs.str("gen_ai.operation.name", view.operation);
    attrs.str("gen_ai.provider.name", provider);
    attrs.str_set("gen_ai.request.model", &attempt.model);
    attrs.str("llmops.engine", &attempt.engine);
    attrs.uint("llmops.attempt", index as u64);
    if attempt.upstream_status != 0 {
        attrs.int("http.response.status_code", i64::from(attempt.upstream_status));
    }
    if let Some(ttft_ms) = attempt.ttft_ms {
        attrs.float("llmops.ttft_ms", ttft_ms);
    }
    let status = if attempt.error.is_empty() {
        // An attempt that answered: UNSET, as the conventions ask of CLIENT spans without an error.
        None
    } else {
        let error_type = attempt_error_type(&attempt.error, attempt.upstream_status);
        attrs.str("error.type", &error_type);
        // The text may quote the engine's answer, which may quote the prompt.
        let message = if view.settings.content { label(&attempt.error) } else { &error_type };
        Some(Status { message: message.to_string(), code: StatusCode::Error as i32 })
    };
    match view.settings.profile {
        Profile::Genai => {}
        Profile::Phoenix => phoenix::attempt_attributes(&mut attrs),
        Profile::Langfuse => langfuse::attempt_attributes(&mut attrs),
    }
    let model = if attempt.model.is_empty() { &trace.route } else { &attempt.model };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent_span_id.to_vec(),
        flags: SPAN_FLAGS,
        name: label(&format!("{} {model}", view.operation)).to_string(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(ms_to_ns(attempt.latency_ms)),
        attributes: attrs.into_vec(),
        status,
        ..Span::default()
    }
}

/// The request, a SERVER span: the root of its trace.
fn request_span(view: &View, trace_id: &[u8; 16], span_id: &[u8; 8]) -> Span {
    let trace = view.trace;
    let mut attrs = Attrs::default();
    genai::request_attributes(view, &mut attrs);
    match view.settings.profile {
        Profile::Genai => {}
        Profile::Phoenix => phoenix::request_attributes(view, &mut attrs),
        Profile::Langfuse => langfuse::request_attributes(view, &mut attrs),
    }
    let status = match trace.status {
        TraceStatus::Ok => Some(Status { message: String::new(), code: StatusCode::Ok as i32 }),
        TraceStatus::InFlight => None,
        TraceStatus::Error | TraceStatus::Rejected | TraceStatus::Cancelled => {
            // The message can quote the request (a serde error naming a bad value): only with content.
            let message = if view.settings.content && !trace.error_message.is_empty() {
                &trace.error_message
            } else {
                genai::error_type(trace)
            };
            Some(Status { message: label(message).to_string(), code: StatusCode::Error as i32 })
        }
    };
    let name = match trace.model_requested.as_str() {
        "" => view.operation.to_string(),
        model => format!("{} {model}", view.operation),
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        flags: SPAN_FLAGS,
        name: label(&name).to_string(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: view.start_ns,
        end_time_unix_nano: view.end_ns,
        attributes: attrs.into_vec(),
        events: genai::events(view),
        status,
        ..Span::default()
    }
}

/// A low-cardinality `error.type` for an attempt (never its text): the engine's HTTP status when it answered
/// with one, as the HTTP conventions do, else the kind of failure the gateway's text begins with (see
/// `TraceGuard::skip` and the cancel path in the gateway).
fn attempt_error_type(error: &str, upstream_status: u16) -> String {
    if upstream_status >= 400 {
        upstream_status.to_string()
    } else if error.starts_with("skipped") {
        "skipped".into()
    } else if error.starts_with("cancelled") {
        "cancelled".into()
    } else {
        // The conventions' value for "none of the known kinds".
        "_OTHER".into()
    }
}

fn capped_tags(tags: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    for (name, value) in tags {
        if kept.len() == MAX_TAGS {
            break;
        }
        let name = truncate(name, MAX_TAG_CHARS).0;
        // Two long names can share their first characters: one attribute per name.
        if seen.insert(name) {
            kept.push((name, truncate(value, MAX_TAG_CHARS).0));
        }
    }
    kept
}

/// The trace id's 16 bytes when it is a UUID (the gateway makes v7 UUIDs), else the first 16 bytes of its
/// SHA-256; never all zero (OTLP's "no id").
pub fn trace_id(id: &str) -> [u8; 16] {
    let mut bytes = match uuid::Uuid::try_parse(id) {
        Ok(uuid) if !uuid.is_nil() => *uuid.as_bytes(),
        _ => first_bytes(id),
    };
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    bytes
}

/// The first 8 bytes of SHA-256 of `seed` (`span:{trace id}` or `attempt:{index}:{trace id}`).
pub fn span_id(seed: &str) -> [u8; 8] {
    let mut bytes: [u8; 8] = first_bytes(seed);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    bytes
}

fn first_bytes<const N: usize>(seed: &str) -> [u8; N] {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0; N];
    bytes.copy_from_slice(&digest[..N]);
    bytes
}

/// Milliseconds since the epoch to nanoseconds (integer math: an f64 would round them); 0 before the epoch.
pub fn epoch_ns(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// A duration or offset in milliseconds to nanoseconds; 0 for negative or non-finite input.
pub fn ms_to_ns(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        // Saturates at u64::MAX, far past any real time.
        (ms * 1e6).round() as u64
    } else {
        0
    }
}
