//! `llmopsctl`: query a running llmopsd over gRPC (status, engines and their logs, recorded traces, one trace,
//! live traces, GPU and host telemetry, request metrics, budgets, alerts), manage its API keys and acknowledge
//! alerts.
use std::io::{self, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use llmops_tui::address::Target;
use llmops_tui::auth::BearerAuth;
use llmops_tui::connect::{Daemon, Unreachable};
use tonic::Code;

// Files of their own, outside src/bin/ itself where cargo would take them for other binaries.
#[path = "llmopsctl/admin.rs"]
mod admin;
#[path = "llmopsctl/alerts.rs"]
mod alerts;
#[path = "llmopsctl/cache.rs"]
mod cache;
#[path = "llmopsctl/cli.rs"]
mod cli;
#[path = "llmopsctl/datasets.rs"]
mod datasets;
#[path = "llmopsctl/eval_json.rs"]
mod eval_json;
#[path = "llmopsctl/evals.rs"]
mod evals;
#[path = "llmopsctl/junit.rs"]
mod junit;
#[path = "llmopsctl/output.rs"]
mod output;
#[path = "llmopsctl/prompt_file.rs"]
mod prompt_file;
#[path = "llmopsctl/prompts.rs"]
mod prompts;
#[path = "llmopsctl/queries.rs"]
mod queries;
#[path = "llmopsctl/replay.rs"]
mod replay;
#[path = "llmopsctl/score.rs"]
mod score;

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
    /// An evaluation's verdict, already printed: exit with this status (100 failed, 1 could not run).
    Verdict(u8),
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
        } else if status.code() == Code::Unknown
            && ["transport error", "h2 protocol error"].iter().any(|m| status.message().starts_with(m))
            && matches!(target, Target::Url(url) if url.starts_with("http://"))
        {
            // What plain HTTP/2 to a TLS port looks like from here.
            let cause = "the connection broke before any answer (if llmopsd serves TLS there, connect to https://)";
            Failure::Unreachable(Unreachable { target: target.to_string(), cause: cause.to_owned() })
        } else {
            Failure::Rpc(Box::new(status))
        }
    }

    /// Prints the failure as one line on stderr and picks the exit status. An evaluation (`eval run`, a gated
    /// label move) exits 1 for whatever kept it from running, an unreachable llmopsd included.
    fn report(self, evaluating: bool) -> ExitCode {
        let unreachable_status = if evaluating { 1 } else { 2 };
        let (message, exit_status) = match self {
            Failure::Verdict(status) => return ExitCode::from(status),
            Failure::Unreachable(err) => {
                let hint = if ["certificate", "Certificate", "UnknownIssuer", "handshake", "Handshake"]
                    .iter()
                    .any(|w| err.cause.contains(w))
                {
                    " (TLS: --tls-ca names the CA that signed llmopsd's certificate; --tls-cert and --tls-key if it \
                     asks for a client certificate)"
                } else if err.cause.contains("https://") {
                    ""
                } else {
                    " (is llmopsd running? use --connect)"
                };
                (format!("{err}{hint}"), unreachable_status)
            }
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
    let tls = match llmops_tui::tls::ClientTls::load(&cli.tls) {
        Ok(tls) => tls,
        Err(err) => Cli::command().error(ErrorKind::InvalidValue, err).exit(),
    };
    let target = cli.connect.clone().unwrap_or_else(Target::default_socket);
    let evaluating = matches!(
        &cli.command,
        Command::Eval { command: cli::EvalCommand::Run(_) }
            | Command::Prompts { command: cli::PromptsCommand::Label { gate: Some(_), .. } }
    );
    match run(&cli, &target, auth, &tls).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(evaluating),
    }
}

async fn run(cli: &Cli, target: &Target, auth: BearerAuth, tls: &llmops_tui::tls::ClientTls) -> Result<(), Failure> {
    let daemon = Daemon::connect(target, auth, tls).await.map_err(Failure::Unreachable)?;
    let rpc_failure = |status| Failure::from_rpc(target, status);
    let as_json = cli.json;
    // Prompts, answers and logs come from clients and engines: their control characters are shown, not obeyed.
    let mut out = llmops_tui::safe_output::SafeOutput::new(io::stdout().lock());
    let out = &mut out;
    match &cli.command {
        Command::Status => queries::status(&daemon, as_json, out, rpc_failure).await?,
        Command::Engines => queries::engines(&daemon, as_json, out, rpc_failure).await?,
        Command::Logs { engine, lines } => queries::logs(&daemon, engine, *lines, as_json, out, rpc_failure).await?,
        Command::Traces(args) => queries::traces(&daemon, args, as_json, out, rpc_failure).await?,
        Command::Trace { id } => queries::trace(&daemon, id, as_json, out, rpc_failure).await?,
        Command::Watch => queries::watch_traces(&daemon, as_json, out, rpc_failure).await?,
        Command::Score(args) => score::score(&daemon, args, as_json, out, rpc_failure).await?,
        Command::Gpus { watch: false } => queries::gpus(&daemon, as_json, out, rpc_failure).await?,
        Command::Gpus { watch: true } => queries::watch_gpus(&daemon, as_json, out, rpc_failure).await?,
        Command::Metrics => queries::metrics(&daemon, as_json, out, rpc_failure).await?,
        Command::Keys { command } => admin::keys(&daemon, command, as_json, out, rpc_failure).await?,
        Command::Budgets { watch } => admin::budgets(&daemon, *watch, as_json, out, rpc_failure).await?,
        Command::Alerts(args) => alerts::alerts(&daemon, args, as_json, out, rpc_failure).await?,
        Command::Alert { id } => alerts::show(&daemon, id, as_json, out, rpc_failure).await?,
        Command::Prompts { command } => prompts::prompts(&daemon, command, as_json, out, rpc_failure).await?,
        Command::Dataset { command } => datasets::datasets(&daemon, command, as_json, out, rpc_failure).await?,
        Command::Eval { command } => evals::evals(&daemon, command, as_json, out, rpc_failure).await?,
        Command::Cache { command } => cache::cache(&daemon, command, as_json, out, rpc_failure).await?,
        Command::Replay { id, route, set } => {
            let args = replay::Args { id, route: route.as_deref(), set };
            replay::replay(&daemon, args, as_json, out, rpc_failure).await?
        }
    }
    out.flush()?;
    Ok(())
}
