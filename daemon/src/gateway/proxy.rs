//! The path of one generation or embedding request: read it, route it, call the engine, answer, and leave a
//! trace whatever happens.
use super::admission::{self, Estimate, NotAdmitted};
use super::cache_path::{self, Decision, Directives, Fill, CACHE_ENGINE};
use super::error::GatewayError;
use super::holdback::HoldBack;
use super::request::{ClientRequest, Endpoint};
use super::stream;
use super::targets::{overloaded, try_target, TargetOutcome};
use super::trace_guard::{HandBack, TraceGuard};
use super::whole::WholeOutput;
use super::Gateway;
use crate::auth::Principal;
use crate::cache::Outcome;
use crate::engine::{Answer, UpstreamError};
use crate::guardrails::Stage;
use crate::router::Target;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
pub(super) struct Plan {
    pub(super) endpoint: Endpoint,
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
    // The hold-back buffer follows one choice: more would pass the others unchecked.
    let choices = request.body.get("n").and_then(serde_json::Value::as_u64).unwrap_or(1);
    if plan.guarded && request.stream && choices > 1 {
        let output_rules = gateway.guardrails.select(&route, &plan.principal.tenant, Stage::Output);
        if !output_rules.is_empty() {
            let message = "this route's output guardrails check streams of one choice: ask for n = 1, or do not stream";
            return fail(guard, GatewayError::invalid_param("n", message));
        }
    }
    let mut hit = None;
    let decision =
        cache_path::decide(&gateway.cache, plan.endpoint, &request, &plan.principal.tenant, &plan.targets, &directives);
    let result = match decision {
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
        super::whole::complete(plan.endpoint, guard, upstream, deadline, closing, output).await
    }
}

pub(super) fn upstream_error_message(error: &UpstreamError) -> String {
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

pub(super) fn fail(guard: TraceGuard, error: GatewayError) -> Response {
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
