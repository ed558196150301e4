//! A controllable fake OpenAI-compatible upstream with deterministic answers, so tests can assert exact
//! texts, token counts and timings through a gateway.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`,
//! and for tests `PUT /control` (replace the [`Behavior`]), `GET /control`, `GET /stats` ([`Stats`]) and
//! `POST /stats/reset`.
//!
//! The reply is `"echo: " + <last message or prompt>` (or `"w1 … wN"` with `reply_words`), streamed as
//! one chunk per space-separated word; see [`Behavior`] for the knobs.
mod reply;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use reply::{Endpoint, ReplyPlan};

/// How the fake upstream behaves; every field is optional in JSON (`PUT /control`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Pause between word chunks; a non-streaming answer waits words × this in total.
    pub token_delay_ms: u64,
    /// Pause before the first stream chunk (the role chunk for chat); added to a non-streaming wait.
    pub first_token_delay_ms: u64,
    /// Answer every chat, completions and embeddings request with this HTTP status and an OpenAI error
    /// (only the first `fail_first_requests` of them when that is set).
    pub fail_status: Option<u16>,
    /// With `fail_status`: also send `Retry-After: N` (seconds) on the failed answers, as a rate limiter does.
    pub retry_after_secs: Option<u64>,
    /// With `fail_status`: fail only the requests that are among the first N chat, completions and
    /// embeddings requests counted in [`Stats::requests`] (since start or the last stats reset), then answer
    /// normally: "fails twice then succeeds". Without `fail_status` it has no effect. Replacing the behaviour
    /// does not restart the count; reset the stats for that.
    pub fail_first_requests: Option<u64>,
    /// Streams only: after this many word chunks, break the connection without `[DONE]`.
    pub cut_after_chunks: Option<usize>,
    /// Streams only: after this many word chunks (all of them when the reply is shorter), send nothing more
    /// but keep the connection open until the client goes away. Counted in [`Stats::streams_stalled`]. When
    /// `cut_after_chunks` is set too, the smaller count wins; at equal counts the stream stalls.
    pub stall_after_chunks: Option<usize>,
    /// Streams only: send a few `data:` events that are not JSON (the first is `data: this is not json`),
    /// then `data: [DONE]`, instead of the reply. The delays still pace them; `cut_after_chunks` and
    /// `stall_after_chunks` do not apply.
    pub garbage_stream: bool,
    /// Non-streaming answers (chat, completions, embeddings) are a 200 with `Content-Type: application/json`
    /// and a truncated JSON body, such as `{"id": "chatcmpl-fake-1", "object": "chat.completion", "choices": [`.
    pub invalid_json: bool,
    /// Never send usage, like servers that ignore `stream_options.include_usage`.
    pub omit_usage: bool,
    /// Reply with `"w1 w2 … wN"` instead of echoing the prompt.
    pub reply_words: Option<usize>,
    /// Split the reply into pieces of this many characters instead of words (e.g. to cut a secret across
    /// stream chunks); each piece counts as one token.
    pub chunk_chars: Option<usize>,
    /// Model ids listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// KV-cache use in percent, reported by `GET /metrics` as vLLM does (`vllm:kv_cache_usage_perc`, a fraction).
    pub kv_cache_used_percent: u32,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            token_delay_ms: 0,
            first_token_delay_ms: 0,
            fail_status: None,
            retry_after_secs: None,
            fail_first_requests: None,
            cut_after_chunks: None,
            stall_after_chunks: None,
            garbage_stream: false,
            invalid_json: false,
            omit_usage: false,
            reply_words: None,
            chunk_chars: None,
            models: vec!["fake-model".to_owned()],
            kv_cache_used_percent: 0,
        }
    }
}

/// What the fake upstream has seen since start (or the last reset); also served as `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Chat, completions and embeddings requests received, failed ones included.
    pub requests: u64,
    /// Those answered with `fail_status`.
    pub requests_failed: u64,
    pub streams_started: u64,
    /// Streams whose `[DONE]` was handed to the server.
    pub streams_completed: u64,
    /// Streams the client (or a proxy) dropped before their end.
    pub streams_cancelled: u64,
    /// Streams broken on purpose by `cut_after_chunks`.
    pub streams_cut: u64,
    /// Streams that went silent on purpose (`stall_after_chunks`), counted when the stall begins; once the
    /// client goes away they are counted in `streams_cancelled` as well.
    pub streams_stalled: u64,
    /// The last chat, completions or embeddings request body (a JSON string when it was not JSON).
    pub last_request: Value,
    /// Headers of that request, names lower-case; repeated headers joined with ", ".
    pub last_headers: BTreeMap<String, String>,
}

/// State shared by the handlers and the [`FakeUpstream`] handle.
pub(crate) struct Shared {
    behavior: Mutex<Behavior>,
    stats: Mutex<Stats>,
    next_id: AtomicU64,
}

impl Shared {
    fn behavior(&self) -> Behavior {
        self.behavior.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_behavior(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap_or_else(PoisonError::into_inner) = behavior;
    }

    fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn update_stats(&self, change: impl FnOnce(&mut Stats)) {
        change(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A running fake upstream; it shuts down when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl FakeUpstream {
    /// Serves on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start(behavior: Behavior) -> anyhow::Result<FakeUpstream> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behavior).await
    }

    /// Serves on `listen` (port 0 picks a free one), on the current tokio runtime.
    pub async fn start_on(listen: SocketAddr, behavior: Behavior) -> anyhow::Result<FakeUpstream> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("fake upstream cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            stats: Mutex::new(Stats::default()),
            next_id: AtomicU64::new(1),
        });
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            // No Nagle: each stream chunk leaves at once, as from a real model server, instead of waiting
            // for the client's delayed ACK (~40 ms per stream).
            axum::serve(listener, app)
                .tcp_nodelay(true)
                .with_graceful_shutdown(async {
                    // A dropped sender means the handle is gone: stop as well.
                    let _ = shutdown_signal.await;
                })
                .await
        });
        Ok(FakeUpstream { addr, shared, shutdown: Some(shutdown), server: Some(server) })
    }

    /// `http://HOST:PORT/v1`, the base URL an OpenAI client or a gateway engine config expects.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn behavior(&self) -> Behavior {
        self.shared.behavior()
    }

    /// Replaces the behaviour; requests already being answered keep the one they started with.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.set_behavior(behavior);
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    pub fn reset_stats(&self) {
        self.shared.update_stats(|stats| *stats = Stats::default());
    }

    /// Stops accepting connections and waits (up to 5 s) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/control", get(get_control).put(put_control))
        .route("/stats", get(get_stats))
        .route("/stats/reset", post(reset_stats))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// Prometheus metrics in vLLM's names: streams open now as running, none waiting, KV use from `kv_cache_used_percent`.
async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let stats = shared.stats();
    // Stalled streams still count as running until the client goes away (then they are cancelled).
    let running =
        stats.streams_started.saturating_sub(stats.streams_completed + stats.streams_cancelled + stats.streams_cut);
    let kv = f64::from(shared.behavior().kv_cache_used_percent) / 100.0;
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{model_name=\"fake-model\"}} {running}\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{model_name=\"fake-model\"}} 0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{model_name=\"fake-model\"}} {kv}\n"
    )
}

/// An OpenAI-shaped error answer.
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "code": null}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A 200 that claims JSON but whose body stops after `prefix` (which must not be valid JSON on its own).
fn invalid_json_response(prefix: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], prefix).into_response()
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn headers_as_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// Counts and records a request, then returns its JSON body and the behaviour to answer it with, or the
/// answer itself when the behaviour says fail or the body is not JSON.
fn admit(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<(Value, Behavior), ApiError> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let recorded = match &parsed {
        Ok(value) => value.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    };
    let behavior = shared.behavior();
    let mut fail = None;
    // Counting and deciding under one lock, so concurrent requests each see their own place in the count.
    shared.update_stats(|stats| {
        stats.requests += 1;
        stats.last_request = recorded;
        stats.last_headers = headers_as_map(headers);
        fail = behavior.fail_status.filter(|_| behavior.fail_first_requests.is_none_or(|n| stats.requests <= n));
        if fail.is_some() {
            stats.requests_failed += 1;
        }
    });
    if let Some(status) = fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(ApiError {
            status,
            message: "fake failure".to_owned(),
            kind: "server_error",
            retry_after: behavior.retry_after_secs,
        });
    }
    match parsed {
        Ok(request) => Ok((request, behavior)),
        Err(e) => Err(ApiError::invalid_request(format!("request body is not JSON: {e}"))),
    }
}

async fn chat_completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(shared, Endpoint::Chat, &headers, &body).await
}

async fn completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(shared, Endpoint::Completions, &headers, &body).await
}

async fn generate(shared: Arc<Shared>, endpoint: Endpoint, headers: &HeaderMap, body: &Bytes) -> Response {
    let (request, behavior) = match admit(&shared, headers, body) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let sequence = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let plan = match ReplyPlan::from_request(endpoint, &request, &behavior, sequence, unix_seconds()) {
        Ok(plan) => plan,
        Err(message) => return ApiError::invalid_request(message).into_response(),
    };
    if plan.stream {
        let body = stream::sse_body(&plan, &behavior, shared);
        return ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body)
            .into_response();
    }
    let words = u32::try_from(plan.tokens.len()).unwrap_or(u32::MAX);
    let delay = Duration::from_millis(behavior.first_token_delay_ms)
        + Duration::from_millis(behavior.token_delay_ms).saturating_mul(words);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if behavior.invalid_json {
        return invalid_json_response(format!(
            r#"{{"id": "{}", "object": "{}", "choices": ["#,
            plan.id,
            plan.object(false)
        ));
    }
    Json(plan.full_response(!behavior.omit_usage)).into_response()
}

async fn embeddings(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (request, behavior) = match admit(&shared, &headers, &body) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    match reply::embeddings_response(&request, &behavior) {
        Ok(_) if behavior.invalid_json => invalid_json_response(r#"{"object": "list", "data": ["#.to_owned()),
        Ok(answer) => Json(answer).into_response(),
        Err(message) => ApiError::invalid_request(message).into_response(),
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let data: Vec<Value> = shared
        .behavior()
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "fake-upstream"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_control(State(shared): State<Arc<Shared>>) -> Json<Behavior> {
    Json(shared.behavior())
}

async fn put_control(State(shared): State<Arc<Shared>>, Json(behavior): Json<Behavior>) -> Json<Behavior> {
    shared.set_behavior(behavior.clone());
    Json(behavior)
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.stats())
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.update_stats(|stats| *stats = Stats::default());
    StatusCode::NO_CONTENT
}
