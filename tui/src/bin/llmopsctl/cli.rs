//! The command line: the global flags and the commands with their help text. The flags of `traces`, `alerts`
//! and `keys` are in files of their own (cli/).
use clap::{Parser, Subcommand};
use llmops_tui::address::Target;

// Explicit paths: llmopsctl/alerts.rs is the `alerts` command itself.
#[path = "cli/alerts.rs"]
mod alerts;
#[path = "cli/evals.rs"]
mod evals;
#[path = "cli/keys.rs"]
mod keys;
#[path = "cli/prompts.rs"]
mod prompts;
#[path = "cli/score.rs"]
mod score;
#[path = "cli/traces.rs"]
mod traces;

pub use alerts::{AlertStateFilter, AlertsArgs, AlertsCommand};
pub use evals::{CreateArgs, DatasetCommand, EvalCommand, RunArgs};
pub use keys::KeysCommand;
pub use prompts::PromptsCommand;
pub use score::ScoreArgs;
pub use traces::TracesArgs;

#[derive(Debug, Parser)]
#[command(
    name = "llmopsctl",
    version,
    about = "Query a running llmopsd: its status, engines and their logs, recorded traces, one trace, traces \
             live, GPU and host telemetry, request metrics, budgets or alerts; manage its API keys, prompts, \
             datasets and evaluation runs, score traces and acknowledge alerts",
    after_help = "Exit status: 0 on success, 1 when llmopsd answered with an error, \
                  2 for usage errors or when llmopsd cannot be reached. `eval run` and `prompts label --gate`: \
                  100 when the evaluation FAILED, 1 when it could not run (llmopsd unreachable included)."
)]
pub struct Cli {
    /// Where llmopsd serves gRPC: unix:/path.sock, /path.sock, https://host:port (TLS), http://host:port or host:port
    /// [default: the Unix socket a daemon started without flags uses]
    #[arg(long, global = true, env = "LLMOPS_CONNECT", value_name = "ADDR")]
    pub connect: Option<Target>,

    /// Bearer token sent as `authorization: Bearer TOKEN` on every call
    #[arg(long, global = true, env = "LLMOPS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(flatten)]
    pub tls: llmops_tui::tls::TlsArgs,

    /// Print JSON instead of text (one document; `watch`, `gpus --watch`, `budgets --watch` and
    /// `alerts --watch` print one JSON object per line)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Version, uptime, listen addresses, privacy mode, engines, routes and the trace store
    Status,
    /// Each engine's health and load, and for engines llmopsd launches their process: state, PID, restarts
    ///
    /// One row per engine: kind, health (its last check), STATE of the launched process (starting, healthy,
    /// unhealthy, restarting or stopped; "-" for engines llmopsd does not launch), its PID ("-" while none
    /// runs), how often it was restarted, running and waiting requests, KV-cache use, and how its last run
    /// ended / why its last health check or request failed. A value that is not known shows as "-", never 0.
    /// `--json` prints the engines array of `status --json`.
    Engines,
    /// What an engine llmopsd launches last wrote to stdout and stderr, oldest line first
    ///
    /// The lines are printed as written, one per line (llmopsd keeps the last 200). Exits 1 for an engine
    /// llmopsd does not know or does not launch (it never sees that engine's output).
    Logs {
        /// The engine's name (the NAME column of `llmopsctl engines`)
        engine: String,
        /// Only the newest N lines [default: all kept]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        lines: Option<u32>,
    },
    /// Recorded traces, newest first
    Traces(TracesArgs),
    /// Everything recorded for one trace: fields, tags, attempts, timing, feedback scores, prompt and response
    Trace {
        /// The trace id (the ID column of `llmopsctl traces`)
        id: String,
    },
    /// Re-run a recorded request and compare the new answer with the original
    ///
    /// llmopsd sends the recorded request again through its gateway (routing, budgets and fallbacks as for
    /// any client; a `seed` in the original is sent again), streamed so the answer prints as it arrives.
    /// The re-run is recorded as a new trace whose `replay_of` is ID. At the end a comparison: whether the
    /// text is identical (or how similar), and the change in tokens, latency, time to first token and cost.
    /// Exits 1 when the trace is unknown or kept no request body (privacy mode).
    Replay {
        /// The trace id (the ID column of `llmopsctl traces`)
        id: String,
        /// Run against this route (public model name) instead of the original's
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
        /// Change a request parameter, e.g. `--set temperature=0 --set max_tokens=64` (VALUE is read as
        /// JSON when it parses, else as a string; `null` removes the parameter)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Add a feedback score to a trace: a number, pass/fail or a label, with a comment and who gave it
    ///
    /// The same as an application's `POST /v1/feedback` (the trace id is the `x-request-id` its client got
    /// back). A trace takes several scores, up to 100. `llmopsctl trace ID` lists them; `llmopsctl metrics`
    /// shows pass rates and means per route and prompt. Exits 1 when the trace is unknown or the score is
    /// refused (the message says which field and why).
    Score(ScoreArgs),
    /// Traces live as they start and finish, one line each, until interrupted
    Watch,
    /// GPUs, the host and engines' load, as llmopsd last sampled them
    ///
    /// Per GPU: memory used/total, utilisation (GPU busy % / memory-controller busy %), power draw / limit,
    /// temperature, SM / memory clocks, active throttle reasons ("none" when none is active), and an ERROR
    /// column when a GPU could not be read. Below: the processes holding GPU memory (with the engine llmopsd
    /// launched under that PID), the host (CPU, memory, load and the CPU and memory of llmopsd and its
    /// engines; CPU % is a share of one core), and each engine's running and waiting requests and KV-cache
    /// use. A value the hardware or engine does not report shows as "-", never 0. Without GPU data (no NVIDIA
    /// driver, NVML not found, ...) the first line says why and the host and engines are still shown.
    Gpus {
        /// Follow live instead: one line per GPU each time its readings change (time, index, utilisation,
        /// memory, power, temperature), until interrupted. Exits 1 if this viewer falls behind and llmopsd
        /// drops it.
        #[arg(long)]
        watch: bool,
    },
    /// Request rate, errors, latency, TTFT and inter-token time per route and model over 1m, 5m and 1h
    ///
    /// One table per window (the last minute, 5 minutes and hour), one row per route and model: requests
    /// per second, the share that failed (ERR%), latency percentiles (LAT p50/p95/p99, the whole request),
    /// time to first token (TTFT p50/p95), inter-token latency (ITL p50, the time between streamed tokens),
    /// output tokens per second, and requests in flight now. Times are in milliseconds; a percentile
    /// without samples shows as "-".
    Metrics,
    /// Make, list and revoke the API keys clients send to llmopsd's HTTP API; each key selects a tenant
    ///
    /// A key is sent as `Authorization: Bearer KEY` (OpenAI SDKs: `OPENAI_API_KEY`) and makes the request
    /// count as its tenant's (traces, budgets). llmopsd stores only each key's SHA-256, so a key is shown once,
    /// when created. Keys can also be set in the config file (`[[auth.keys]]`, as hashes): those are listed
    /// with SOURCE "config" and are removed there, not revoked here.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Spend and rate limits: usage against each limit, what remains, the burn rate and when it runs out
    ///
    /// One row per `[[budgets]]` entry of llmopsd's config: its scope (global, tenant:NAME, route:NAME or
    /// model:NAME), calendar window in UTC (minute, hour, day or month), what happens at the limit (reject,
    /// downgrade to the route's fallback, or alert only), USED / LIMIT in the limit's unit (dollars, tokens,
    /// requests, or requests running at once for concurrent limits), the share used, what remains, the usage
    /// per hour over the window so far (BURN/h), when the limit is reached at that rate if before the window
    /// resets (EXHAUSTS; "now" once reached, "-" if not before the reset), and when the window resets. Times
    /// are local. `--json` adds reserved amounts, requests in flight and usage in every unit.
    Budgets {
        /// Follow live instead: one line per budget each time its usage changes (time, name, used / limit,
        /// share used, burn rate), starting with every budget, until interrupted. Exits 1 if this viewer falls
        /// behind and llmopsd drops it.
        #[arg(long)]
        watch: bool,
    },
    /// Alerts llmopsd raised (drift, budgets, engines, GPUs, SLOs, anomalies); `alerts ack ID` acknowledges one
    ///
    /// Firing first, then newest first. Without --state, only alerts that are not resolved: firing and
    /// acknowledged ones (`--state all` adds resolved ones). One row per alert: the end of its id (enough for `llmopsctl alert ID` and
    /// `llmopsctl alerts ack ID`), its state, severity (info, warning or critical), the rule that raised it,
    /// its title, when it started (SINCE, local time), how often the rule raised it (COUNT: repeats of the
    /// same condition fold into one alert), the evidence (the statistic, its value and how it compares with
    /// the rule's threshold, e.g. "ks_p_value 0.0012 < 0.05") and its webhook notifications ("1/1 delivered",
    /// "failed (3 tries)"; "-" without webhooks). `llmopsctl alert ID` shows everything about one alert.
    Alerts(AlertsArgs),
    /// Everything about one alert: its fields, message, labels, evidence and webhook deliveries
    ///
    /// The evidence shows the statistic against the rule's threshold, the sample counts and the summaries
    /// (mean, percentiles, rates, ...) of the reference and current windows side by side, with the change
    /// between them. Each webhook shows its last delivery: status, tries, when and the last error. Times are
    /// local. Looks among the newest 1000 alerts, resolved ones included; exits 1 when no alert or more than
    /// one matches ID.
    Alert {
        /// The alert's id, or any unique start or end of it (the ID column of `llmopsctl alerts` shows its end)
        id: String,
    },
    /// Versioned prompts: list, show (with the audit history), push a version from a file, move a label, diff
    ///
    /// A request uses one with `metadata.prompt = "NAME@REF"` and `metadata.variables` (or the headers
    /// `x-llmops-prompt` and `x-llmops-prompt-variables`); llmopsd renders its templates before the request's
    /// messages and records name, version and content hash on the trace.
    Prompts {
        #[command(subcommand)]
        command: PromptsCommand,
    },
    /// Datasets for evaluation: made from recorded traces or imported from JSONL; list, show, export, delete
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Evaluation runs: run a dataset through a route and score it (exit 0 passed, 100 failed, 1 could not
    /// run); list, show and compare runs
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
    /// The gateway's response cache: hits, misses and savings per route; clear it
    ///
    /// Routes cache only with `[routes.NAME] cache = { ttl_s = ..., max_entries = ... }` in llmopsd's config.
    /// Clients steer it per request with the header `x-llmops-cache: no-cache | no-store | ttl=SECONDS`, and
    /// each answer on a cached route says `x-llmops-cache: hit | miss | bypass`.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Per cached route: entries and bytes (of their bounds), TTL, hits, misses, bypasses, hit ratio,
    /// evictions, and the tokens and USD the hits saved
    Stats,
    /// Drop cached answers: one route's with --route, else every route's
    Clear {
        /// Only this route (public model name)
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
    },
}

/// For names that must say something (a tenant, who acknowledges).
fn parse_non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// The command line as clap parses it, for the tests here and in cli/.
#[cfg(test)]
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("llmopsctl").chain(args.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gpus_watch_is_a_flag_and_metrics_takes_none() {
        let cli = parse(&["gpus", "--watch", "--json"]).expect("parses");
        assert!(matches!(cli.command, Command::Gpus { watch: true }), "{:?}", cli.command);
        assert!(cli.json);
        let cli = parse(&["gpus"]).expect("parses");
        assert!(matches!(cli.command, Command::Gpus { watch: false }), "{:?}", cli.command);
        assert!(matches!(parse(&["metrics"]).expect("parses").command, Command::Metrics));
        assert!(parse(&["metrics", "--watch"]).is_err());
    }

    #[test]
    fn logs_takes_an_engine_and_a_line_count() {
        let cli = parse(&["logs", "vllm", "--lines", "20"]).expect("parses");
        assert!(matches!(&cli.command, Command::Logs { engine, lines: Some(20) } if engine == "vllm"), "{cli:?}");
        let cli = parse(&["logs", "vllm"]).expect("parses");
        assert!(matches!(cli.command, Command::Logs { lines: None, .. }), "{:?}", cli.command);
        assert!(parse(&["logs"]).is_err(), "the engine is required");
        assert!(parse(&["logs", "vllm", "--lines", "0"]).is_err());
        assert!(matches!(parse(&["engines", "--json"]).expect("parses").command, Command::Engines));
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = parse(&["trace", "abc", "--json", "--connect", "unix:/tmp/x.sock"]).expect("parses");
        assert!(cli.json);
        assert_eq!(cli.connect.map(|t| t.to_string()).as_deref(), Some("unix:/tmp/x.sock"));
    }
}
