//! Plain-text tables: a small aligned-column renderer and the one-row-per-trace layout shared by
//! `traces` (aligned over all rows) and `watch` (fixed widths, since rows arrive one at a time).
use chrono::{DateTime, TimeZone};
use llmops_proto::v1::{Trace, TraceStatus};

use crate::names::trace_status_name;
use crate::text::{dash_if_empty, error_text, format_ms, http_status_text, one_line, optional_ms, truncate, UNSET};
use crate::when::short_time;

const COLUMN_GAP: &str = "  ";
const ERROR_MAX_CHARS: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub align: Align,
    /// Width used when rows are printed one at a time (`watch`); longer cells push the line right.
    pub stream_width: usize,
}

impl Column {
    /// A column for whole tables only (no stream width).
    pub const fn left(title: &'static str) -> Self {
        Self { title, align: Align::Left, stream_width: 0 }
    }

    pub const fn right(title: &'static str) -> Self {
        Self { title, align: Align::Right, stream_width: 0 }
    }

    /// The same column with a width for rows printed one at a time.
    pub const fn streamed(self, stream_width: usize) -> Self {
        Self { stream_width, ..self }
    }
}

/// The `traces` / `watch` columns, in order.
pub const TRACE_COLUMNS: [Column; 11] = [
    Column::left("TIME").streamed(8),
    Column::left("ID").streamed(36),
    Column::left("ROUTE").streamed(14),
    Column::left("MODEL").streamed(20),
    Column::left("STATUS").streamed(9),
    Column::right("HTTP").streamed(4),
    Column::right("TTFT ms").streamed(7),
    Column::right("LAT ms").streamed(7),
    Column::right("IN").streamed(6),
    Column::right("OUT").streamed(6),
    Column::left("ERROR"),
];

/// Rows of cells rendered with every column as wide as its widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[Column]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The header line and one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.title.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let titles: Vec<String> = self.columns.iter().map(|c| c.title.to_owned()).collect();
        let mut out = join_cells(&self.columns, &widths, &titles);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&join_cells(&self.columns, &widths, row));
            out.push('\n');
        }
        if self.rows.is_empty() {
            // A bare header reads like a broken command; say there is nothing.
            out.push_str("(none)\n");
        }
        out
    }
}

/// Cells padded to `widths` and separated by a gap; trailing spaces trimmed.
pub fn join_cells(columns: &[Column], widths: &[usize], cells: &[String]) -> String {
    let mut line = String::new();
    for (index, ((column, width), cell)) in columns.iter().zip(widths).zip(cells).enumerate() {
        if index > 0 {
            line.push_str(COLUMN_GAP);
        }
        let padding = " ".repeat(width.saturating_sub(cell.chars().count()));
        match column.align {
            Align::Left => {
                line.push_str(cell);
                line.push_str(&padding);
            }
            Align::Right => {
                line.push_str(&padding);
                line.push_str(cell);
            }
        }
    }
    line.trim_end().to_owned()
}

/// One trace as `TRACE_COLUMNS` cells; `UNSET` marks what is not known (yet).
pub fn trace_cells<Tz: TimeZone>(trace: &Trace, now: &DateTime<Tz>) -> Vec<String>
where
    Tz::Offset: std::fmt::Display,
{
    let model = if trace.model_served.is_empty() { &trace.model_requested } else { &trace.model_served };
    // An in-flight trace has no outcome yet: zeros there would read as measurements.
    let finished = trace.status != TraceStatus::InFlight as i32;
    let tokens = |count: u64| {
        let marker = if trace.tokens_estimated { "~" } else { "" };
        format!("{count}{marker}")
    };
    let known = |value: String| if finished { value } else { UNSET.to_owned() };
    vec![
        short_time(trace.started_at_unix_ms, now),
        dash_if_empty(&trace.id),
        dash_if_empty(&trace.route),
        dash_if_empty(model),
        trace_status_name(trace.status).to_owned(),
        known(http_status_text(trace.http_status)),
        optional_ms(trace.ttft_ms),
        known(format_ms(trace.latency_ms)),
        known(tokens(trace.input_tokens)),
        known(tokens(trace.output_tokens)),
        truncate(&one_line(&error_text(trace)), ERROR_MAX_CHARS),
    ]
}

/// The `traces` table.
pub fn traces_table<Tz: TimeZone>(traces: &[Trace], now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut table = Table::new(&TRACE_COLUMNS);
    for trace in traces {
        table.push(trace_cells(trace, now));
    }
    table.render()
}

/// Header for `watch`: an EVENT column, then the trace columns at their stream widths.
pub fn stream_header() -> String {
    let titles: Vec<String> = TRACE_COLUMNS.iter().map(|c| c.title.to_owned()).collect();
    format!("{:<8}{COLUMN_GAP}{}", "EVENT", join_stream_cells(&titles))
}

/// One `watch` line: `STARTED` or `FINISHED`, then the trace's cells.
pub fn stream_line<Tz: TimeZone>(event_name: &str, trace: &Trace, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    format!("{event_name:<8}{COLUMN_GAP}{}", join_stream_cells(&trace_cells(trace, now)))
}

fn join_stream_cells(cells: &[String]) -> String {
    let widths: Vec<usize> = TRACE_COLUMNS.iter().map(|c| c.stream_width).collect();
    join_cells(&TRACE_COLUMNS, &widths, cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 29, 18, 0, 0).single().expect("valid date")
    }

    fn finished_trace() -> Trace {
        Trace {
            id: "t-1".into(),
            started_at_unix_ms: 1_717_000_000_123, // 2024-05-29 16:26:40 UTC
            route: "small".into(),
            model_requested: "small".into(),
            model_served: "qwen2.5:0.5b".into(),
            status: TraceStatus::Error as i32,
            http_status: 502,
            ttft_ms: Some(120.4),
            latency_ms: 850.6,
            input_tokens: 12,
            output_tokens: 3,
            tokens_estimated: true,
            error_type: "upstream".into(),
            error_message: "engine said\nno".into(),
            ..Trace::default()
        }
    }

    #[test]
    fn trace_row_has_every_column() {
        let cells = trace_cells(&finished_trace(), &now());
        assert_eq!(
            cells,
            [
                "16:26:40",
                "t-1",
                "small",
                "qwen2.5:0.5b",
                "error",
                "502",
                "120",
                "851",
                "12~",
                "3~",
                "upstream: engine said no"
            ]
        );
    }

    #[test]
    fn in_flight_trace_shows_dashes_and_requested_model() {
        let trace = Trace {
            model_served: String::new(),
            status: TraceStatus::InFlight as i32,
            ttft_ms: None,
            error_type: String::new(),
            error_message: String::new(),
            ..finished_trace()
        };
        let cells = trace_cells(&trace, &now());
        assert_eq!(cells[3..], ["small", "in_flight", "-", "-", "-", "-", "-", ""]);
    }

    #[test]
    fn table_aligns_columns_and_trims_line_ends() {
        let columns = [Column::left("NAME"), Column::right("N"), Column::left("NOTE")];
        let mut table = Table::new(&columns);
        table.push(vec!["alpha".into(), "7".into(), String::new()]);
        table.push(vec!["b".into(), "1234".into(), "x".into()]);
        assert_eq!(table.render(), "NAME      N  NOTE\nalpha     7\nb      1234  x\n");
    }

    #[test]
    fn stream_line_lines_up_with_its_header() {
        let header = stream_header();
        let line = stream_line("FINISHED", &finished_trace(), &now());
        assert!(line.starts_with("FINISHED  16:26:40  t-1"), "{line}");
        assert_eq!(header.find("HTTP").map(|i| i + 4), line.find("502").map(|i| i + 3));
    }
}
