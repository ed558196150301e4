//! The `dataset` and `eval` subcommands: datasets of requests with reference answers, and evaluation runs.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use llmops_tui::when;

use super::traces::StatusFilter;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Make a dataset, filled from recorded traces that match the filters (the recorded answer becomes each
    /// item's reference), e.g. `dataset create support-qa --route chat --since 1d --status ok --limit 200`
    ///
    /// Only chat completions that succeeded and kept their request body become items; the others are counted
    /// as skipped, with the first reasons. `--route` is also the route runs use by default. `--empty` makes
    /// the dataset without items (add them with `dataset add` or `dataset import`). `--update` replaces an
    /// existing dataset's description, route and evaluators, keeping its items.
    Create(CreateArgs),
    /// Add recorded traces to a dataset by id (`llmopsctl traces` lists them; in `llmops-top`, `a` on a trace)
    Add {
        dataset: String,
        #[arg(required = true, value_name = "TRACE_ID")]
        trace_ids: Vec<String>,
    },
    /// Add items from a JSONL file (one item per line; `-` reads stdin); the dataset is made if needed
    ///
    /// Each line: {"messages": [{"role": "user", "content": "..."}], "reference": "expected answer",
    /// "variables": {"name": "value"}, "prompt": "NAME@REF", "parameters": {"temperature": 0},
    /// "metadata": {...}}; "messages" may be left out when a prompt brings them. Every line is checked to be
    /// JSON before anything is sent (a bad one is named by its line number); llmopsd then checks and adds the
    /// items 500 at a time, so a refused batch leaves the ones before it added.
    Import {
        dataset: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a dataset's items as JSONL (the shape `dataset import` reads)
    Export {
        dataset: String,
        /// Write to FILE instead of stdout
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Every dataset: items, default route, evaluators
    List,
    /// A dataset and its first items
    Show {
        dataset: String,
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Delete a dataset and its items (its runs are kept)
    Delete { dataset: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub dataset: String,
    /// Only traces of this route; also the route runs use by default
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// Only traces whose requested or served model is exactly this
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Only traces started at most this long ago, e.g. 10m, 2h, 1d
    #[arg(long, value_name = "DURATION", value_parser = when::parse_ago)]
    pub since: Option<Duration>,
    /// Only traces with this outcome (only `ok` traces become items)
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<StatusFilter>,
    /// Only traces whose prompt or response contains this text
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Traces taken at most, newest first
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// What the dataset is for
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// The evaluators runs use by default: a JSON file holding an array (see `eval run --help`)
    #[arg(long, value_name = "FILE")]
    pub evaluators: Option<PathBuf>,
    /// Make it without items
    #[arg(long)]
    pub empty: bool,
    /// Replace an existing dataset's description, route and evaluators (its items stay)
    #[arg(long)]
    pub update: bool,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Send every item of DATASET through llmopsd, score the answers, and give a verdict
    ///
    /// Every item is sent to ROUTE (default: the dataset's) as a chat completion through the gateway, so
    /// budgets, fallbacks and traces apply; each trace is tagged eval_run, eval_item and eval_role. The answers
    /// are scored by the evaluators (--evaluators FILE, else the dataset's): a JSON array of
    /// {"type": "exact"}, {"type": "contains", "value": "..."} (no value: the reference), {"type": "regex",
    /// "pattern": "..."}, {"type": "json_schema", "schema": {...}}, {"type": "max_latency_ms", "value": N},
    /// {"type": "max_cost_usd", "value": X}, {"type": "judge", "rubric": "...", "min_score": 0.5} (an LLM
    /// judge: the embedded model unless "route" or --judge-route names another; temperature 0, fixed seed,
    /// JSON verdict with reasoning, pass and score) and {"type": "pairwise", "rubric": "..."} (asks which of
    /// two answers is better in both orders; a disagreement is a tie). Each takes "threshold": the minimum
    /// pass rate (default 1) and "name".
    ///
    /// Against --baseline RUN (an earlier run of the dataset) or --against ROUTE (every item also sent
    /// there), the runs are compared item by item: wins, ties and losses with a 95% interval of the mean
    /// difference, and the items that got worse. The run FAILS when an evaluator's pass rate is under its
    /// threshold, or when it is significantly worse than the baseline (the interval is below 0).
    ///
    /// Exit status: 0 PASSED, 100 FAILED (quality), 1 could not run (an item's request failed, an unknown
    /// dataset or route, llmopsd unreachable). The last line printed is the verdict.
    Run(Box<RunArgs>),
    /// Evaluation runs, newest first
    List {
        /// Only runs of this dataset
        dataset: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// One run: its verdict, evaluators, comparison, and every item's result
    Show {
        run: String,
        /// Only items that failed or errored
        #[arg(long)]
        failed: bool,
    },
    /// Compare two finished runs of one dataset item by item (candidate minus baseline)
    Compare { baseline: String, candidate: String },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub dataset: String,
    /// The route every item is sent to [default: the dataset's]
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// A registry prompt for every item, e.g. support@3 or support@staging [default: each item's own]
    #[arg(long, value_name = "NAME@REF")]
    pub prompt: Option<String>,
    /// Compare with this earlier run of the dataset (run-N)
    #[arg(long, value_name = "RUN", conflicts_with = "against")]
    pub baseline: Option<String>,
    /// Also send every item to this route and compare the two
    #[arg(long, value_name = "ROUTE")]
    pub against: Option<String>,
    /// Items in flight at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// The evaluators: a JSON file holding an array [default: the dataset's]
    #[arg(long, value_name = "FILE")]
    pub evaluators: Option<PathBuf>,
    /// Set a request parameter on every item, e.g. --set temperature=0 (VALUE is JSON when it parses)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Only the first N items
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// The route LLM judges use [default: the embedded model's]
    #[arg(long, value_name = "ROUTE")]
    pub judge_route: Option<String>,
    /// Also write the results as JUnit XML (one test case per item, one per threshold and comparison)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the results as JSONL (one line per item, then the run)
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
    /// Who runs it, kept with the run [default: $USER]
    #[arg(long, value_name = "WHO")]
    pub by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

    #[test]
    fn dataset_and_eval_commands_parse() {
        let cli =
            parse(&["dataset", "create", "qa", "--route", "chat", "--since", "1d", "--status", "ok"]).expect("parses");
        assert!(
            matches!(&cli.command, Command::Dataset { command: DatasetCommand::Create(args) }
                if args.limit == 200 && args.route.as_deref() == Some("chat")),
            "{cli:?}"
        );
        assert!(parse(&["dataset", "add", "qa"]).is_err(), "trace ids are required");
        let cli = parse(&["eval", "run", "qa", "--baseline", "run-3", "--junit", "out.xml", "--set", "temperature=0"])
            .expect("parses");
        assert!(
            matches!(&cli.command, Command::Eval { command: EvalCommand::Run(args) }
                if args.baseline.as_deref() == Some("run-3") && args.concurrency == 4 && args.set.len() == 1),
            "{cli:?}"
        );
        assert!(parse(&["eval", "run", "qa", "--baseline", "run-3", "--against", "big"]).is_err());
        assert!(parse(&["eval", "run", "qa", "--concurrency", "0"]).is_err());
        assert!(parse(&["eval", "run", "qa", "--concurrency", "33"]).is_err());
        assert!(matches!(parse(&["eval", "list"]).expect("parses").command, Command::Eval { .. }));
        assert!(matches!(parse(&["eval", "compare", "run-1", "run-2"]).expect("parses").command, Command::Eval { .. }));
    }
}
