//! The read-only commands: `status`, `engines`, `logs`, `traces`, `trace`, `watch`, `gpus [--watch]` and
//! `metrics`.
use std::io::Write;

use chrono::Local;
use llmops_proto::v1::{
    GetEngineLogsRequest, GetRequestMetricsRequest, GetStatusRequest, GetTelemetryRequest, GetTraceRequest,
    Status as DaemonStatus, WatchTelemetryRequest, WatchTracesRequest,
};
use llmops_tui::connect::Daemon;
use llmops_tui::names::event_kind_name;
use llmops_tui::{json, query, report, table, when};
use tonic::Code;

use super::cli::TracesArgs;
use super::output::{show, watch};
use super::Failure;

async fn get_status(daemon: &Daemon, rpc_failure: impl Fn(tonic::Status) -> Failure) -> Result<DaemonStatus, Failure> {
    let response = daemon.status().get_status(GetStatusRequest {}).await;
    Ok(response.map_err(rpc_failure)?.into_inner())
}

pub async fn status(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let status = get_status(daemon, rpc_failure).await?;
    Ok(show(out, as_json, || json::status_to_json(&status), || report::render_status(&status, &Local))?)
}

pub async fn engines(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let engines = get_status(daemon, rpc_failure).await?.engines;
    Ok(show(out, as_json, || json::engines_to_json(&engines), || report::render_engines(&engines))?)
}

pub async fn logs(
    daemon: &Daemon,
    engine: &str,
    lines: Option<u32>,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let request = GetEngineLogsRequest { engine: engine.to_owned(), lines: lines.unwrap_or(0) };
    let logs = match daemon.status().get_engine_logs(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => {
            return Err(Failure::NoEngineLogs(status.message().to_owned()));
        }
        Err(status) => return Err(rpc_failure(status)),
    };
    let text = || logs.lines.iter().map(|line| format!("{line}\n")).collect();
    Ok(show(out, as_json, || json::engine_logs_to_json(&logs), text)?)
}

pub async fn traces(
    daemon: &Daemon,
    args: &TracesArgs,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    // JSON is for scripts, which get whole traces; the table never shows bodies.
    let filter = args.filter(when::now_unix_ms(), as_json);
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let traces = query::list_traces(&mut daemon.traces(), &filter, limit).await.map_err(rpc_failure)?;
    let to_json = || serde_json::Value::Array(traces.iter().map(json::trace_to_json).collect());
    Ok(show(out, as_json, to_json, || table::traces_table(&traces, &Local::now()))?)
}

pub async fn trace(
    daemon: &Daemon,
    id: &str,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let trace = match daemon.traces().get_trace(GetTraceRequest { id: id.to_owned() }).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => return Err(Failure::NoSuchTrace(id.to_owned())),
        Err(status) => return Err(rpc_failure(status)),
    };
    Ok(show(out, as_json, || json::trace_to_json(&trace), || report::render_trace(&trace, &Local))?)
}

/// `llmopsctl watch`: traces as they start and finish.
pub async fn watch_traces(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let request = WatchTracesRequest { include_bodies: as_json, ..WatchTracesRequest::default() };
    let mut events = daemon.traces().watch_traces(request).await.map_err(rpc_failure)?.into_inner();
    watch(out, as_json, &mut events, &table::stream_header(), |event| {
        let kind = event_kind_name(event.kind).to_uppercase();
        event.trace.iter().map(|trace| table::stream_line(&kind, trace, &Local::now())).collect()
    })
    .await
}

pub async fn gpus(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let response = daemon.telemetry().get_telemetry(GetTelemetryRequest {}).await;
    let sample = response.map_err(rpc_failure)?.into_inner();
    Ok(show(out, as_json, || json::telemetry_to_json(&sample), || report::render_gpus(&sample, &Local))?)
}

/// `llmopsctl gpus --watch`: one line per GPU per sample.
pub async fn watch_gpus(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let response = daemon.telemetry().watch_telemetry(WatchTelemetryRequest {}).await;
    let mut updates = response.map_err(rpc_failure)?.into_inner();
    let to_lines = |update: &_| report::gpu_watch_lines(update, &Local::now());
    watch(out, as_json, &mut updates, &report::gpu_watch_header(), to_lines).await
}

pub async fn metrics(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let response = daemon.telemetry().get_request_metrics(GetRequestMetricsRequest {}).await;
    let metrics = response.map_err(rpc_failure)?.into_inner();
    let text = || report::render_request_metrics(&metrics, &Local);
    Ok(show(out, as_json, || json::request_metrics_to_json(&metrics), text)?)
}
