//! `alerts`' flags and its `ack` subcommand.
use clap::{Args, Subcommand, ValueEnum};

use super::parse_non_empty;

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

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

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
}
