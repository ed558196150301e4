//! `llmops-top`: a live terminal console for one llmopsd or a fleet of them (see `llmops-top --help`).
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use llmops_tui::top::cli::Cli;
use llmops_tui::top::run;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Usage problems exit like clap's own errors (status 2) before the terminal is touched.
    let auth = match cli.auth() {
        Ok(auth) => auth,
        Err(err) => Cli::command().error(ErrorKind::InvalidValue, format!("--token: {err}")).exit(),
    };
    let tls = match llmops_tui::tls::ClientTls::load(&cli.tls) {
        Ok(tls) => tls,
        Err(err) => Cli::command().error(ErrorKind::InvalidValue, err).exit(),
    };
    // One thread is plenty: the work is waiting on sockets and the terminal.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("llmops-top: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run::run(cli.targets(), auth, tls, cli.look()))
}
