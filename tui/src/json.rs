//! `--json` output. Scripts and the end-to-end tests read these shapes, so keys are exactly the proto
//! field names, enums are short lowercase names, absent optional fields are `null` and integers stay numbers.
use llmops_proto::v1::{
    Attempt, EngineLogs, EngineProcess, EngineStatus, RouteStatus, Status, StoreStatus, Trace, TraceEvent,
};
use serde_json::{json, Value};

use crate::names::{engine_health_name, event_kind_name, trace_status_name};

// `gpus` and `metrics` (json/telemetry.rs), `keys` and `budgets` (json/admin.rs), `alerts` (json/alerts.rs),
// kept apart so this file stays readable.
mod admin;
mod alerts;
mod scores;
mod telemetry;

pub use admin::{
    api_key_to_json, budget_to_json, budget_update_to_json, budgets_to_json, created_key_to_json, keys_to_json,
};
pub use alerts::{alert_event_to_json, alert_to_json, alerts_to_json};
pub use scores::{score_rate_to_json, score_to_json};
pub use telemetry::{request_metrics_to_json, telemetry_to_json, telemetry_update_to_json};

pub fn trace_to_json(trace: &Trace) -> Value {
    let mut value = json!({
        "id": trace.id,
        "started_at_unix_ms": trace.started_at_unix_ms,
        "ended_at_unix_ms": trace.ended_at_unix_ms,
        "endpoint": trace.endpoint,
        "route": trace.route,
        "model_requested": trace.model_requested,
        "model_served": trace.model_served,
        "engine": trace.engine,
        "tenant": trace.tenant,
        "user": trace.user,
        "session_id": trace.session_id,
        "prompt_id": trace.prompt_id,
        "prompt_version": trace.prompt_version,
        "tags": trace.tags,
        "status": trace_status_name(trace.status),
        "http_status": trace.http_status,
        "error_type": trace.error_type,
        "error_message": trace.error_message,
        "stream": trace.stream,
        "finish_reason": trace.finish_reason,
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "tokens_estimated": trace.tokens_estimated,
        "ttft_ms": trace.ttft_ms,
        "latency_ms": trace.latency_ms,
        "prompt_text": trace.prompt_text,
        "response_text": trace.response_text,
        "request_json": trace.request_json,
        "prompt_sha256": trace.prompt_sha256,
        "prompt_chars": trace.prompt_chars,
        "response_sha256": trace.response_sha256,
        "response_chars": trace.response_chars,
        "attempts": trace.attempts.iter().map(attempt_to_json).collect::<Vec<_>>(),
        "chunk_offsets_ms": trace.chunk_offsets_ms,
        "chunk_chars": trace.chunk_chars,
        "cost_usd": trace.cost_usd,
        "energy_joules": trace.energy_joules,
        "replay_of": trace.replay_of,
        "scores": trace.scores.iter().map(score_to_json).collect::<Vec<_>>(),
        "prompt_hash": trace.prompt_hash,
    });
    // Apart from the rest: one json! with every field is past the macro's recursion limit.
    value["guardrails"] = Value::Array(trace.guardrails.iter().map(guardrail_to_json).collect());
    value["cache"] = trace.cache.as_ref().map_or(Value::Null, cache_outcome_to_json);
    value
}

fn guardrail_to_json(verdict: &llmops_proto::v1::GuardrailVerdict) -> Value {
    json!({
        "rule": verdict.rule, "action": verdict.action, "stage": verdict.stage, "kind": verdict.kind,
        "matches": verdict.matches, "detail": verdict.detail,
    })
}

fn cache_outcome_to_json(cache: &llmops_proto::v1::CacheOutcome) -> Value {
    json!({
        "result": cache.result, "stored": cache.stored, "source_trace_id": cache.source_trace_id,
        "saved_input_tokens": cache.saved_input_tokens, "saved_output_tokens": cache.saved_output_tokens,
        "saved_usd": cache.saved_usd, "key": cache.key,
    })
}

/// `replay --json`: the re-run as recorded and how it compares with the original.
pub fn replay_to_json(done: &llmops_proto::v1::ReplayDone) -> Value {
    let comparison = done.comparison.as_ref().map(|c| {
        json!({
            "original_id": c.original_id,
            "replay_id": c.replay_id,
            "same_route": c.same_route,
            "text_identical": c.text_identical,
            "text_similarity": c.text_similarity,
            "input_tokens_delta": c.input_tokens_delta,
            "output_tokens_delta": c.output_tokens_delta,
            "latency_delta_ms": c.latency_delta_ms,
            "ttft_delta_ms": c.ttft_delta_ms,
            "cost_delta_usd": c.cost_delta_usd,
        })
    });
    json!({"replay": done.replay.as_ref().map(trace_to_json), "comparison": comparison})
}

pub fn attempt_to_json(attempt: &Attempt) -> Value {
    json!({
        "engine": attempt.engine,
        "model": attempt.model,
        "start_offset_ms": attempt.start_offset_ms,
        "latency_ms": attempt.latency_ms,
        "ttft_ms": attempt.ttft_ms,
        "upstream_status": attempt.upstream_status,
        "error": attempt.error,
    })
}

/// One `watch --json` line: `{"kind": "started"|"finished", "trace": {...}}`; the last line for a viewer
/// llmopsd dropped adds `"missed": n` (kind "unspecified", trace null).
pub fn event_to_json(event: &TraceEvent) -> Value {
    let mut value = json!({
        "kind": event_kind_name(event.kind),
        "trace": event.trace.as_ref().map(trace_to_json),
    });
    // Only when set: every other line keeps the shape it always had.
    if event.missed > 0 {
        value["missed"] = event.missed.into();
    }
    value
}

pub fn status_to_json(status: &Status) -> Value {
    json!({
        "version": status.version,
        "started_at_unix_ms": status.started_at_unix_ms,
        "uptime_seconds": status.uptime_seconds,
        "http_listen": status.http_listen,
        "grpc_listen": status.grpc_listen,
        "privacy_mode": status.privacy_mode,
        "engines": engines_to_json(&status.engines),
        "routes": status.routes.iter().map(route_to_json).collect::<Vec<_>>(),
        "store": status.store.as_ref().map(store_to_json),
        "otlp_export": status.otlp_export.as_ref().map(otlp_to_json),
        "requests_in_flight": status.requests_in_flight,
        "engine_build": status.engine_build.as_ref().map(|b| json!({
            "target_cpu": b.target_cpu,
            "built_with": b.built_with,
            "in_use": b.in_use,
            "host": b.host,
            "missing_on_host": b.missing_on_host,
            "unused_on_host": b.unused_on_host,
        })),
    })
}

/// `engines --json`: the same objects as `status --json`'s `engines`.
pub fn engines_to_json(engines: &[EngineStatus]) -> Value {
    Value::Array(engines.iter().map(engine_to_json).collect())
}

/// `logs --json`: `process` without `log_tail`, which would repeat `lines`.
pub fn engine_logs_to_json(logs: &EngineLogs) -> Value {
    json!({
        "engine": logs.engine,
        "lines": logs.lines,
        "process": logs.process.as_ref().map(process_state_to_json),
    })
}

fn engine_to_json(engine: &EngineStatus) -> Value {
    json!({
        "name": engine.name,
        "kind": engine.kind,
        "base_url": engine.base_url,
        "models": engine.models,
        "health": engine_health_name(engine.health),
        "last_error": engine.last_error,
        "last_checked_unix_ms": engine.last_checked_unix_ms,
        "running": engine.running,
        "waiting": engine.waiting,
        "kv_cache_used_fraction": engine.kv_cache_used_fraction,
        "prefix_cache_hit_rate": engine.prefix_cache_hit_rate,
        "prefix_cache_queried_tokens": engine.prefix_cache_queried_tokens,
        "prefix_cache_hit_tokens": engine.prefix_cache_hit_tokens,
        "process": engine.process.as_ref().map(|process| {
            let mut value = process_state_to_json(process);
            value["log_tail"] = json!(process.log_tail);
            value
        }),
    })
}

fn process_state_to_json(process: &EngineProcess) -> Value {
    json!({
        "state": process.state,
        "restarts": process.restarts,
        "pid": process.pid,
        "last_exit": process.last_exit,
    })
}

fn route_to_json(route: &RouteStatus) -> Value {
    json!({ "name": route.name, "targets": route.targets })
}

fn store_to_json(store: &StoreStatus) -> Value {
    json!({
        "path": store.path,
        "size_bytes": store.size_bytes,
        "trace_count": store.trace_count,
        "queue_depth": store.queue_depth,
        "queue_capacity": store.queue_capacity,
        "written": store.written,
        "dropped": store.dropped,
        "write_errors": store.write_errors,
        "retention_deleted": store.retention_deleted,
    })
}

fn otlp_to_json(otlp: &llmops_proto::v1::OtlpExportStatus) -> Value {
    json!({
        "endpoint": otlp.endpoint,
        "protocol": otlp.protocol,
        "profile": otlp.profile,
        "state": otlp.state,
        "pending": otlp.pending,
        "capacity": otlp.capacity,
        "exported": otlp.exported,
        "exported_scores": otlp.exported_scores,
        "dropped": otlp.dropped,
        "rejected": otlp.rejected,
        "failures": otlp.failures,
        "last_error": otlp.last_error,
        "last_success_unix_ms": otlp.last_success_unix_ms,
        "retry_in_ms": otlp.retry_in_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmops_proto::v1::trace_event::Kind;
    use llmops_proto::v1::{EngineHealth, EngineProcess, TraceStatus};

    fn sample_trace() -> Trace {
        Trace {
            id: "0190b5a8-7c1e-7d3a-9f00-000000000001".into(),
            started_at_unix_ms: 1_717_000_000_000,
            ended_at_unix_ms: 1_717_000_000_850,
            endpoint: "chat.completions".into(),
            route: "small".into(),
            model_requested: "small".into(),
            model_served: "qwen2.5:0.5b".into(),
            engine: "ollama".into(),
            tags: [("team".to_owned(), "search".to_owned())].into(),
            status: TraceStatus::Ok as i32,
            http_status: 200,
            stream: true,
            finish_reason: "stop".into(),
            input_tokens: 12,
            output_tokens: 34,
            tokens_estimated: true,
            ttft_ms: Some(120.5),
            latency_ms: 850.0,
            prompt_text: "user: hi".into(),
            response_text: "hello".into(),
            prompt_chars: 8,
            response_chars: 5,
            attempts: vec![Attempt {
                engine: "ollama".into(),
                model: "qwen2.5:0.5b".into(),
                start_offset_ms: 1.5,
                latency_ms: 848.0,
                ttft_ms: None,
                upstream_status: 200,
                error: String::new(),
            }],
            chunk_offsets_ms: vec![120.5, 300.0],
            cost_usd: None,
            energy_joules: Some(2.5),
            ..Trace::default()
        }
    }

    #[test]
    fn trace_converts_with_proto_names_and_nulls() {
        let value = trace_to_json(&sample_trace());
        assert_eq!(value["id"], "0190b5a8-7c1e-7d3a-9f00-000000000001");
        assert_eq!(value["started_at_unix_ms"], 1_717_000_000_000_i64);
        assert_eq!(value["status"], "ok");
        assert_eq!(value["http_status"], 200);
        assert_eq!(value["tags"], json!({"team": "search"}));
        assert_eq!(value["input_tokens"], 12);
        assert!(value["input_tokens"].is_u64(), "token counts are integers");
        assert_eq!(value["tokens_estimated"], true);
        assert_eq!(value["ttft_ms"], 120.5);
        assert_eq!(value["cost_usd"], Value::Null);
        assert_eq!(value["energy_joules"], 2.5);
        assert_eq!(value["tenant"], "");
        assert_eq!(value["chunk_offsets_ms"], json!([120.5, 300.0]));
        assert_eq!(
            value["attempts"],
            json!([{
                "engine": "ollama", "model": "qwen2.5:0.5b", "start_offset_ms": 1.5, "latency_ms": 848.0,
                "ttft_ms": null, "upstream_status": 200, "error": "",
            }])
        );
    }

    #[test]
    fn trace_has_every_proto_field_and_nothing_else() {
        let value = trace_to_json(&Trace::default());
        let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "id",
            "started_at_unix_ms",
            "ended_at_unix_ms",
            "endpoint",
            "route",
            "model_requested",
            "model_served",
            "engine",
            "tenant",
            "user",
            "session_id",
            "prompt_id",
            "prompt_version",
            "tags",
            "status",
            "http_status",
            "error_type",
            "error_message",
            "stream",
            "finish_reason",
            "input_tokens",
            "output_tokens",
            "tokens_estimated",
            "ttft_ms",
            "latency_ms",
            "prompt_text",
            "response_text",
            "request_json",
            "prompt_sha256",
            "prompt_chars",
            "response_sha256",
            "response_chars",
            "attempts",
            "chunk_offsets_ms",
            "chunk_chars",
            "cost_usd",
            "energy_joules",
            "replay_of",
            "prompt_hash",
            "scores",
            "guardrails",
            "cache",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["status"], "unspecified");
        assert_eq!(value["ttft_ms"], Value::Null);
    }

    #[test]
    fn event_has_kind_and_trace() {
        let event = TraceEvent { kind: Kind::Started as i32, trace: Some(sample_trace()), missed: 0 };
        let value = event_to_json(&event);
        assert_eq!(value["kind"], "started");
        assert_eq!(value["trace"]["route"], "small");
        let empty = event_to_json(&TraceEvent { kind: Kind::Finished as i32, trace: None, missed: 0 });
        assert_eq!(empty, json!({"kind": "finished", "trace": null}));
        let dropped = event_to_json(&TraceEvent { missed: 7, ..TraceEvent::default() });
        assert_eq!(dropped, json!({"kind": "unspecified", "trace": null, "missed": 7}));
    }

    #[test]
    fn status_nests_engines_routes_and_store() {
        let status = Status {
            version: "0.1.0".into(),
            uptime_seconds: 12.5,
            privacy_mode: true,
            engines: vec![EngineStatus {
                name: "ollama".into(),
                kind: "openai".into(),
                base_url: "http://127.0.0.1:11434/v1".into(),
                models: vec!["qwen2.5:0.5b".into()],
                health: EngineHealth::Unhealthy as i32,
                last_error: "connection refused".into(),
                last_checked_unix_ms: 5,
                running: Some(2),
                waiting: None,
                kv_cache_used_fraction: None,
                prefix_cache_hit_rate: Some(0.25),
                prefix_cache_queried_tokens: Some(4_000_000_000_000),
                prefix_cache_hit_tokens: None,
                process: Some(EngineProcess { state: "restarting".into(), restarts: 3, ..EngineProcess::default() }),
            }],
            routes: vec![RouteStatus { name: "small".into(), targets: vec!["ollama/qwen2.5:0.5b".into()] }],
            store: Some(StoreStatus { trace_count: 3, dropped: 1, ..StoreStatus::default() }),
            requests_in_flight: 2,
            ..Status::default()
        };
        let value = status_to_json(&status);
        assert_eq!(value["version"], "0.1.0");
        assert_eq!(value["privacy_mode"], true);
        assert_eq!(value["engines"][0]["health"], "unhealthy");
        assert_eq!(value["engines"][0]["running"], 2);
        assert!(value["engines"][0]["waiting"].is_null(), "absent load figures are null, not 0");
        assert_eq!(value["engines"][0]["prefix_cache_hit_rate"], 0.25);
        assert_eq!(value["engines"][0]["prefix_cache_queried_tokens"], 4_000_000_000_000_u64);
        assert!(value["engines"][0]["prefix_cache_queried_tokens"].is_u64(), "token counts are integers");
        assert!(value["engines"][0]["prefix_cache_hit_tokens"].is_null(), "absent, not 0");
        assert_eq!(value["engines"][0]["process"]["restarts"], 3);
        assert_eq!(value["engines"][0]["models"], json!(["qwen2.5:0.5b"]));
        assert_eq!(value["routes"], json!([{"name": "small", "targets": ["ollama/qwen2.5:0.5b"]}]));
        assert_eq!(value["store"]["trace_count"], 3);
        assert_eq!(value["store"]["dropped"], 1);
        assert_eq!(value["requests_in_flight"], 2);
        assert_eq!(status_to_json(&Status::default())["store"], Value::Null);
        assert_eq!(engines_to_json(&status.engines), value["engines"]);
        assert_eq!(
            value["engines"][0]["process"],
            json!({"state": "restarting", "restarts": 3, "pid": 0, "last_exit": "", "log_tail": []})
        );
    }

    #[test]
    fn engine_logs_have_lines_and_the_process_without_its_tail() {
        let logs = EngineLogs {
            engine: "vllm".into(),
            lines: vec!["loading".into(), "listening".into()],
            process: Some(EngineProcess {
                state: "healthy".into(),
                restarts: 0,
                pid: 7,
                last_exit: String::new(),
                log_tail: Vec::new(),
            }),
        };
        assert_eq!(
            engine_logs_to_json(&logs),
            json!({
                "engine": "vllm",
                "lines": ["loading", "listening"],
                "process": {"state": "healthy", "restarts": 0, "pid": 7, "last_exit": ""},
            })
        );
        let bare = EngineLogs { engine: "x".into(), ..EngineLogs::default() };
        assert_eq!(engine_logs_to_json(&bare)["process"], Value::Null);
    }
}
