//! Daemon types to their `llmops.v1` messages.
use crate::trace::{Attempt, EventKind, Trace, TraceQuery, TraceStatus};
use llmops_proto::v1 as pb;

pub fn status_to_proto(status: TraceStatus) -> pb::TraceStatus {
    match status {
        TraceStatus::InFlight => pb::TraceStatus::InFlight,
        TraceStatus::Ok => pb::TraceStatus::Ok,
        TraceStatus::Rejected => pb::TraceStatus::Rejected,
        TraceStatus::Error => pb::TraceStatus::Error,
        TraceStatus::Cancelled => pb::TraceStatus::Cancelled,
    }
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// A `ListTracesRequest` as a store query (`limit` 0: `default_page`).
pub fn query_from_proto(r: pb::ListTracesRequest, default_page: usize) -> Result<TraceQuery, tonic::Status> {
    let status = pb::TraceStatus::try_from(r.status)
        .map_err(|_| tonic::Status::invalid_argument(format!("unknown status value {}", r.status)))?;
    Ok(TraceQuery {
        since_ms: Some(r.since_unix_ms).filter(|v| *v > 0),
        until_ms: Some(r.until_unix_ms).filter(|v| *v > 0),
        route: non_empty(r.route),
        model: non_empty(r.model),
        status: status_from_proto(status),
        search: non_empty(r.search),
        min_latency_ms: Some(r.min_latency_ms).filter(|v| *v > 0.0),
        limit: if r.limit == 0 { default_page } else { r.limit as usize },
        page_token: non_empty(r.page_token),
    })
}

pub fn status_from_proto(status: pb::TraceStatus) -> Option<TraceStatus> {
    match status {
        pb::TraceStatus::Unspecified => None,
        pb::TraceStatus::InFlight => Some(TraceStatus::InFlight),
        pb::TraceStatus::Ok => Some(TraceStatus::Ok),
        pb::TraceStatus::Rejected => Some(TraceStatus::Rejected),
        pb::TraceStatus::Error => Some(TraceStatus::Error),
        pb::TraceStatus::Cancelled => Some(TraceStatus::Cancelled),
    }
}

pub fn event_kind_to_proto(kind: EventKind) -> pb::trace_event::Kind {
    match kind {
        EventKind::Started => pb::trace_event::Kind::Started,
        EventKind::Finished => pb::trace_event::Kind::Finished,
    }
}

fn attempt_to_proto(attempt: &Attempt) -> pb::Attempt {
    pb::Attempt {
        engine: attempt.engine.clone(),
        model: attempt.model.clone(),
        start_offset_ms: attempt.start_offset_ms,
        latency_ms: attempt.latency_ms,
        ttft_ms: attempt.ttft_ms,
        upstream_status: u32::from(attempt.upstream_status),
        error: attempt.error.clone(),
    }
}

/// `include_bodies: false` leaves out prompt, response, request JSON and chunk offsets (list pages stay small).
pub fn trace_to_proto(t: &Trace, include_bodies: bool) -> pb::Trace {
    let body = |text: &String| if include_bodies { text.clone() } else { String::new() };
    pb::Trace {
        id: t.id.clone(),
        started_at_unix_ms: t.started_at_unix_ms,
        ended_at_unix_ms: t.ended_at_unix_ms,
        endpoint: t.endpoint.clone(),
        route: t.route.clone(),
        model_requested: t.model_requested.clone(),
        model_served: t.model_served.clone(),
        engine: t.engine.clone(),
        tenant: t.tenant.clone(),
        user: t.user.clone(),
        session_id: t.session_id.clone(),
        prompt_id: t.prompt_id.clone(),
        prompt_version: t.prompt_version.clone(),
        tags: t.tags.clone().into_iter().collect(),
        status: status_to_proto(t.status) as i32,
        http_status: u32::from(t.http_status),
        error_type: t.error_type.clone(),
        error_message: t.error_message.clone(),
        stream: t.stream,
        finish_reason: t.finish_reason.clone(),
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        tokens_estimated: t.tokens_estimated,
        ttft_ms: t.ttft_ms,
        latency_ms: t.latency_ms,
        prompt_text: body(&t.prompt_text),
        response_text: body(&t.response_text),
        request_json: body(&t.request_json),
        prompt_sha256: t.prompt_sha256.clone(),
        prompt_chars: t.prompt_chars,
        response_sha256: t.response_sha256.clone(),
        response_chars: t.response_chars,
        attempts: t.attempts.iter().map(attempt_to_proto).collect(),
        chunk_offsets_ms: if include_bodies { t.chunk_offsets_ms.clone() } else { Vec::new() },
        chunk_chars: if include_bodies { t.chunk_chars.clone() } else { Vec::new() },
        replay_of: t.replay_of.clone(),
        // GetTrace adds them from the store; lists and live events leave them out.
        scores: Vec::new(),
        prompt_hash: t.prompt_hash.clone(),
        cost_usd: t.cost_usd,
        energy_joules: t.energy_joules,
        guardrails: t
            .guardrails
            .iter()
            .map(|v| pb::GuardrailVerdict {
                rule: v.rule.clone(),
                action: v.action.clone(),
                stage: v.stage.clone(),
                kind: v.kind.clone(),
                matches: v.matches,
                detail: v.detail.clone(),
            })
            .collect(),
        cache: t.cache.as_ref().map(|c| pb::CacheOutcome {
            result: c.result.clone(),
            stored: c.stored,
            source_trace_id: c.source_trace_id.clone(),
            saved_input_tokens: c.saved_input_tokens,
            saved_output_tokens: c.saved_output_tokens,
            saved_usd: c.saved_usd,
            key: c.key.clone(),
        }),
    }
}
