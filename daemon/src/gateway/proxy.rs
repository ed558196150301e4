//! The path of one generation or embedding request: read it, route it, call the engine, answer, and leave a
//! trace whatever happens.
use super::admission::{self, Estimate, Refusal};
use super::answer::{read_whole, MAX_UPSTREAM_BODY_BYTES};
use super::error::GatewayError;
use super::request::{ClientRequest, Endpoint};
use super::stream;
use super::trace_guard::TraceGuard;
use super::Gateway;
use crate::auth::Principal;
use crate::engine::{Answer, UpstreamError};
use crate::resilience::OpenCause;
use crate::router::Target;
use crate::shutdown::Shutdown;
use crate::trace::{Attempt, TraceStatus};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Who a request is from.
pub enum Caller {
    /// An HTTP client, known by its API key (checked before its body was read).
    Client(Principal),
    /// A re-run of a recorded trace (asked for over the authenticated gRPC API), on behalf of the original's
    /// tenant so its budgets and limits apply.
    Replay { principal: Principal, replay_of: String },
}

pub async fn handle(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, GatewayError>,
) -> Response {
    let mut guard = TraceGuard::new(
        gateway.recorder.clone(),
        gateway.observers.clone(),
        gateway.in_flight.clone(),
        endpoint.name(),
    );
    let request_id = guard.id().to_string();
    let principal = match caller {
        Caller::Client(principal) => principal,
        Caller::Replay { principal, replay_of } => {
            guard.trace_mut().replay_of = replay_of;
            principal
        }
    };
    guard.trace_mut().tenant = principal.tenant.clone();
    let prepared = prepare(&gateway, endpoint, &headers, body, &mut guard).and_then(|(request, targets)| {
        let estimate = Estimate::of(&request);
        gateway.admission.rate_limit(&principal, &estimate)?;
        Ok((estimate, request, targets))
    });
    let mut response = match prepared {
        Ok((estimate, request, targets)) => {
            guard.enter_route(&request.model);
            guard.announce();
            let plan = Plan { endpoint, principal, estimate, targets };
            forward(&gateway, plan, request, guard).await
        }
        Err(error) => {
            guard.announce();
            fail(guard, error)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(super::REQUEST_ID, value);
    }
    response
}

/// Reads and routes the request, filling the trace with what the request says.
fn prepare(
    gateway: &Gateway,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Result<Bytes, GatewayError>,
    guard: &mut TraceGuard,
) -> Result<(ClientRequest, Vec<Target>), GatewayError> {
    let bytes = body?;
    let trace = guard.trace_mut();
    // Kept even when the body is refused, so a rejected request's trace shows what was sent.
    trace.request_json = String::from_utf8_lossy(&bytes).into_owned();
    let request = ClientRequest::parse(endpoint, &bytes, headers).inspect_err(|_| {
        // Refused, but the trace still says which model was asked for when the body names one (within bounds).
        if let Some(model) = requested_model(&bytes).filter(|m| m.len() <= super::request::MAX_MODEL_BYTES) {
            trace.model_requested = model;
        }
    })?;
    // The route (a metric label and a drift key) is set only once the router knows it: a client cannot mint
    // label values with made-up model names.
    trace.model_requested = request.model.clone();
    trace.stream = request.stream;
    trace.user = request.user.clone();
    trace.session_id = request.session_id.clone();
    trace.prompt_id = request.prompt_id.clone();
    trace.prompt_version = request.prompt_version.clone();
    trace.tags = request.tags.clone();
    trace.prompt_text = request.prompt_text.clone();
    let targets = gateway
        .router
        .resolve(&request.model)
        .filter(|targets| !targets.is_empty())
        .ok_or_else(|| unknown_model(gateway, &request.model))?
        .to_vec();
    guard.trace_mut().route = request.model.clone();
    Ok((request, targets))
}

fn requested_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: String,
    }
    serde_json::from_slice::<ModelOnly>(body).ok().map(|m| m.model)
}

fn unknown_model(gateway: &Gateway, model: &str) -> GatewayError {
    let served: Vec<&str> = gateway.router.names().collect();
    let served = if served.is_empty() {
        "none: no engine is configured (add [engines.NAME] to the config)".to_string()
    } else {
        served.join(", ")
    };
    GatewayError::ModelNotFound(format!("The model `{model}` does not exist on this server. Models served: {served}"))
}

/// What is known about a request once it is admitted.
struct Plan {
    endpoint: Endpoint,
    principal: Principal,
    estimate: Estimate,
    targets: Vec<Target>,
}

/// Tries the route's targets in order until one answers. A target is skipped while its circuit breaker is
/// open or its budget says `downgrade`; it is retried (jittered backoff, `resilience.retry`) and then left for
/// the next one when it cannot be reached, times out before answering, or answers 5xx or 429. An engine's own
/// refusal (other 4xx) is the answer. Nothing has reached the client before an engine answers, so falling back
/// is always safe here.
async fn forward(gateway: &Gateway, plan: Plan, mut request: ClientRequest, mut guard: TraceGuard) -> Response {
    let mut last_error = None;
    let mut rng = crate::resilience::jitter_rng();
    let first_try = Instant::now();
    for (position, target) in plan.targets.iter().enumerate() {
        let engine = &target.engine;
        let skip = |guard: &mut TraceGuard, error: String| {
            let start_offset_ms = guard.elapsed_ms();
            guard.push_attempt(Attempt {
                engine: engine.name().to_string(),
                model: target.model.clone(),
                start_offset_ms,
                error,
                ..Attempt::default()
            });
        };
        let is_last = position + 1 == plan.targets.len();
        if let Some(reason) = overloaded(gateway, target).filter(|_| !is_last) {
            skip(&mut guard, format!("skipped: {reason}"));
            last_error = Some(GatewayError::EngineUnavailable(format!("engine {}: {reason}", engine.name())));
            continue;
        }
        match gateway.admission.reserve(&plan.principal, &request.model, target, &plan.estimate) {
            Ok(reservation) => guard.serve_from(reservation, target.price),
            Err(Refusal::Downgrade(denied)) => {
                skip(&mut guard, format!("skipped (budget downgrade): {}", denied.message));
                last_error = Some(admission::budget_exceeded(&denied, crate::clock::unix_ms()));
                continue;
            }
            Err(Refusal::Reject(error)) => return fail(guard, error),
        }
        for retry in 0..gateway.retry.max_attempts_per_target {
            if retry > 0 {
                let delay = gateway.retry.delay(retry - 1, &mut rng);
                if !gateway.retry.may_retry(retry, first_try.elapsed(), delay) {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            let permit = match target.breaker.try_acquire(Instant::now()) {
                Ok(permit) => permit,
                Err(open) => {
                    let why = match open.cause {
                        OpenCause::Breaker => "circuit breaker open",
                        OpenCause::RetryAfter => "engine asked to wait (Retry-After)",
                    };
                    let message = format!("skipped: {why}; retry in {:.1} s", open.retry_in.as_secs_f64());
                    skip(&mut guard, message.clone());
                    last_error = Some(GatewayError::EngineUnavailable(format!("engine {}: {message}", engine.name())));
                    break;
                }
            };
            match attempt(plan.endpoint, target, &mut request, &mut guard).await {
                Ok(answered) => {
                    permit.success(Instant::now());
                    return answer(gateway, plan.endpoint, &request, target, guard, answered).await;
                }
                Err(error) => {
                    let fall_back = error.should_fall_back();
                    let retry_after = match &error {
                        UpstreamError::Status { status: 429, retry_after, .. } => Some(*retry_after),
                        _ => None,
                    };
                    match retry_after {
                        // Overloaded, not broken: not a breaker failure; honour its Retry-After.
                        Some(Some(wait)) => target.breaker.block_until(Instant::now(), Instant::now() + wait),
                        Some(None) => drop(permit),
                        None if fall_back => permit.failure(Instant::now()),
                        None => permit.success(Instant::now()),
                    }
                    let gateway_error = upstream_error(error);
                    if !fall_back {
                        return fail(guard, gateway_error);
                    }
                    last_error = Some(gateway_error);
                    if matches!(retry_after, Some(Some(_))) {
                        break;
                    }
                }
            }
        }
        guard.release_reservation();
    }
    let error = last_error.unwrap_or_else(|| GatewayError::Upstream("the route has no targets".into()));
    fail(guard, error)
}

/// Why a target should be left for the next one now: its queue or its GPUs' memory over the configured limit.
fn overloaded(gateway: &Gateway, target: &Target) -> Option<String> {
    if let (Some(limit), Some(waiting)) = (target.max_waiting, target.engine.load().and_then(|l| l.waiting)) {
        if waiting > limit {
            return Some(format!("{waiting} requests waiting at the engine (max_waiting = {limit})"));
        }
    }
    let limit = target.max_gpu_memory_fraction?;
    let used = gateway.observers.telemetry.gpu_memory_fraction(target.engine.name())?;
    (used > limit).then(|| format!("GPU memory {:.0}% in use (max_gpu_memory_fraction = {limit})", used * 100.0))
}

/// An engine's answer, and when the attempt that got it began.
struct Answered {
    upstream: Answer,
    /// Milliseconds after the request arrived, for the trace.
    start_offset_ms: f64,
    /// The request timeout counts from here.
    started: Instant,
}

/// One call to one engine, recorded as an attempt on the trace.
async fn attempt(
    endpoint: Endpoint,
    target: &Target,
    request: &mut ClientRequest,
    guard: &mut TraceGuard,
) -> Result<Answered, UpstreamError> {
    let engine = &target.engine;
    let started = Instant::now();
    let attempt_start = guard.elapsed_ms();
    guard.push_attempt(Attempt {
        engine: engine.name().to_string(),
        model: target.model.clone(),
        start_offset_ms: attempt_start,
        ..Attempt::default()
    });
    guard.meter_energy(engine.name());
    let trace = guard.trace_mut();
    trace.engine = engine.name().to_string();
    trace.model_served = target.model.clone();
    let body = request.upstream_body(&target.model);
    match engine.post(endpoint, body).await {
        Ok(upstream) => {
            if let Some(attempt) = guard.trace_mut().attempts.last_mut() {
                attempt.upstream_status = upstream.status;
            }
            Ok(Answered { upstream, start_offset_ms: attempt_start, started })
        }
        Err(error) => {
            let latency = guard.elapsed_ms() - attempt_start;
            if let Some(attempt) = guard.trace_mut().attempts.last_mut() {
                attempt.latency_ms = latency;
                attempt.upstream_status = match &error {
                    UpstreamError::Status { status, .. } => *status,
                    _ => 0,
                };
                attempt.error = upstream_error_message(&error);
            }
            Err(error)
        }
    }
}

/// Relays an engine's answer to the client, naming the target that served it.
async fn answer(
    gateway: &Gateway,
    endpoint: Endpoint,
    request: &ClientRequest,
    target: &Target,
    guard: TraceGuard,
    answered: Answered,
) -> Response {
    let Answered { upstream, start_offset_ms: attempt_start, started } = answered;
    let deadline = started + target.engine.request_timeout();
    let closing = gateway.closing.clone();
    let mut response = if request.stream {
        stream::respond(guard, upstream, request.wants_stream_usage, attempt_start, deadline, closing)
    } else {
        complete(endpoint, guard, upstream, attempt_start, deadline, closing).await
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{}/{}", target.engine.name(), target.model)) {
        response.headers_mut().insert("x-llmops-served-by", value);
    }
    response
}

fn upstream_error_message(error: &UpstreamError) -> String {
    match error {
        UpstreamError::Status { body, .. } => {
            let detail = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
            if detail.is_empty() {
                format!("{error}")
            } else {
                format!("{error}: {detail}")
            }
        }
        _ => error.to_string(),
    }
}

fn fail(guard: TraceGuard, error: GatewayError) -> Response {
    let response = error.clone().into_response();
    guard.fail(&error);
    response
}

pub fn upstream_error(error: UpstreamError) -> GatewayError {
    match error {
        UpstreamError::Connect { .. } => GatewayError::Upstream(error.to_string()),
        UpstreamError::Timeout { .. } => GatewayError::UpstreamTimeout(error.to_string()),
        UpstreamError::Unavailable { .. } => GatewayError::EngineUnavailable(error.to_string()),
        UpstreamError::Status { status, body, ref engine, .. } => match StatusCode::from_u16(status) {
            Ok(code) if code.is_client_error() => GatewayError::UpstreamRejected { status: code, body },
            _ => GatewayError::Upstream(format!("engine {engine} failed with HTTP {status}")),
        },
    }
}

/// A non-streaming answer: read it whole (within the request deadline), record it, pass it on unchanged.
async fn complete(
    endpoint: Endpoint,
    mut guard: TraceGuard,
    upstream: Answer,
    attempt_start: f64,
    deadline: Instant,
    mut closing: Shutdown,
) -> Response {
    let engine = guard.trace_mut().engine.clone();
    let read = tokio::select! {
        read = tokio::time::timeout_at(deadline.into(), read_whole(upstream, MAX_UPSTREAM_BODY_BYTES)) => read,
        _ = closing.wait() => {
            return fail(guard, GatewayError::Upstream("the daemon is shutting down; the answer was not complete".into()));
        }
    };
    let parsed = match read {
        Err(_) => {
            Err(GatewayError::UpstreamTimeout(format!("engine {engine} did not finish within the request timeout")))
        }
        Ok(Err(e)) => Err(GatewayError::Upstream(format!("engine {engine}: reading the answer failed: {e}"))),
        Ok(Ok(bytes)) => serde_json::from_slice::<Value>(&bytes)
            .map(|value| (bytes, value))
            .map_err(|e| GatewayError::Upstream(format!("engine {engine} sent invalid JSON: {e}"))),
    };
    let latency = guard.elapsed_ms() - attempt_start;
    let (bytes, value) = match parsed {
        Ok(ok) => ok,
        Err(error) => {
            if let Some(attempt) = guard.trace_mut().attempts.last_mut() {
                attempt.latency_ms = latency;
                attempt.error = error.message();
            }
            return fail(guard, error);
        }
    };
    let trace = guard.trace_mut();
    if let Some(attempt) = trace.attempts.last_mut() {
        attempt.latency_ms = latency;
    }
    if let Some(model) = value.get("model").and_then(Value::as_str) {
        trace.model_served = model.to_string();
    }
    trace.response_text = response_text(endpoint, &value);
    trace.finish_reason =
        value.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or_default().to_string();
    match value.get("usage").filter(|u| u.is_object()) {
        Some(usage) => {
            trace.input_tokens = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            trace.output_tokens = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        }
        None => {
            trace.input_tokens = estimate_tokens(&trace.prompt_text);
            trace.output_tokens = estimate_tokens(&trace.response_text);
            trace.tokens_estimated = true;
        }
    }
    // Not seen token by token: the whole answer counts toward the last interval's energy share.
    let output_tokens = trace.output_tokens;
    guard.add_tokens(output_tokens);
    guard.finish(TraceStatus::Ok, 200);
    ([(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response()
}

/// The whole body of a non-streaming answer.
fn response_text(endpoint: Endpoint, value: &Value) -> String {
    match endpoint {
        Endpoint::ChatCompletions => value.pointer("/choices/0/message/content"),
        Endpoint::Completions => value.pointer("/choices/0/text"),
        Endpoint::Embeddings => {
            let data = value.get("data").and_then(Value::as_array);
            let count = data.map_or(0, Vec::len);
            let dims = data
                .and_then(|d| d.first())
                .and_then(|e| e.get("embedding"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            return format!("{count} embeddings of {dims} dimensions");
        }
    }
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_string()
}

/// When an engine reports no usage: about four characters a token, the usual rule of thumb for English BPE.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
