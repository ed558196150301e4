//! One eval item: the candidate's answer side by side with the against route's (or the baseline run's) answer,
//! else with the reference, as a word diff (deletions marked on the left, insertions on the right), then every
//! evaluator's verdict, score and reasoning, and the pairwise judge's. `↑`/`↓` scroll.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::diff::side_by_side;
use super::evals::{item_result, safe_body, safe_line, status_style, LINE_CHARS};
use super::format::{dollars, millis};
use super::theme::Theme;
use super::widgets::{message, panel, wrap};
use super::Ctx;
use crate::top::state::EvalRunUi;
use llmops_proto::v1 as pb;

pub fn draw(frame: &mut Frame<'_>, area: Rect, open: &EvalRunUi, item: &pb::EvalItemResult, ctx: Ctx<'_>) {
    let theme = ctx.theme;
    let run = match &open.detail {
        Some(Ok(detail)) => detail.run.as_ref(),
        _ => None,
    };
    let summary = summary_lines(item, &theme);
    let height = u16::try_from(summary.len() + 2).unwrap_or(u16::MAX);
    let [top, rest] = Layout::vertical([Constraint::Length(height), Constraint::Min(3)]).areas(area);
    let title = format!(" {} item {} ", safe_line(&open.run_id, 40, &theme), safe_line(&item.item_id, 20, &theme));
    let block = panel(&theme, title);
    let inner = block.inner(top);
    frame.render_widget(block, top);
    frame.render_widget(Paragraph::new(summary), inner);

    let results = result_lines(item, &theme);
    let results_rows = wrapped_rows(&results, rest.width.saturating_sub(2));
    let results_height = u16::try_from(results_rows + 2).unwrap_or(u16::MAX).min(rest.height * 2 / 5).max(3);
    let [panes, results_area] = Layout::vertical([Constraint::Min(3), Constraint::Length(results_height)]).areas(rest);
    let [left, right] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(panes);

    let (against, against_name) = if item.against_output.is_empty() {
        (&item.reference, "reference".to_owned())
    } else {
        let name = run.map_or("", |r| if r.against_route.is_empty() { &r.baseline_run } else { &r.against_route });
        (&item.against_output, format!("against {}", safe_line(name, 40, &theme)))
    };
    let candidate_name = format!("candidate {}", run.map_or_else(String::new, |r| safe_line(&r.route, 40, &theme)));
    let (output, against) = (safe_body(&item.output, &theme), safe_body(against, &theme));
    let (old, new) = if against.is_empty() || output.is_empty() {
        (text_lines(&against), text_lines(&output))
    } else {
        side_by_side(&against, &output, &theme)
    };
    let old_note = against.is_empty().then(|| format!("no {against_name} to compare with"));
    pane(frame, left, format!(" {} ", against_name.trim_end()), old, old_note, open.scroll, &theme);
    let new_note = output.is_empty().then(|| "no answer".to_owned());
    pane(frame, right, format!(" {} ", candidate_name.trim_end()), new, new_note, open.scroll, &theme);

    let block = panel(&theme, " Evaluators ");
    let inner = block.inner(results_area);
    frame.render_widget(block, results_area);
    let scroll = scroll_within(open.scroll, results_rows, inner.height);
    frame.render_widget(Paragraph::new(results).wrap(Wrap { trim: false }).scroll((scroll, 0)), inner);
}

/// A titled pane with `lines` wrapped and scrolled by `scroll` (as far as they go), or a note when empty.
fn pane(
    frame: &mut Frame<'_>,
    area: Rect,
    title: String,
    lines: Vec<Line<'static>>,
    note: Option<String>,
    scroll: u16,
    theme: &Theme,
) {
    let block = panel(theme, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(note) = note {
        return message(frame, inner, theme, note);
    }
    let scroll = scroll_within(scroll, wrapped_rows(&lines, inner.width), inner.height);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((scroll, 0)), inner);
}

/// The scroll offset, stopping with the last of `rows` at the bottom of `height`.
fn scroll_within(scroll: u16, rows: usize, height: u16) -> u16 {
    let most = rows.saturating_sub(usize::from(height));
    u16::try_from(usize::from(scroll).min(most)).unwrap_or(u16::MAX)
}

/// About how many rows `lines` take wrapped at `width`.
fn wrapped_rows(lines: &[Line<'_>], width: u16) -> usize {
    let width = usize::from(width).max(1);
    lines.iter().map(|line| wrap(&line.to_string(), width).len()).sum()
}

fn text_lines(text: &str) -> Vec<Line<'static>> {
    text.split('\n').map(|line| Line::raw(line.to_owned())).collect()
}

/// "FAIL │ 840 ms │ $0.0004 │ trace …", then the input and the request's error.
fn summary_lines(item: &pb::EvalItemResult, theme: &Theme) -> Vec<Line<'static>> {
    let sep = || Span::styled(theme.sep(), theme.dim());
    let dim = |text: &str| Span::styled(text.to_owned(), theme.dim());
    let result = item_result(item);
    let mut first = vec![Span::styled(result, status_style(result, theme)), sep(), Span::raw(millis(item.latency_ms))];
    if item.cost_usd >= 0.0 {
        first.extend([sep(), Span::raw(dollars(item.cost_usd))]);
    }
    if !item.trace_id.is_empty() {
        first.extend([sep(), dim("trace "), Span::raw(safe_line(&item.trace_id, 40, theme))]);
    }
    let mut lines = vec![Line::from(first)];
    if !item.against_trace_id.is_empty() {
        let against = safe_line(&item.against_trace_id, 40, theme);
        lines.push(Line::from(vec![dim("against trace "), Span::raw(against)]));
    }
    lines.push(Line::from(vec![dim("input "), Span::raw(safe_line(&item.input_preview, LINE_CHARS, theme))]));
    if !item.error.is_empty() {
        let error = safe_line(&item.error, LINE_CHARS, theme);
        lines.push(Line::from(vec![dim("error "), Span::styled(error, theme.error())]));
    }
    lines
}

/// One line per evaluator ("pass exact 1.00"), its reasoning after it, then the pairwise outcome.
fn result_lines(item: &pb::EvalItemResult, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for result in &item.results {
        let (word, style) = if result.passed { ("pass", theme.ok()) } else { ("FAIL", theme.error()) };
        let mut spans = vec![
            Span::styled(format!("{word} "), style),
            Span::styled(safe_line(&result.name, 40, theme), theme.bold()),
            Span::raw(format!(" score {:.2}", result.score)),
        ];
        if !result.reasoning.is_empty() {
            spans.push(Span::styled(format!(" {} ", theme.dash()), theme.dim()));
            spans.push(Span::raw(safe_line(&result.reasoning, 4 * LINE_CHARS, theme)));
        }
        lines.push(Line::from(spans));
    }
    let outcome = match pb::PairOutcome::try_from(item.pairwise) {
        Ok(pb::PairOutcome::Win) => Some("WIN"),
        Ok(pb::PairOutcome::Tie) => Some("TIE"),
        Ok(pb::PairOutcome::Loss) => Some("LOSS"),
        _ => None,
    };
    if let Some(outcome) = outcome {
        let mut spans =
            vec![Span::styled("pairwise ", theme.bold()), Span::styled(outcome, status_style(outcome, theme))];
        if !item.pairwise_reasoning.is_empty() {
            spans.push(Span::styled(format!(" {} ", theme.dash()), theme.dim()));
            spans.push(Span::raw(safe_line(&item.pairwise_reasoning, 4 * LINE_CHARS, theme)));
        }
        lines.push(Line::from(spans));
    }
    if lines.is_empty() {
        lines.push(Line::styled("no evaluator results", theme.dim()));
    }
    lines
}
