//! `traces`' filters and how they become a ListTraces request.
use std::time::Duration;

use clap::{Args, ValueEnum};
use llmops_proto::v1::{ListTracesRequest, TraceStatus};
use llmops_tui::when;

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

fn parse_non_negative_ms(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err("expected a number of milliseconds, 0 or more".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

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
}
