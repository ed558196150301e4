//! The `:` command line: what it accepts, how a line parses, and what `Tab` completes.
use super::state::{SortKey, View};

/// What `:` accepts; `Tab` completes these.
pub const COMMANDS: &[&str] = &[
    "overview", "traces", "alerts", "budgets", "engines", "evals", "fleet", "help", "quit", "follow", "pause", "sort",
    "filter", "host", "replay", "rerun", "ack",
];
/// Commands that take a word after them (completion adds the space).
const WITH_ARGUMENT: &[&str] = &["sort", "filter", "host"];
/// `:sort` column names, in the order `s` cycles through them.
pub const SORT_COLUMNS: &[(&str, SortKey)] = &[
    ("time", SortKey::Time),
    ("route", SortKey::Route),
    ("model", SortKey::Model),
    ("status", SortKey::Status),
    ("ttft", SortKey::Ttft),
    ("latency", SortKey::Latency),
    ("in", SortKey::TokensIn),
    ("out", SortKey::TokensOut),
    ("cost", SortKey::Cost),
];

/// A `:` command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(View),
    Help,
    Quit,
    /// `follow` (true) or `pause` (false).
    Follow(bool),
    /// `sort` alone cycles the column.
    Sort(Option<SortKey>),
    Filter(String),
    /// Zero-based; typed one-based as the fleet view numbers hosts.
    Host(usize),
    Replay,
    Rerun,
    Ack,
    /// An empty line.
    Nothing,
}

/// Parses a `:` line; the error is the sentence to show.
pub fn parse_command(line: &str, hosts: usize) -> Result<Command, String> {
    let line = line.trim();
    let (name, argument) = line.split_once(char::is_whitespace).map_or((line, ""), |(n, a)| (n, a.trim()));
    let command = match name {
        "" => Command::Nothing,
        "overview" => Command::Show(View::Overview),
        "traces" => Command::Show(View::Traces),
        "alerts" => Command::Show(View::Alerts),
        "budgets" | "engines" => Command::Show(View::Budgets),
        "evals" => Command::Show(View::Evals),
        "fleet" if hosts < 2 => return Err("the fleet view needs several hosts (--connect more than once)".into()),
        "fleet" => Command::Show(View::Fleet),
        "help" => Command::Help,
        "quit" | "q" => Command::Quit,
        "follow" => Command::Follow(true),
        "pause" => Command::Follow(false),
        "sort" if argument.is_empty() => Command::Sort(None),
        "sort" => match SORT_COLUMNS.iter().find(|(column, _)| *column == argument) {
            Some((_, key)) => Command::Sort(Some(*key)),
            None => {
                let columns: Vec<&str> = SORT_COLUMNS.iter().map(|(c, _)| *c).collect();
                return Err(format!("no column {argument:?} to sort by; try {}", columns.join(", ")));
            }
        },
        "filter" => Command::Filter(argument.to_owned()),
        "host" => match argument.parse::<usize>() {
            Ok(n) if (1..=hosts).contains(&n) => Command::Host(n - 1),
            _ => return Err(format!("host takes a number from 1 to {hosts}")),
        },
        "replay" => Command::Replay,
        "rerun" => Command::Rerun,
        "ack" => Command::Ack,
        other => return Err(format!("unknown command {other:?} (Tab lists the commands)")),
    };
    Ok(command)
}

/// What `Tab` offers for a partly typed line: command names, then sort columns or host numbers.
pub fn completions(input: &str, hosts: usize) -> Vec<String> {
    let input = input.trim_start();
    if let Some((name, partial)) = input.split_once(' ') {
        let partial = partial.trim_start();
        let words: Vec<String> = match name {
            "sort" => SORT_COLUMNS.iter().map(|(c, _)| (*c).to_owned()).collect(),
            "host" => (1..=hosts).map(|n| n.to_string()).collect(),
            _ => Vec::new(),
        };
        return words.into_iter().filter(|w| w.starts_with(partial)).map(|w| format!("{name} {w}")).collect();
    }
    COMMANDS
        .iter()
        .filter(|c| c.starts_with(input))
        .map(|c| if WITH_ARGUMENT.contains(c) { format!("{c} ") } else { (*c).to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_or_say_why_not() {
        assert_eq!(parse_command(" traces ", 1), Ok(Command::Show(View::Traces)));
        assert_eq!(parse_command("engines", 1), Ok(Command::Show(View::Budgets)));
        assert_eq!(parse_command("evals", 1), Ok(Command::Show(View::Evals)));
        assert_eq!(parse_command("sort latency", 1), Ok(Command::Sort(Some(SortKey::Latency))));
        assert_eq!(parse_command("sort", 1), Ok(Command::Sort(None)));
        assert_eq!(parse_command("filter route:chat  slow", 1), Ok(Command::Filter("route:chat  slow".into())));
        assert_eq!(parse_command("host 2", 2), Ok(Command::Host(1)));
        assert_eq!(parse_command("pause", 1), Ok(Command::Follow(false)));
        assert_eq!(parse_command("", 1), Ok(Command::Nothing));
        assert!(parse_command("host 3", 2).is_err());
        assert!(parse_command("fleet", 1).is_err());
        assert!(parse_command("sort size", 1).expect_err("no such column").contains("latency"));
        assert!(parse_command("frobnicate", 1).expect_err("unknown").starts_with("unknown command"));
    }

    #[test]
    fn tab_completes_commands_and_their_words() {
        assert_eq!(completions("f", 1), ["fleet", "follow", "filter "]);
        assert_eq!(completions("so", 1), ["sort "]);
        assert_eq!(completions("sort l", 1), ["sort latency"]);
        assert_eq!(completions("host ", 3), ["host 1", "host 2", "host 3"]);
        assert!(completions("zz", 1).is_empty());
        assert_eq!(completions("", 1).len(), COMMANDS.len());
    }
}
