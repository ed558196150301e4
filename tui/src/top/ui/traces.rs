//! The traces view: a live table of recent requests, filtered and sorted by `tail`. Only the rows on screen
//! get cells, so a full 10,000-trace tail draws as fast as a short one.
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Cell;
use ratatui::Frame;

use super::format::{count, dollars, millis, opt_millis};
use super::overview::missing;
use super::theme::Theme;
use super::widgets::{header_cell, message, panel, right, Windowed};
use super::{Ctx, ListHit};
use crate::text::UNSET;
use crate::top::state::{SortKey, TraceTail};
use crate::top::tail::{self, served_or_requested, status_name};
use llmops_proto::v1 as pb;

/// One column: what it shows, its title, its width (`None` shares the remaining room) and the sort key it
/// stands for.
struct Column {
    title: &'static str,
    width: Option<u16>,
    sort: SortKey,
}

const fn col(title: &'static str, width: Option<u16>, sort: SortKey) -> Column {
    Column { title, width, sort }
}

const COLUMNS: [Column; 9] = [
    col("time", Some(8), SortKey::Time),
    col("route", None, SortKey::Route),
    col("model", None, SortKey::Model),
    col("status", Some(9), SortKey::Status),
    col("TTFT", Some(8), SortKey::Ttft),
    col("latency", Some(9), SortKey::Latency),
    col("tok in", Some(7), SortKey::TokensIn),
    col("out", Some(6), SortKey::TokensOut),
    col("cost", Some(9), SortKey::Cost),
];
/// Dropped in this order when the terminal is narrow; time, route, status and latency always stay.
const DROP_ORDER: [SortKey; 5] = [SortKey::Cost, SortKey::TokensIn, SortKey::Model, SortKey::Ttft, SortKey::TokensOut];
/// Room a shared-width column needs to be useful.
const FLEX_MIN: u16 = 12;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> Option<ListHit> {
    let (app, theme) = (ctx.app, ctx.theme);
    let host = app.host();
    let rows = tail::visible(&host.traces, &app.traces);
    let block = panel(&theme, title(&host.traces, rows.len(), ctx));
    if rows.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text = if !app.traces.filter.is_empty() && !host.traces.finished.is_empty() {
            format!("no trace matches the filter \"{}\"", app.traces.filter)
        } else if host.unavailable.contains_key("traces") {
            missing(host, "traces", &theme)
        } else {
            format!("no traces yet {} send a request to the daemon's OpenAI endpoint", theme.dash())
        };
        message(frame, inner, &theme, text);
        return None;
    }
    let shown = columns_for(area.width.saturating_sub(2));
    let arrow = if app.traces.descending { theme.down() } else { theme.up() };
    let table = Windowed {
        header: shown
            .iter()
            .map(|c| {
                let cell = header_cell(c.title, (c.sort == app.traces.sort).then_some(arrow));
                if c.width.is_some() && c.sort != SortKey::Time && c.sort != SortKey::Status {
                    // Numeric columns are right-aligned; their titles follow.
                    let text = format!("{}{}", c.title, if c.sort == app.traces.sort { arrow } else { "" });
                    right(text, theme.table_header())
                } else {
                    cell
                }
            })
            .collect(),
        widths: shown.iter().map(|c| c.width.map_or(Constraint::Fill(1), Constraint::Length)).collect(),
        total: rows.len(),
        selected: Some(app.traces.selected.min(rows.len() - 1)),
    };
    let hit = table.render(frame, area, block, &theme, |index| {
        rows.get(index).map_or_else(Vec::new, |trace| shown.iter().map(|c| cell(trace, c.sort, ctx)).collect())
    });
    Some(hit)
}

/// " Traces LIVE │ 20 rows │ filter route:chat │ missed 3 ".
fn title(tail: &TraceTail, rows: usize, ctx: Ctx<'_>) -> Line<'static> {
    let (ui, theme) = (&ctx.app.traces, ctx.theme);
    let sep = || Span::styled(theme.sep(), theme.dim());
    let mut spans = vec![Span::styled(" Traces ", theme.title())];
    spans.push(if ui.follow { Span::styled("LIVE", theme.ok()) } else { Span::styled("PAUSED", theme.warn()) });
    spans.extend([sep(), Span::raw(format!("{rows} rows"))]);
    if !tail.in_flight.is_empty() {
        spans.extend([sep(), Span::styled(format!("{} running", tail.in_flight.len()), theme.accent())]);
    }
    if !ui.filter.is_empty() {
        spans.extend([sep(), Span::raw(format!("filter {}", ui.filter))]);
    }
    if tail.missed > 0 {
        spans.extend([sep(), Span::styled(format!("missed {}", tail.missed), theme.error())]);
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// The columns that fit in `width`, dropping the least needed first.
fn columns_for(width: u16) -> Vec<&'static Column> {
    let mut shown: Vec<&Column> = COLUMNS.iter().collect();
    let needed = |shown: &[&Column]| -> u16 {
        let cells: u16 = shown.iter().map(|c| c.width.unwrap_or(FLEX_MIN)).sum();
        cells + u16::try_from(shown.len()).unwrap_or(0).saturating_sub(1)
    };
    for drop in DROP_ORDER {
        if needed(&shown) <= width {
            break;
        }
        shown.retain(|c| c.sort != drop);
    }
    shown
}

fn cell(trace: &pb::Trace, column: SortKey, ctx: Ctx<'_>) -> Cell<'static> {
    let theme: Theme = ctx.theme;
    let plain = theme.plain();
    match column {
        SortKey::Time => Cell::from(ctx.zone.clock(trace.started_at_unix_ms)),
        SortKey::Route => Cell::from(trace.route.clone()),
        SortKey::Model => Cell::from(served_or_requested(trace).to_owned()),
        SortKey::Status => {
            let name = status_name(trace.status);
            Cell::from(Span::styled(name, theme.status(name)))
        }
        SortKey::Ttft => right(opt_millis(trace.ttft_ms), plain),
        SortKey::Latency => {
            let running = trace.status == pb::TraceStatus::InFlight as i32;
            right(if running { UNSET.to_owned() } else { millis(trace.latency_ms) }, plain)
        }
        SortKey::TokensIn => right(count(trace.input_tokens as f64), plain),
        SortKey::TokensOut if trace.status == pb::TraceStatus::InFlight as i32 => right(UNSET.to_owned(), plain),
        SortKey::TokensOut => right(count(trace.output_tokens as f64), plain),
        SortKey::Cost => right(trace.cost_usd.map_or_else(|| UNSET.to_owned(), dollars), plain),
    }
}
