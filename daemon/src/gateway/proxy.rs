//! The path of one generation or embedding request: read it, route it, call the engine, answer, and leave a
//! trace whatever happens.
use super::admission::{self, Estimate, NotAdmitted};
use super::answer::{read_whole, MAX_UPSTREAM_BODY_BYTES};
use super::cache_path::{self, Decision, Directives, Fill, CACHE_ENGINE};
use super::error::GatewayError;
use super::holdback::HoldBack;
use super::request::{ClientRequest, Endpoint};
use super::stream;
use super::trace_guard::{AnswerSummary, HandBack, TraceGuard};
use super::usage::estimate_tokens;
use super::Gateway;
use crate::auth::Principal;
use crate::cache::{CachedBody, Outcome};
use crate::engine::{Answer, UpstreamError};
use crate::guardrails::{Guardrails, Stage};
use crate::resilience::OpenCause;
use crate::router::Target;
use crate::shutdown::Shutdown;
use crate::trace::TraceStatus;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who a request is from.
pub enum Caller {
    /// An HTTP client, known by its API key (checked before its body was read).
    Client(Principal),
    /// A re-run of a recorded trace (asked for over the authenticated gRPC API), on behalf of the original's
    /// tenant so its budgets and limits apply.
    Replay { principal: Principal, replay_of: String },
    /// A guardrail's classifier call on behalf of a client request's tenant: no guardrails run on it.
    Guardrail(Principal),
}

/// Serves one request from start to trace.
pub async fn handle(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, GatewayError>,
) -> Response {
    let guard = new_guard(&gateway, endpoint);
    run(gateway, endpoint, caller, headers, body, guard).await
}

/// Runs a request in-process as if it had come over HTTP (replay, evaluation runs): same routing, budgets,
/// fallbacks and trace as [`handle`]; the finished trace and the streamed text are handed back.
pub async fn serve(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> (Response, HandBack) {
    let mut guard = new_guard(&gateway, endpoint);
    let hand_back = guard.hand_back();
    (run(gateway, endpoint, caller, headers, Ok(body), guard).await, hand_back)
}

fn new_guard(gateway: &Gateway, endpoint: Endpoint) -> TraceGuard {
    TraceGuard::new(gateway.recorder.clone(), gateway.observers.clone(), gateway.in_flight.clone(), endpoint.name())
}

async fn run(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, GatewayError>,
    mut guard: TraceGuard,
) -> Response {
    let request_id = guard.id().to_string();
    let (principal, guarded) = match caller {
        Caller::Client(principal) => (principal, true),
        Caller::Replay { principal, replay_of } => {
            guard.trace_mut().replay_of = replay_of;
            (principal, true)
        }
        Caller::Guardrail(principal) => (principal, false),
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
            let plan = Plan { endpoint, principal, estimate, targets, guarded };
            admitted(&gateway, plan, request, &headers, guard).await
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
    let mut request = ClientRequest::parse(endpoint, &bytes, headers).inspect_err(|_| {
        // Refused, but the trace still says which model was asked for when the body names one (within bounds).
        if let Some(model) = requested_model(&bytes).filter(|m| m.len() <= super::request::MAX_MODEL_BYTES) {
            trace.model_requested = model;
        }
    })?;
    // The registry prompt, rendered into the messages; a refusal's trace still names the prompt asked for.
    let applied = super::prompt::apply(&gateway.prompts, &mut request);
    // The route (a metric label and a drift key) is set only once the router knows it: a client cannot mint
    // label values with made-up model names.
    trace.model_requested = request.model.clone();
    trace.stream = request.stream;
    trace.user = request.user.clone();
    trace.session_id = request.session_id.clone();
    trace.prompt_id = request.prompt_id.clone();
    trace.prompt_version = request.prompt_version.clone();
    trace.prompt_hash = request.prompt_hash.clone();
    trace.tags = request.tags.clone();
    trace.prompt_text = request.prompt_text.clone();
    applied?;
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
    /// Guardrails apply (not to a guardrail's own classifier call).
    guarded: bool,
}

/// An admitted request: input guardrails, then the cache, then the engines.
async fn admitted(
    gateway: &Arc<Gateway>,
    plan: Plan,
    mut request: ClientRequest,
    headers: &HeaderMap,
    mut guard: TraceGuard,
) -> Response {
    let directives = match Directives::parse(headers) {
        Ok(directives) => directives,
        Err(error) => return fail(guard, error),
    };
    if plan.guarded {
        let checked = super::guardrail::check_input(gateway, &plan.principal, plan.endpoint, &mut request, &mut guard);
        if let Err(error) = checked.await {
            return fail(guard, error);
        }
    }
    let route = request.model.clone();
    let mut hit = None;
    let result = match cache_path::decide(&gateway.cache, plan.endpoint, &request, &plan.targets, &directives) {
        Decision::Off => None,
        Decision::Bypass => {
            gateway.cache.note(&route, Outcome::Bypass);
            guard.trace_mut().cache = Some(cache_path::outcome("bypass", None));
            Some("bypass")
        }
        Decision::Use { key, ttl_ms, read, write } => match read.then(|| gateway.cache.get(&route, &key)).flatten() {
            Some(entry) => {
                hit = Some((key, entry));
                Some("hit")
            }
            None => {
                let result = if read { "miss" } else { "bypass" };
                gateway.cache.note(&route, if read { Outcome::Miss } else { Outcome::Bypass });
                guard.trace_mut().cache = Some(cache_path::outcome(result, Some(&key)));
                if write {
                    guard.fill_cache(Fill { cache: gateway.cache.clone(), route: route.clone(), key, ttl_ms });
                }
                Some(result)
            }
        },
    };
    let mut response = match hit {
        Some((key, entry)) => {
            cache_path::begin_hit(&mut guard, &gateway.cache, &route, &key, &entry);
            let original = cache_path::original_timing(gateway.cache.config(&route));
            let upstream = super::cached_answer::answer(plan.endpoint, &entry, request.stream, original);
            let deadline = Instant::now() + super::cached_answer::replay_time(&entry);
            let mut response = relay(gateway, &plan, &request, guard, upstream, deadline).await;
            if let Ok(value) = HeaderValue::from_str(&format!("{CACHE_ENGINE}/{}", entry.model)) {
                response.headers_mut().insert("x-llmops-served-by", value);
            }
            response
        }
        None => forward(gateway, plan, request, guard).await,
    };
    if let Some(result) = result {
        cache_path::mark(&mut response, result);
    }
    response
}

/// Tries the route's targets in order until one answers. A target is skipped while its circuit breaker is
/// open or its budget says `downgrade`; it is retried (jittered backoff, `resilience.retry`) and then left for
/// the next one when it cannot be reached, times out before answering, or answers 5xx or 429. An engine's own
/// refusal (other 4xx) is the answer. Nothing has reached the client before an engine answers, so falling back
/// is always safe here.
async fn forward(gateway: &Gateway, plan: Plan, mut request: ClientRequest, mut guard: TraceGuard) -> Response {
    let mut last_error = None;
    for (position, target) in plan.targets.iter().enumerate() {
        let (engine, model) = (target.engine.name(), target.model.as_str());
        let is_last = position + 1 == plan.targets.len();
        if let Some(reason) = overloaded(gateway, target).filter(|_| !is_last) {
            guard.skip(engine, model, format!("skipped: {reason}"));
            last_error = Some(GatewayError::EngineUnavailable(format!("engine {engine}: {reason}")));
            continue;
        }
        match gateway.admission.reserve(&plan.principal, &request.model, target, &plan.estimate) {
            Ok(reservation) => guard.serve_from(reservation, target.price),
            Err(NotAdmitted::Downgrade(denied)) => {
                guard.skip(engine, model, format!("skipped (budget downgrade): {}", denied.message));
                last_error = Some(admission::budget_exceeded(&denied, crate::clock::unix_ms()));
                continue;
            }
            Err(NotAdmitted::Reject(error)) => return fail(guard, error),
        }
        match try_target(gateway, &plan, target, &mut request, &mut guard).await {
            TargetOutcome::Answered(answered) => {
                return answer(gateway, &plan, &request, target, guard, answered).await;
            }
            TargetOutcome::Refused(error) => return fail(guard, error),
            TargetOutcome::Next(error) => last_error = error.or(last_error),
        }
        guard.release_reservation();
    }
    let error = last_error.unwrap_or_else(|| GatewayError::Upstream("the route has no targets".into()));
    fail(guard, error)
}

/// How one target's tries ended.
enum TargetOutcome {
    Answered(Answer),
    /// The engine refused the request itself: that is the answer, no fallback.
    Refused(GatewayError),
    /// Leave it for the next target, with the error to report if none is left.
    Next(Option<GatewayError>),
}

/// What a failed try says about the target, for its circuit breaker.
enum Verdict {
    /// 429: overloaded, not broken; wait as long as it asked, when it did.
    Overloaded(Option<Duration>),
    /// Unreachable, timed out or 5xx.
    Failure,
    /// It answered (a 4xx refusal is a working engine).
    Working,
}

fn verdict(error: &UpstreamError) -> Verdict {
    match error {
        UpstreamError::Status { status: 429, retry_after, .. } => Verdict::Overloaded(*retry_after),
        _ if error.should_fall_back() => Verdict::Failure,
        _ => Verdict::Working,
    }
}

/// Asks one target, retrying within `resilience.retry` while its breaker lets requests through.
async fn try_target(
    gateway: &Gateway,
    plan: &Plan,
    target: &Target,
    request: &mut ClientRequest,
    guard: &mut TraceGuard,
) -> TargetOutcome {
    let (engine, model) = (target.engine.name(), target.model.as_str());
    let mut rng = crate::resilience::jitter_rng();
    let first_try = Instant::now();
    let mut last_error = None;
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
                guard.skip(engine, model, message.clone());
                return TargetOutcome::Next(Some(GatewayError::EngineUnavailable(format!(
                    "engine {engine}: {message}"
                ))));
            }
        };
        let error = match attempt(plan.endpoint, target, request, guard).await {
            Ok(answered) => {
                permit.success(Instant::now());
                return TargetOutcome::Answered(answered);
            }
            Err(error) => error,
        };
        let verdict = verdict(&error);
        let fall_back = error.should_fall_back();
        let gateway_error = upstream_error(error);
        match verdict {
            Verdict::Overloaded(Some(wait)) => {
                target.breaker.block_until(Instant::now(), Instant::now() + wait);
                return TargetOutcome::Next(Some(gateway_error));
            }
            Verdict::Overloaded(None) => drop(permit),
            Verdict::Failure => permit.failure(Instant::now()),
            Verdict::Working => permit.success(Instant::now()),
        }
        if !fall_back {
            return TargetOutcome::Refused(gateway_error);
        }
        last_error = Some(gateway_error);
    }
    TargetOutcome::Next(last_error)
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

/// One call to one engine, recorded as an attempt on the trace. The request timeout counts from here.
async fn attempt(
    endpoint: Endpoint,
    target: &Target,
    request: &mut ClientRequest,
    guard: &mut TraceGuard,
) -> Result<Answer, UpstreamError> {
    guard.start_attempt(target.engine.name(), &target.model);
    let body = request.upstream_body(&target.model);
    match target.engine.post(endpoint, body).await {
        Ok(upstream) => {
            guard.attempt_status(upstream.status);
            Ok(upstream)
        }
        Err(error) => {
            if let UpstreamError::Status { status, .. } = &error {
                guard.attempt_status(*status);
            }
            guard.end_attempt(Some(upstream_error_message(&error)));
            Err(error)
        }
    }
}

/// Relays an engine's answer to the client, naming the target that served it.
async fn answer(
    gateway: &Gateway,
    plan: &Plan,
    request: &ClientRequest,
    target: &Target,
    guard: TraceGuard,
    upstream: Answer,
) -> Response {
    let deadline = Instant::now() + target.engine.request_timeout();
    let mut response = relay(gateway, plan, request, guard, upstream, deadline).await;
    if let Ok(value) = HeaderValue::from_str(&format!("{}/{}", target.engine.name(), target.model)) {
        response.headers_mut().insert("x-llmops-served-by", value);
    }
    response
}

/// An answer (an engine's or the cache's) to the client through the output guardrails: streamed or whole.
async fn relay(
    gateway: &Gateway,
    plan: &Plan,
    request: &ClientRequest,
    guard: TraceGuard,
    upstream: Answer,
    deadline: Instant,
) -> Response {
    let closing = gateway.closing.clone();
    let selected = if plan.guarded {
        gateway.guardrails.select(&request.model, &plan.principal.tenant, Stage::Output)
    } else {
        Vec::new()
    };
    if request.stream {
        let output = stream::StreamOutput {
            hold_back: HoldBack::new(gateway.guardrails.clone(), selected),
            capture: guard.wants_cache_answer(),
        };
        stream::respond(guard, upstream, request.wants_stream_usage, deadline, closing, output)
    } else {
        let output = WholeOutput { guardrails: &gateway.guardrails, selected };
        complete(plan.endpoint, guard, upstream, deadline, closing, output).await
    }
}

/// Output guardrails for a whole answer.
struct WholeOutput<'a> {
    guardrails: &'a Guardrails,
    selected: Vec<usize>,
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
    deadline: Instant,
    mut closing: Shutdown,
    output: WholeOutput<'_>,
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
    let (mut bytes, mut value) = match parsed {
        Ok(ok) => ok,
        Err(error) => {
            guard.end_attempt(Some(error.message()));
            return fail(guard, error);
        }
    };
    guard.end_attempt(None);
    let text = response_text(endpoint, &value);
    let usage = value.get("usage").filter(|u| u.is_object()).map(|usage| {
        let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
        (count("prompt_tokens"), count("completion_tokens"))
    });
    let summary = AnswerSummary {
        counted_output: estimate_tokens(&text),
        text,
        finish_reason: value.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or_default().into(),
        model: value.get("model").and_then(Value::as_str).map(str::to_string),
        usage,
        ..AnswerSummary::default()
    };
    guard.record_answer(summary);
    // Not seen token by token: the whole answer counts toward the last interval's energy share.
    let output_tokens = guard.trace_mut().output_tokens;
    guard.add_tokens(output_tokens);
    if !output.selected.is_empty() {
        match super::guardrail::check_output(output.guardrails, &output.selected, endpoint, &mut value, &mut guard) {
            Err(error) => return fail(guard, error),
            Ok(true) => bytes = Bytes::from(value.to_string()),
            Ok(false) => {}
        }
    }
    if guard.wants_cache_answer() {
        guard.cache_answer(CachedBody::Whole(bytes.clone()));
    }
    guard.finish(TraceStatus::Ok, 200);
    ([(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response()
}

/// The whole body of a non-streaming answer.
fn response_text(endpoint: Endpoint, value: &Value) -> String {
    match endpoint {
        Endpoint::ChatCompletions => {
            let message = value.pointer("/choices/0/message");
            let mut text =
                message.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or_default().to_string();
            super::tool_calls::ToolCalls::from_message(message).append_to(&mut text);
            return text;
        }
        Endpoint::Completions => value.pointer("/choices/0/text"),
        Endpoint::Embeddings => {
            let data = value.get("data").and_then(Value::as_array);
            let count = data.map_or(0, Vec::len);
            // A list of floats, or base64 of little-endian f32s (4 bytes, 4/3 longer in base64).
            let dims = match data.and_then(|d| d.first()).and_then(|e| e.get("embedding")) {
                Some(Value::Array(values)) => values.len(),
                Some(Value::String(base64)) => base64.trim_end_matches('=').len() * 3 / 4 / 4,
                _ => 0,
            };
            return format!("{count} embeddings of {dims} dimensions");
        }
    }
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_string()
}
