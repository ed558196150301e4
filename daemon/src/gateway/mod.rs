//! The OpenAI-compatible HTTP API.
mod admission;
mod answer;
mod browser;
mod cache_path;
mod cached_answer;
pub mod error;
mod feedback;
mod guardrail;
mod health;
mod holdback;
pub mod prompt;
mod proxy;
mod refusals;
pub mod request;
pub mod server;
mod sse;
mod stream;
mod stream_summary;
mod targets;
mod tool_calls;
mod trace_guard;
mod usage;
mod whole;

pub use cache_path::CACHE_ENGINE;
pub use proxy::{serve, Caller};
pub use sse::SseSplitter;
pub use trace_guard::{HandBack, Observers};

pub use error::GatewayError;

use crate::auth::{AuthError, Authenticator};
use crate::engine::Engines;
use crate::router::Router as ModelRouter;
use crate::trace::Recorder;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use request::Endpoint;
use serde_json::json;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The response header that carries the request (and trace) id.
pub const REQUEST_ID: &str = "x-request-id";

pub struct Gateway {
    pub router: ModelRouter,
    pub recorder: Recorder,
    /// Request metrics, drift and alerts: what a finished request is shown to.
    pub observers: Arc<Observers>,
    /// For `/metrics` (engine health).
    pub engines: Engines,
    /// API keys: who a request is from.
    pub auth: Arc<Authenticator>,
    /// Rate limits and budgets.
    pub admission: admission::Admission,
    pub retry: crate::resilience::RetryPolicy,
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's body.
    pub body_read_timeout: std::time::Duration,
    /// Origins, content types and hosts a browser may use.
    browser: browser::BrowserPolicy,
    /// Requests refused before they were authenticated: counted, never stored as traces.
    pub refusals: refusals::Refusals,
    /// Requests being answered now.
    pub in_flight: Arc<AtomicU64>,
    /// Scores on traces (`POST /v1/feedback`).
    pub feedback: Arc<crate::feedback::Feedback>,
    /// Registry prompts a request may name (`metadata.prompt`).
    pub prompts: Arc<crate::prompts::PromptRegistry>,
    /// Fired when shutdown's grace period is over: requests still running end now and record their traces.
    pub closing: crate::shutdown::Shutdown,
    /// `[[guardrails]]`, compiled.
    pub guardrails: Arc<crate::guardrails::Guardrails>,
    /// Routes' response caches.
    pub cache: Arc<crate::cache::ResponseCache>,
    /// OTLP export's counters, for `/metrics` (absent when export is off).
    pub otlp: Option<Arc<crate::export::otlp::OtlpExport>>,
}

/// What the gateway needs besides its router, recorder and telemetry.
pub struct GatewayParts {
    pub engines: Engines,
    pub auth: Arc<Authenticator>,
    pub budgets: crate::budget::Ledger,
    pub rate_limiter: crate::budget::RateLimiter,
    pub retry: crate::resilience::RetryPolicy,
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
    /// `server.cors_origins`.
    pub cors_origins: Vec<String>,
    /// Fired when shutdown's grace period is over.
    pub closing: crate::shutdown::Shutdown,
    pub feedback: Arc<crate::feedback::Feedback>,
    pub prompts: Arc<crate::prompts::PromptRegistry>,
    pub guardrails: Arc<crate::guardrails::Guardrails>,
    pub cache: Arc<crate::cache::ResponseCache>,
    /// OTLP export's counters, for `/metrics` (absent when export is off).
    pub otlp: Option<Arc<crate::export::otlp::OtlpExport>>,
}

impl Gateway {
    pub fn new(router: ModelRouter, recorder: Recorder, observers: Arc<Observers>, parts: GatewayParts) -> Self {
        Self {
            router,
            recorder,
            observers,
            engines: parts.engines,
            auth: parts.auth,
            admission: admission::Admission { budgets: parts.budgets, rate_limiter: parts.rate_limiter },
            retry: parts.retry,
            max_body_bytes: parts.max_body_bytes,
            body_read_timeout: parts.body_read_timeout,
            browser: browser::BrowserPolicy::new(&parts.cors_origins),
            refusals: refusals::Refusals::default(),
            in_flight: Arc::new(AtomicU64::new(0)),
            feedback: parts.feedback,
            closing: parts.closing,
            prompts: parts.prompts,
            guardrails: parts.guardrails,
            cache: parts.cache,
            otlp: parts.otlp,
        }
    }
}

pub fn http_router(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/feedback", post(feedback::post_feedback))
        .route("/v1/models", get(models))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), browser_guard))
        .layer(axum::middleware::map_response(ensure_request_id))
        .with_state(gateway)
}

/// Refuses what a web page should not be able to send (see `browser`) before any handler runs, answers CORS
/// preflights for allowed origins, and marks their answers readable.
async fn browser_guard(
    State(gateway): State<Arc<Gateway>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let loopback_only = !gateway.auth.key_required();
    let origin = match gateway.browser.check(request.method(), request.headers(), loopback_only) {
        Ok(origin) => origin,
        Err((refused, error)) => {
            gateway.refusals.count(refused);
            return error.into_response();
        }
    };
    if let (Some(origin), &Method::OPTIONS) = (&origin, request.method()) {
        return browser::preflight(origin.clone());
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        browser::allow(response.headers_mut(), origin);
    }
    response
}

async fn chat_completions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    from_client(gateway, Endpoint::ChatCompletions, headers, body).await
}

async fn completions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    from_client(gateway, Endpoint::Completions, headers, body).await
}

async fn embeddings(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    from_client(gateway, Endpoint::Embeddings, headers, body).await
}

/// A request from an HTTP client: authenticated before its body is read (an unauthenticated client costs no
/// more than its headers, and leaves no trace, only a count), then read within the size and time limits.
async fn from_client(gateway: Arc<Gateway>, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response {
    let principal = match authenticate(&gateway, &headers) {
        Ok(principal) => principal,
        Err(error) => {
            gateway.refusals.count(refusals::Refused::Unauthenticated);
            return error.into_response();
        }
    };
    let body = read_body(body, gateway.max_body_bytes, gateway.body_read_timeout).await;
    proxy::handle(gateway, endpoint, Caller::Client(principal), headers, body).await
}

/// The whole body, at most `limit` bytes, within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: std::time::Duration) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            // The length limit surfaces as an error whose source is http-body's LengthLimitError.
            let too_large = std::iter::successors(std::error::Error::source(&error), |e| e.source())
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(GatewayError::BodyTooLarge { limit })
            } else {
                Err(GatewayError::invalid(format!("cannot read request body: {error}")))
            }
        }
        Err(_) => Err(GatewayError::BodyTimeout(format!(
            "the request body did not arrive within {} ms (server.body_read_timeout_ms)",
            timeout.as_millis()
        ))),
    }
}

async fn models(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(error) = authenticate(&gateway, &headers) {
        return error.into_response();
    }
    let data: Vec<_> = gateway
        .router
        .names()
        .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "llmops"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The tenant of a request, from its bearer key (see `auth`).
pub fn authenticate(gateway: &Gateway, headers: &HeaderMap) -> Result<crate::auth::Principal, GatewayError> {
    let authorization = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    gateway.auth.authenticate(authorization).map_err(|error| {
        let code = match error {
            AuthError::Missing => "missing_api_key",
            AuthError::Invalid => "invalid_api_key",
            AuthError::Revoked { .. } => "revoked_api_key",
        };
        GatewayError::Unauthorized { message: error.to_string(), code }
    })
}

/// Prometheus text exposition: request metrics (OpenTelemetry GenAI names), GPUs, host, engines, trace store.
async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let mut text = crate::export::gauges::render_all(&gateway.observers.telemetry, &gateway.recorder, &gateway.engines);
    gateway.refusals.render(&mut text);
    gateway.guardrails.render(&mut text);
    gateway.cache.render(&mut text);
    if let Some(otlp) = &gateway.otlp {
        otlp.render(&mut text);
    }
    ([(axum::http::header::CONTENT_TYPE, crate::export::prometheus::CONTENT_TYPE)], text).into_response()
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    health::readyz(&gateway.router)
}

/// Generation requests set `x-request-id` to their trace id; every other answer gets a fresh one.
async fn ensure_request_id(mut response: Response) -> Response {
    if !response.headers().contains_key(REQUEST_ID) {
        if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
    }
    response
}

async fn not_found(uri: Uri) -> Response {
    GatewayError::NotFound(format!("no such endpoint: {}", uri.path())).into_response()
}
