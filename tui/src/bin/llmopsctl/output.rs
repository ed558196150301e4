//! How every `llmopsctl` command prints: one reply as pretty JSON or as text, and a watch stream as one JSON
//! line or some text lines per update.
use std::io::{self, Write};

use llmops_proto::v1::{AlertEvent, BudgetUpdate, TelemetryUpdate, TraceEvent};
use llmops_tui::json;
use serde_json::Value;
use tonic::Streaming;

use super::Failure;

pub fn print_json(out: &mut impl Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// One reply: pretty JSON for scripts (`--json`), else the text for people. Only the one asked for is built.
pub fn show(
    out: &mut impl Write,
    as_json: bool,
    to_json: impl FnOnce() -> Value,
    to_text: impl FnOnce() -> String,
) -> io::Result<()> {
    if as_json {
        print_json(out, &to_json())
    } else {
        write!(out, "{}", to_text())
    }
}

/// An update of a watch stream.
pub trait Update {
    fn to_json(&self) -> Value;

    /// Updates this viewer missed: llmopsd ends the stream after the update that says so.
    fn missed(&self) -> u64;
}

impl Update for TraceEvent {
    fn to_json(&self) -> Value {
        json::event_to_json(self)
    }

    /// An older llmopsd tells a slow viewer with the status that ends the stream instead (`WatchEnded`).
    fn missed(&self) -> u64 {
        self.missed
    }
}

impl Update for TelemetryUpdate {
    fn to_json(&self) -> Value {
        json::telemetry_update_to_json(self)
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

impl Update for BudgetUpdate {
    fn to_json(&self) -> Value {
        json::budget_update_to_json(self)
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

impl Update for AlertEvent {
    fn to_json(&self) -> Value {
        json::alert_event_to_json(self)
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

/// Prints a watch stream until llmopsd ends it: for people, `header` and then the lines `to_lines` makes of
/// each update; for scripts, each update as one line of JSON. stdout is line-buffered, so each update shows as
/// soon as it arrives. A viewer llmopsd dropped for reading too slowly fails with what it missed.
pub async fn watch<U: Update>(
    out: &mut impl Write,
    as_json: bool,
    updates: &mut Streaming<U>,
    header: &str,
    mut to_lines: impl FnMut(&U) -> Vec<String>,
) -> Result<(), Failure> {
    if !as_json {
        writeln!(out, "{header}")?;
    }
    loop {
        let update = match updates.message().await {
            Ok(Some(update)) => update,
            Ok(None) => return Ok(()),
            Err(status) => return Err(Failure::WatchEnded(Box::new(status))),
        };
        if as_json {
            serde_json::to_writer(&mut *out, &update.to_json()).map_err(io::Error::from)?;
            writeln!(out)?;
        } else {
            for line in to_lines(&update) {
                writeln!(out, "{line}")?;
            }
        }
        if update.missed() > 0 {
            out.flush()?;
            return Err(Failure::TooSlow(update.missed()));
        }
    }
}
