//! One target of a route, asked: retried within `resilience.retry` while its circuit breaker lets requests
//! through, each call an attempt on the trace; and whether it should be left for the next target before it
//! is asked (its queue or its GPUs' memory over the configured limit).
use super::error::GatewayError;
use super::proxy::{upstream_error, upstream_error_message, Plan};
use super::request::{ClientRequest, Endpoint};
use super::trace_guard::TraceGuard;
use super::Gateway;
use crate::engine::{Answer, UpstreamError};
use crate::resilience::OpenCause;
use crate::router::Target;
use std::time::{Duration, Instant};

/// How one target's tries ended.
pub(super) enum TargetOutcome {
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
pub(super) async fn try_target(
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
pub(super) fn overloaded(gateway: &Gateway, target: &Target) -> Option<String> {
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
