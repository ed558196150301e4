//! The `prompts` subcommands: list, show, push, label and diff the daemon's versioned prompts.
use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Every prompt: its name, newest version, labels and when it last changed
    List,
    /// One version: its templates, default parameters, model, variables, content hash and labels, and the
    /// prompt's audit history (every push and label move: who, when, from which version to which)
    ///
    /// NAME alone shows the newest version; NAME@production (any label) shows what requests naming
    /// `NAME@production` get now; NAME@3 shows version 3. Exits 1 when the prompt, label or version is unknown.
    Show {
        /// NAME, NAME@LABEL, NAME@VERSION or NAME@latest
        #[arg(value_name = "NAME[@REF]")]
        reference: String,
        /// Audit entries shown, newest first
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        history: u32,
    },
    /// Add a version of NAME from a TOML or JSON file (the next number; the prompt is created by its first push)
    ///
    /// The file: `messages = [{role, content}]` (1 to 32; roles system, developer, user, assistant; each
    /// content a Jinja template such as "Hello {{ customer }}"), optional `model` (the route used when a
    /// request names none) and optional `[parameters]` (defaults such as temperature or max_tokens, applied
    /// when a request does not set them). A file ending in .json, or starting with `{`, is read as JSON.
    /// Content identical to the newest version adds no version (exit 0, "unchanged"). Exits 1 when llmopsd
    /// refuses the version (a template that does not compile, a bound passed), naming why.
    Push {
        /// The prompt's name: 1 to 64 bytes of letters, digits, `_`, `.` and `-`
        name: String,
        /// The TOML or JSON file holding the version
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Who pushes, for the audit [default: $USER]
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Point LABEL (e.g. production) at VERSION of NAME; the next request naming NAME@LABEL gets it
    ///
    /// Creates the label or moves it; either way the audit records who moved it, when, and from which version.
    ///
    /// With --gate DATASET, the dataset is first run with NAME@VERSION (its route and evaluators, compared
    /// with the newest run of the version LABEL points at now, when there is one) and the label moves only
    /// when that run PASSED; otherwise it exits 100 and nothing moves, unless --force (the audit keeps the
    /// gate run and that it was forced). Exits 1 when the gate could not run.
    Label {
        name: String,
        version: u32,
        /// 1 to 64 bytes of letters, digits, `_`, `.` and `-`; not all digits, not `latest`
        label: String,
        /// Who moves it, for the audit [default: $USER]
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
        /// Run this dataset with NAME@VERSION first and move the label only if it passes
        #[arg(long, value_name = "DATASET")]
        gate: Option<String>,
        /// Move the label even though the gate run failed (audited)
        #[arg(long, requires = "gate")]
        force: bool,
    },
    /// A unified diff of two versions of NAME (each a number, a label or `latest`)
    Diff {
        name: String,
        #[arg(value_name = "FROM")]
        from: String,
        #[arg(value_name = "TO")]
        to: String,
    },
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

    #[test]
    fn prompts_subcommands_parse() {
        let cli = parse(&["prompts", "push", "support", "--file", "p.toml", "--by", "ci"]).expect("parses");
        assert!(
            matches!(&cli.command, Command::Prompts { command: PromptsCommand::Push { name, by: Some(by), .. } }
                if name == "support" && by == "ci"),
            "{cli:?}"
        );
        assert!(parse(&["prompts", "push", "support"]).is_err(), "the file is required");
        let cli = parse(&["prompts", "label", "support", "2", "production"]).expect("parses");
        assert!(matches!(&cli.command, Command::Prompts { command: PromptsCommand::Label { version: 2, .. } }));
        assert!(parse(&["prompts", "label", "support", "two", "production"]).is_err());
        let cli = parse(&["prompts", "show", "support@production", "--json"]).expect("parses");
        assert!(matches!(&cli.command, Command::Prompts { command: PromptsCommand::Show { history: 20, .. } }));
        assert!(parse(&["prompts", "show", "support", "--history", "0"]).is_err());
        assert!(matches!(parse(&["prompts", "diff", "s", "1", "2"]).expect("parses").command, Command::Prompts { .. }));
        assert!(matches!(parse(&["prompts", "list"]).expect("parses").command, Command::Prompts { .. }));
    }
}
