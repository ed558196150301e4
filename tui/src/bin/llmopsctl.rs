//! `llmopsctl`: query a running llmopsd over gRPC (status, engines and their logs, recorded traces, one trace,
//! live traces, GPU and host telemetry, request metrics, budgets, alerts), manage its API keys and acknowledge
//! alerts.
use std::io::{self, Write};
use std::process::ExitCode;

use chrono::Local;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use llmops_proto::v1::{
    GetEngineLogsRequest, GetRequestMetricsRequest, GetStatusRequest, GetTelemetryRequest, GetTraceRequest,
    WatchTelemetryRequest, WatchTracesRequest,
};
use llmops_tui::address::Target;
use llmops_tui::auth::BearerAuth;
use llmops_tui::connect::{Daemon, Unreachable};
use llmops_tui::names::event_kind_name;
use llmops_tui::{json, query, report, table, when};
use tonic::Code;

// Files of their own, outside src/bin/ itself where cargo would take them for other binaries.
#[path = "llmopsctl/admin.rs"]
mod admin;
#[path = "llmopsctl/alerts.rs"]
mod alerts;
#[path = "llmopsctl/cli.rs"]
mod cli;
#[path = "llmopsctl/replay.rs"]
mod replay;

use cli::{Cli, Command};

/// Why a command failed; each kind has its own message and exit status.
enum Failure {
    Unreachable(Unreachable),
    Rpc(Box<tonic::Status>),
    NoSuchTrace(String),
    /// No logs for that engine: llmopsd's message says whether it is unknown or not launched by llmopsd.
    NoEngineLogs(String),
    NoSuchKey(String),
    /// No alert has this id, or starts or ends with it.
    NoSuchAlert(String),
    /// More than one alert's id starts or ends with `id`.
    AmbiguousAlert {
        id: String,
        matches: Vec<String>,
    },
    /// llmopsd refused the request's arguments (INVALID_ARGUMENT, or FAILED_PRECONDITION for acknowledging a
    /// resolved alert): what was tried and llmopsd's reason.
    Refused(String),
    WatchEnded(Box<tonic::Status>),
    /// llmopsd dropped this viewer after it fell this many updates behind.
    TooSlow(u64),
    Output(io::Error),
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Output(err)
    }
}

impl Failure {
    /// An RPC that failed as UNAVAILABLE never reached the daemon, so it reads like a failed connect.
    fn from_rpc(target: &Target, status: tonic::Status) -> Self {
        if status.code() == Code::Unavailable {
            let cause = status.message().to_owned();
            Failure::Unreachable(Unreachable { target: target.to_string(), cause })
        } else {
            Failure::Rpc(Box::new(status))
        }
    }

    /// Prints the failure as one line on stderr and picks the exit status.
    fn report(self) -> ExitCode {
        let (message, exit_status) = match self {
            Failure::Unreachable(err) => (format!("{err} (is llmopsd running? use --connect)"), 2),
            Failure::Rpc(status) => {
                let hint = match status.code() {
                    Code::Unauthenticated | Code::PermissionDenied => " (check --token or LLMOPS_TOKEN)",
                    Code::Unimplemented => " (this llmopsd does not serve it: is it older than llmopsctl?)",
                    _ => "",
                };
                (format!("gRPC error {:?}: {}{hint}", status.code(), status.message()), 1)
            }
            Failure::NoSuchTrace(id) => (format!("no trace with id {id}"), 1),
            Failure::NoEngineLogs(message) | Failure::Refused(message) => (message, 1),
            Failure::NoSuchKey(id) => (format!("no API key with id {id} (see `llmopsctl keys list`)"), 1),
            Failure::NoSuchAlert(id) => (format!("no alert with id {id} (see `llmopsctl alerts --state all`)"), 1),
            Failure::AmbiguousAlert { id, matches } => {
                let mut shown = matches.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
                if matches.len() > 3 {
                    shown.push_str(", ...");
                }
                (format!("{} alerts match {id} ({shown}): give more of the id", matches.len()), 1)
            }
            Failure::WatchEnded(status) => {
                let code = status.code();
                (format!("watch stream ended by llmopsd ({code:?}): {}", status.message()), 1)
            }
            Failure::TooSlow(missed) => {
                (format!("watch stream ended by llmopsd: this viewer read too slowly and missed {missed} updates"), 1)
            }
            // Output closed early (`llmopsctl traces | head`) is the reader's choice, not a failure.
            Failure::Output(err) if err.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Failure::Output(err) => (format!("cannot write output: {err}"), 1),
        };
        eprintln!("llmopsctl: {message}");
        ExitCode::from(exit_status)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Usage problems exit like clap's own errors (status 2) before any connection is tried.
    let auth = match BearerAuth::new(cli.token.as_deref()) {
        Ok(auth) => auth,
        Err(err) => Cli::command().error(ErrorKind::InvalidValue, format!("--token: {err}")).exit(),
    };
    if let Command::Traces(args) = &cli.command {
        if let Some(message) = args.window_error() {
            Cli::command().error(ErrorKind::ArgumentConflict, message).exit();
        }
    }
    let target = cli.connect.clone().unwrap_or_else(Target::default_socket);
    match run(&cli, &target, auth).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn run(cli: &Cli, target: &Target, auth: BearerAuth) -> Result<(), Failure> {
    let daemon = Daemon::connect(target, auth).await.map_err(Failure::Unreachable)?;
    let rpc_failure = |status| Failure::from_rpc(target, status);
    // Prompts, answers and logs come from clients and engines: their control characters are shown, not obeyed.
    let mut out = llmops_tui::safe_output::SafeOutput::new(io::stdout().lock());
    match &cli.command {
        Command::Status => {
            let response = daemon.status().get_status(GetStatusRequest {}).await;
            let status = response.map_err(rpc_failure)?.into_inner();
            if cli.json {
                print_json(&mut out, &json::status_to_json(&status))?;
            } else {
                write!(out, "{}", report::render_status(&status, &Local))?;
            }
        }
        Command::Engines => {
            let response = daemon.status().get_status(GetStatusRequest {}).await;
            let status = response.map_err(rpc_failure)?.into_inner();
            if cli.json {
                print_json(&mut out, &json::engines_to_json(&status.engines))?;
            } else {
                write!(out, "{}", report::render_engines(&status.engines))?;
            }
        }
        Command::Logs { engine, lines } => {
            let request = GetEngineLogsRequest { engine: engine.clone(), lines: lines.unwrap_or(0) };
            let logs = match daemon.status().get_engine_logs(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => {
                    return Err(Failure::NoEngineLogs(status.message().to_owned()));
                }
                Err(status) => return Err(rpc_failure(status)),
            };
            if cli.json {
                print_json(&mut out, &json::engine_logs_to_json(&logs))?;
            } else {
                for line in &logs.lines {
                    writeln!(out, "{line}")?;
                }
            }
        }
        Command::Traces(args) => {
            // JSON is for scripts, which get whole traces; the table never shows bodies.
            let filter = args.filter(when::now_unix_ms(), cli.json);
            let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
            let traces = query::list_traces(&mut daemon.traces(), &filter, limit).await;
            let traces = traces.map_err(rpc_failure)?;
            if cli.json {
                let array = traces.iter().map(json::trace_to_json).collect();
                print_json(&mut out, &serde_json::Value::Array(array))?;
            } else {
                write!(out, "{}", table::traces_table(&traces, &Local::now()))?;
            }
        }
        Command::Trace { id } => {
            let trace = match daemon.traces().get_trace(GetTraceRequest { id: id.clone() }).await {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::NotFound => return Err(Failure::NoSuchTrace(id.clone())),
                Err(status) => return Err(rpc_failure(status)),
            };
            if cli.json {
                print_json(&mut out, &json::trace_to_json(&trace))?;
            } else {
                write!(out, "{}", report::render_trace(&trace, &Local))?;
            }
        }
        Command::Watch => {
            let request = WatchTracesRequest { include_bodies: cli.json, ..WatchTracesRequest::default() };
            let response = daemon.traces().watch_traces(request).await;
            let mut events = response.map_err(rpc_failure)?.into_inner();
            if !cli.json {
                writeln!(out, "{}", table::stream_header())?;
            }
            // stdout is line-buffered, so each event shows as soon as it arrives.
            loop {
                let event = match events.message().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(status) => return Err(Failure::WatchEnded(Box::new(status))),
                };
                if cli.json {
                    serde_json::to_writer(&mut out, &json::event_to_json(&event)).map_err(io::Error::from)?;
                    writeln!(out)?;
                } else if let Some(trace) = &event.trace {
                    let kind = event_kind_name(event.kind).to_uppercase();
                    writeln!(out, "{}", table::stream_line(&kind, trace, &Local::now()))?;
                }
            }
        }
        Command::Gpus { watch: false } => {
            let response = daemon.telemetry().get_telemetry(GetTelemetryRequest {}).await;
            let sample = response.map_err(rpc_failure)?.into_inner();
            if cli.json {
                print_json(&mut out, &json::telemetry_to_json(&sample))?;
            } else {
                write!(out, "{}", report::render_gpus(&sample, &Local))?;
            }
        }
        Command::Gpus { watch: true } => {
            let response = daemon.telemetry().watch_telemetry(WatchTelemetryRequest {}).await;
            let mut updates = response.map_err(rpc_failure)?.into_inner();
            if !cli.json {
                writeln!(out, "{}", report::gpu_watch_header())?;
            }
            loop {
                let update = match updates.message().await {
                    Ok(Some(update)) => update,
                    Ok(None) => break,
                    Err(status) => return Err(Failure::WatchEnded(Box::new(status))),
                };
                if cli.json {
                    serde_json::to_writer(&mut out, &json::telemetry_update_to_json(&update))
                        .map_err(io::Error::from)?;
                    writeln!(out)?;
                } else {
                    for line in report::gpu_watch_lines(&update, &Local::now()) {
                        writeln!(out, "{line}")?;
                    }
                }
                // The daemon ends the stream after telling a slow viewer what it missed.
                if update.missed > 0 {
                    out.flush()?;
                    return Err(Failure::TooSlow(update.missed));
                }
            }
        }
        Command::Metrics => {
            let response = daemon.telemetry().get_request_metrics(GetRequestMetricsRequest {}).await;
            let metrics = response.map_err(rpc_failure)?.into_inner();
            if cli.json {
                print_json(&mut out, &json::request_metrics_to_json(&metrics))?;
            } else {
                write!(out, "{}", report::render_request_metrics(&metrics, &Local))?;
            }
        }
        Command::Keys { command } => admin::keys(&daemon, command, cli.json, &mut out, rpc_failure).await?,
        Command::Budgets { watch } => admin::budgets(&daemon, *watch, cli.json, &mut out, rpc_failure).await?,
        Command::Alerts(args) => alerts::alerts(&daemon, args, cli.json, &mut out, rpc_failure).await?,
        Command::Alert { id } => alerts::show(&daemon, id, cli.json, &mut out, rpc_failure).await?,
        Command::Replay { id, route, set } => {
            replay::replay(&daemon, replay::Args { id, route: route.as_deref(), set }, cli.json, &mut out, rpc_failure)
                .await?
        }
    }
    out.flush()?;
    Ok(())
}

fn print_json(out: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}
