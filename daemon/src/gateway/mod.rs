//! The OpenAI-compatible HTTP API.
mod admission;
pub mod error;
mod health;
mod proxy;
pub mod request;
mod stream;
mod trace_guard;

pub use proxy::Caller;
pub use stream::{SseSplitter, StreamSummary};
pub use trace_guard::Observers;

pub use error::GatewayError;

use crate::auth::{AuthError, Authenticator};
use crate::engine::Engines;
use crate::router::Router as ModelRouter;
use crate::trace::Recorder;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
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
    /// Requests being answered now.
    pub in_flight: Arc<AtomicU64>,
    /// Fired when shutdown's grace period is over: requests still running end now and record their traces.
    pub closing: crate::shutdown::Shutdown,
}

/// What the gateway needs besides its router, recorder and telemetry.
pub struct GatewayParts {
    pub engines: Engines,
    pub auth: Arc<Authenticator>,
    pub budgets: crate::budget::Ledger,
    pub rate_limiter: crate::budget::RateLimiter,
    pub retry: crate::resilience::RetryPolicy,
    pub max_body_bytes: usize,
    /// Fired when shutdown's grace period is over.
    pub closing: crate::shutdown::Shutdown,
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
            in_flight: Arc::new(AtomicU64::new(0)),
            closing: parts.closing,
        }
    }
}

pub fn http_router(gateway: Arc<Gateway>) -> axum::Router {
    let limit = gateway.max_body_bytes;
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::map_response(ensure_request_id))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

type Body = Result<Bytes, BytesRejection>;

async fn chat_completions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    proxy::handle(gateway, Endpoint::ChatCompletions, Caller::Client, headers, body).await
}

async fn completions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    proxy::handle(gateway, Endpoint::Completions, Caller::Client, headers, body).await
}

async fn embeddings(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    proxy::handle(gateway, Endpoint::Embeddings, Caller::Client, headers, body).await
}

/// Runs a request in-process as if it had come over HTTP (replay): same routing, budgets, fallbacks and trace.
pub async fn serve(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy::handle(gateway, endpoint, caller, headers, Ok(body)).await
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
    let text = crate::export::gauges::render_all(&gateway.observers.telemetry, &gateway.recorder, &gateway.engines);
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
