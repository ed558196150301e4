//! A controllable OTLP/HTTP trace receiver for the export tests: it decodes what it is sent with the
//! OpenTelemetry project's own protobuf types, and answers as told (accept, fail with a status, hang, refuse
//! payloads carrying a marker).
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// How the receiver answers export requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// Answer with this HTTP status (e.g. 503: down for now), asking for a day's wait with `Retry-After`
    /// (the exporter must wait no longer than its `retry_max_ms`).
    Fail(u16),
    /// Never answer (the exporter's timeout must end the request).
    Hang,
    /// 400 for any request holding a span whose `llmops.user` is this value; accept the others.
    RefuseUser(String),
    /// Accept, answering with this many bytes of junk for a body (a receiver gone wrong).
    Flood(usize),
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    requests: Mutex<u64>,
    spans: Mutex<Vec<Span>>,
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl OtlpReceiver {
    pub async fn start(mode: Mode) -> anyhow::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { mode: Mutex::new(Some(mode)), ..Shared::default() });
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(export)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(OtlpReceiver { addr, shared })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = Some(mode);
    }

    /// Export requests received, answered or not.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.lock().expect("requests")
    }

    /// Spans accepted so far (a span sent twice is here twice).
    pub fn spans(&self) -> Vec<Span> {
        self.shared.spans.lock().expect("spans").clone()
    }

    /// The request spans accepted, by `llmops.trace_id` (the daemon's trace id), each once.
    pub fn request_spans(&self) -> BTreeMap<String, Span> {
        self.spans()
            .into_iter()
            .filter(|span| span.parent_span_id.is_empty())
            .filter_map(|span| string_attribute(&span, "llmops.trace_id").map(|id| (id, span)))
            .collect()
    }
}

pub fn string_attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(text) => Some(text.clone()),
        _ => None,
    })
}

async fn export(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    *shared.requests.lock().expect("requests") += 1;
    let mode = shared.mode.lock().expect("mode").clone().unwrap_or(Mode::Accept);
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let spans: Vec<Span> =
        request.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect();
    let flood = if let Mode::Flood(bytes) = mode { bytes } else { 0 };
    match mode {
        Mode::Accept | Mode::Flood(_) => {}
        Mode::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (status, [("retry-after", "86400")], "down").into_response();
        }
        Mode::Hang => std::future::pending::<()>().await,
        Mode::RefuseUser(user) => {
            if spans.iter().any(|span| string_attribute(span, "llmops.user").as_deref() == Some(user.as_str())) {
                return (StatusCode::BAD_REQUEST, "refused: poison span").into_response();
            }
        }
    }
    shared.spans.lock().expect("spans").extend(spans);
    // Empty: an ExportTraceServiceResponse meaning full success.
    let body = vec![0xff; flood];
    (StatusCode::OK, [("content-type", "application/x-protobuf")], body).into_response()
}
