//! The command line: commands, flags and their help text.
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use llmops_proto::v1::{ListTracesRequest, TraceStatus};
use llmops_tui::address::Target;
use llmops_tui::when;

#[derive(Debug, Parser)]
#[command(
    name = "llmopsctl",
    version,
    about = "Query a running llmopsd: its status, engines and their logs, recorded traces, one trace, traces \
             live, GPU and host telemetry, request metrics, budgets or alerts; manage its API keys and \
             acknowledge alerts",
    after_help = "Exit status: 0 on success, 1 when llmopsd answered with an error, \
                  2 for usage errors or when llmopsd cannot be reached."
)]
pub struct Cli {
    /// Where llmopsd serves gRPC: unix:/path.sock, /path.sock, http://host:port or host:port
    /// [default: the Unix socket a daemon started without flags uses]
    #[arg(long, global = true, env = "LLMOPS_CONNECT", value_name = "ADDR")]
    pub connect: Option<Target>,

    /// Bearer token sent as `authorization: Bearer TOKEN` on every call
    #[arg(long, global = true, env = "LLMOPS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

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
    /// Everything recorded for one trace: fields, tags, attempts, timing, prompt and response
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
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,

    /// Only alerts in this state [default: firing and acknowledged, i.e. all but resolved]
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<AlertStateFilter>,

    /// How many alerts to show at most
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,

    /// Follow live instead: one line per alert raised, updated (raised again, or escalated), acknowledged or
    /// resolved (time, event, id, severity, rule, title, evidence), until interrupted. Exits 1 if this viewer
    /// falls behind and llmopsd drops it.
    #[arg(long, conflicts_with_all = ["state", "limit"])]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Acknowledge an alert: someone is on it. It stays open, and folds repeats, until its rule resolves it
    ///
    /// Webhooks hear of the acknowledgement. Acknowledging an acknowledged alert changes nothing (the output
    /// says who did it first). Exits 1 when no alert has that id or when it is already resolved.
    Ack {
        /// The alert's id, or any unique start or end of it (the ID column of `llmopsctl alerts`)
        id: String,
        /// Who acknowledges it, kept with the alert [default: $USER, else "llmopsctl"]
        #[arg(long, value_name = "NAME", value_parser = parse_non_empty)]
        by: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertStateFilter {
    /// Raised and not acknowledged
    Firing,
    /// Someone is on it; still open
    Acknowledged,
    /// Its condition cleared
    Resolved,
    /// Every state
    All,
}

impl AlertStateFilter {
    /// The ListAlerts states to ask for, in the order to show them ("" asks for every state).
    pub fn states(filter: Option<Self>) -> &'static [&'static str] {
        match filter {
            None => &["firing", "acknowledged"],
            Some(Self::Firing) => &["firing"],
            Some(Self::Acknowledged) => &["acknowledged"],
            Some(Self::Resolved) => &["resolved"],
            Some(Self::All) => &[""],
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for a tenant and print it, this one time only
    ///
    /// Save the printed key right away: llmopsd keeps only its SHA-256 hash and cannot show it again (a lost
    /// key is revoked and replaced). Once any key exists, llmopsd in `auth.mode = "auto"` requires a valid key
    /// on every HTTP request. Scripts: `llmopsctl keys create --tenant acme --json | jq -r .secret`.
    Create {
        /// The tenant the key's requests count as (in traces and tenant:NAME budgets)
        #[arg(long, value_name = "TENANT", value_parser = parse_non_empty)]
        tenant: String,
        /// A label to tell keys apart, e.g. who or what uses it
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Every key (never the keys themselves): id, tenant, name, when created, source, whether revoked
    ///
    /// SOURCE is "store" for keys made with `keys create` and "config" for `[[auth.keys]]` in the config file.
    /// The last line says whether requests without a valid key are refused now.
    List,
    /// Revoke a key made with `keys create`: requests sending it get 401 from then on
    ///
    /// Exits 1 when no key has that id, or for a config-file key (remove it from the config instead).
    Revoke {
        /// The key's id (the ID column of `llmopsctl keys list`)
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TracesArgs {
    /// Only traces started at most this long ago, e.g. 30s, 10m, 2h, 1d
    #[arg(long, value_name = "DURATION", value_parser = when::parse_ago)]
    pub since: Option<Duration>,

    /// Only traces started at least this long ago, e.g. 5m
    #[arg(long, value_name = "DURATION_AGO", value_parser = when::parse_ago)]
    pub until: Option<Duration>,

    /// Only traces whose requested or served model is exactly this
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Only traces of this route (the public model name)
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,

    /// Only traces with this outcome
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<StatusFilter>,

    /// Only traces whose prompt or response contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,

    /// Only traces that took at least this many milliseconds
    #[arg(long, value_name = "MS", value_parser = parse_non_negative_ms)]
    pub min_latency_ms: Option<f64>,

    /// How many traces to show at most (fetched page by page)
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

impl TracesArgs {
    /// The request filter, with `--since` / `--until` counted back from `now_unix_ms`.
    pub fn filter(&self, now_unix_ms: i64, include_bodies: bool) -> ListTracesRequest {
        let ago = |duration: Option<Duration>| duration.map_or(0, |d| when::unix_ms_ago(now_unix_ms, d));
        ListTracesRequest {
            since_unix_ms: ago(self.since),
            until_unix_ms: ago(self.until),
            route: self.route.clone().unwrap_or_default(),
            model: self.model.clone().unwrap_or_default(),
            status: self.status.map_or(TraceStatus::Unspecified, TraceStatus::from) as i32,
            search: self.search.clone().unwrap_or_default(),
            min_latency_ms: self.min_latency_ms.unwrap_or(0.0),
            include_bodies,
            ..ListTracesRequest::default()
        }
    }

    /// An empty window is almost certainly swapped flags, so it is refused rather than answered with nothing.
    pub fn window_error(&self) -> Option<&'static str> {
        match (self.since, self.until) {
            (Some(since), Some(until)) if until >= since => {
                Some("--until must be more recent than --since (both count back from now)")
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusFilter {
    /// Answered by an engine
    Ok,
    /// Refused by the gateway before any engine ran
    Rejected,
    /// An engine failed, timed out or cut the stream
    Error,
    /// The client went away first
    Cancelled,
}

impl From<StatusFilter> for TraceStatus {
    fn from(filter: StatusFilter) -> Self {
        match filter {
            StatusFilter::Ok => TraceStatus::Ok,
            StatusFilter::Rejected => TraceStatus::Rejected,
            StatusFilter::Error => TraceStatus::Error,
            StatusFilter::Cancelled => TraceStatus::Cancelled,
        }
    }
}

fn parse_non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

fn parse_non_negative_ms(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err("expected a number of milliseconds, 0 or more".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("llmopsctl").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn traces_flags_become_a_filter() {
        let cli = parse(&["traces", "--since", "10m", "--status", "error", "--model", "m", "--limit", "5"])
            .expect("valid command line");
        let Command::Traces(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(args.limit, 5);
        let filter = args.filter(1_000_000, true);
        assert_eq!(filter.since_unix_ms, 400_000);
        assert_eq!(filter.until_unix_ms, 0);
        assert_eq!(filter.status, TraceStatus::Error as i32);
        assert_eq!(filter.model, "m");
        assert!(filter.include_bodies);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["traces", "--limit", "0"]).is_err());
        assert!(parse(&["traces", "--since", "yesterday"]).is_err());
        assert!(parse(&["traces", "--status", "in_flight"]).is_err());
        assert!(parse(&["traces", "--min-latency-ms", "-1"]).is_err());
        assert!(parse(&["--connect", "localhost", "status"]).is_err());
        let cli = parse(&["traces", "--since", "5m", "--until", "1h"]).expect("parses");
        let Command::Traces(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert!(args.window_error().is_some());
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
    fn keys_take_a_subcommand_and_budgets_a_watch_flag() {
        let cli = parse(&["keys", "create", "--tenant", "acme", "--name", "ci"]).expect("parses");
        assert!(
            matches!(&cli.command, Command::Keys { command: KeysCommand::Create { tenant, name: Some(name) } }
                if tenant == "acme" && name == "ci"),
            "{cli:?}"
        );
        assert!(parse(&["keys", "create"]).is_err(), "the tenant is required");
        assert!(parse(&["keys", "create", "--tenant", " "]).is_err(), "the tenant must not be blank");
        assert!(parse(&["keys"]).is_err(), "a keys subcommand is required");
        let cli = parse(&["keys", "list", "--json"]).expect("parses");
        assert!(matches!(cli.command, Command::Keys { command: KeysCommand::List }) && cli.json, "{cli:?}");
        let cli = parse(&["keys", "revoke", "key-1"]).expect("parses");
        assert!(matches!(&cli.command, Command::Keys { command: KeysCommand::Revoke { id } } if id == "key-1"));
        assert!(parse(&["keys", "revoke"]).is_err(), "the id is required");
        assert!(matches!(parse(&["budgets"]).expect("parses").command, Command::Budgets { watch: false }));
        assert!(matches!(parse(&["budgets", "--watch"]).expect("parses").command, Command::Budgets { watch: true }));
    }

    #[test]
    fn alerts_take_filters_a_watch_flag_or_ack() {
        let cli = parse(&["alerts"]).expect("parses");
        let Command::Alerts(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert!(args.command.is_none() && !args.watch && args.limit == 100, "{args:?}");
        assert_eq!(AlertStateFilter::states(args.state), ["firing", "acknowledged"]);
        let cli = parse(&["alerts", "--state", "all", "--limit", "5", "--json"]).expect("parses");
        let Command::Alerts(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!((AlertStateFilter::states(args.state), args.limit), (&[""][..], 5));
        assert!(cli.json);
        assert!(matches!(parse(&["alerts", "--watch"]).expect("parses").command, Command::Alerts(a) if a.watch));
        let cli = parse(&["alerts", "ack", "a1e7", "--by", "alice"]).expect("parses");
        let Command::Alerts(AlertsArgs { command: Some(AlertsCommand::Ack { id, by }), .. }) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!((id.as_str(), by.as_deref()), ("a1e7", Some("alice")));
        assert!(matches!(parse(&["alert", "a1e7"]).expect("parses").command, Command::Alert { id } if id == "a1e7"));
        assert!(parse(&["alerts", "--state", "open"]).is_err());
        assert!(parse(&["alerts", "--limit", "0"]).is_err());
        assert!(parse(&["alerts", "--watch", "--state", "firing"]).is_err());
        assert!(parse(&["alerts", "--watch", "--limit", "5"]).is_err());
        assert!(parse(&["alerts", "--state", "all", "ack", "a1e7"]).is_err(), "list flags do not go with ack");
        assert!(parse(&["alerts", "ack"]).is_err(), "the id is required");
        assert!(parse(&["alerts", "ack", "a1e7", "--by", " "]).is_err(), "--by must not be blank");
        assert!(parse(&["alert"]).is_err(), "the id is required");
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = parse(&["trace", "abc", "--json", "--connect", "unix:/tmp/x.sock"]).expect("parses");
        assert!(cli.json);
        assert_eq!(cli.connect.map(|t| t.to_string()).as_deref(), Some("unix:/tmp/x.sock"));
    }
}
