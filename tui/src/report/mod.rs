//! Readable multi-section views: `llmopsctl status`, `llmopsctl engines`, `llmopsctl trace ID`,
//! `llmopsctl gpus`, `llmopsctl metrics`, `llmopsctl keys`, `llmopsctl budgets` and `llmopsctl alerts`.
use std::fmt::Display;

mod alerts;
mod budgets;
mod cache;
mod engines;
mod gpus;
mod keys;
mod metrics;
mod status;
mod trace;

pub use alerts::{
    alert_watch_header, alert_watch_line, compact_number, evidence_summary, render_acknowledged, render_alert,
    render_alerts, short_alert_id, webhooks_summary, NO_ALERTS,
};
pub use budgets::{amount, budget_watch_header, budget_watch_lines, count, dollars, render_budgets, NO_BUDGETS};
pub use cache::{render_cache_cleared, render_cache_stats, NO_CACHED_ROUTES};
pub use engines::render_engines;
pub use gpus::{gpu_watch_header, gpu_watch_lines, render_gpus};
pub use keys::{render_created_key, render_keys, render_revoked_key};
pub use metrics::render_request_metrics;
pub use status::{format_bytes, render_status};
pub use trace::render_trace;

/// Width of the label column, fitting the longest label ("retention deleted").
const LABEL_WIDTH: usize = 18;

/// A report being written: labelled fields, titled sections and raw blocks.
#[derive(Debug, Default)]
struct Report {
    text: String,
}

impl Report {
    fn field(&mut self, label: &str, value: impl Display) {
        self.text.push_str(&format!("{label:<LABEL_WIDTH$}{value}\n"));
    }

    /// A blank line, then the title.
    fn section(&mut self, title: &str) {
        self.text.push_str(&format!("\n{title}\n"));
    }

    /// Text as is, ending in a newline.
    fn block(&mut self, text: &str) {
        self.text.push_str(text);
        if !text.ends_with('\n') {
            self.text.push('\n');
        }
    }
}
