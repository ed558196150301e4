//! `llmops-top`'s command line. Addresses and the token resolve exactly as for `llmopsctl`.
use std::ffi::OsString;

use clap::Parser;

use super::state::Look;
use crate::address::Target;
use crate::auth::{BearerAuth, InvalidToken};

#[derive(Debug, Parser)]
#[command(
    name = "llmops-top",
    version,
    about = "Live console for llmopsd: GPUs, host and engine load, request rates and latencies, traces as they \
             happen (with their prompts, answers and timing, replayed at recorded speed or re-run on another \
             route), alerts and budgets, for one daemon or a fleet",
    after_help = "Views: 1 overview (GPUs, host, engines, request metrics), 2 traces (live tail), 3 alerts, \
                  4 budgets & engines (with the selected engine's log tail), 0 fleet (with several --connect).\n\
                  \n\
                  Keys: ? help, q or Ctrl-C quit, Tab/Shift-Tab next/previous view, arrows or h j k l move, \
                  g/G first/last, PgUp/PgDn page, Enter open, Esc back, : command (Tab completes).\n\
                  Traces: / filter (model:NAME route:NAME status:ok|error|rejected|cancelled or text), \
                  f or space follow/pause, s sort column, S reverse. Detail: r replay. Alerts: a acknowledge.\n\
                  Replay: space pause/play, + and - speed, left/right step by chunk, R re-run on a route.\n\
                  \n\
                  Exit status: 0 after q, 2 for usage errors or when there is no terminal."
)]
pub struct Cli {
    /// A daemon to watch: unix:/path.sock, /path.sock, https://host:port (TLS), http://host:port or host:port. Repeat it (or separate
    /// addresses with commas) for a fleet [default: the Unix socket a daemon started without flags uses]
    #[arg(long, env = "LLMOPS_CONNECT", value_name = "ADDR", value_delimiter = ',')]
    pub connect: Vec<Target>,

    /// Bearer token sent as `authorization: Bearer TOKEN` on every call (the same for every daemon)
    #[arg(long, env = "LLMOPS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// No colours (also when the NO_COLOR environment variable is set and not empty)
    #[arg(long)]
    pub no_color: bool,

    /// ASCII only: no box-drawing or block characters, for terminals and fonts without them
    #[arg(long)]
    pub ascii: bool,
}

impl Cli {
    /// The daemons to watch, in order, each once; the default socket when none was given.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for target in &self.connect {
            if !targets.contains(target) {
                targets.push(target.clone());
            }
        }
        if targets.is_empty() {
            targets.push(Target::default_socket());
        }
        targets
    }

    pub fn auth(&self) -> Result<BearerAuth, InvalidToken> {
        BearerAuth::new(self.token.as_deref())
    }

    pub fn look(&self) -> Look {
        self.look_with(std::env::var_os("NO_COLOR"))
    }

    /// `no_color_env` is NO_COLOR's value; see https://no-color.org (set and non-empty disables colour).
    fn look_with(&self, no_color_env: Option<OsString>) -> Look {
        let env_says_no_color = no_color_env.is_some_and(|value| !value.is_empty());
        Look { no_color: self.no_color || env_says_no_color, ascii: self.ascii }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("llmops-top").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connect_repeats_and_splits_on_commas() {
        let cli = parse(&["--connect", "a:1", "--connect", "b:2,/run/x.sock", "--connect", "a:1"]).expect("parses");
        let targets: Vec<String> = cli.targets().iter().map(ToString::to_string).collect();
        assert_eq!(targets, ["http://a:1", "http://b:2", "unix:/run/x.sock"]);
        assert!(parse(&["--connect", "nope"]).is_err());
    }

    #[test]
    fn no_connect_means_the_default_socket() {
        let cli = Cli { connect: Vec::new(), token: None, tls: Default::default(), no_color: false, ascii: false };
        assert!(matches!(cli.targets().as_slice(), [Target::Unix(path)] if *path != PathBuf::new()));
    }

    #[test]
    fn no_color_comes_from_the_flag_or_a_non_empty_env() {
        let cli = parse(&["--ascii"]).expect("parses");
        assert_eq!(cli.look_with(None), Look { no_color: false, ascii: true });
        assert_eq!(cli.look_with(Some("".into())), Look { no_color: false, ascii: true });
        assert_eq!(cli.look_with(Some("1".into())), Look { no_color: true, ascii: true });
        let cli = parse(&["--no-color"]).expect("parses");
        assert!(cli.look_with(None).no_color);
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert!(parse(&["--token", "a\u{7}b"]).expect("parses").auth().is_err());
        assert!(parse(&["--token", "secret"]).expect("parses").auth().is_ok());
    }
}
