//! The evals view: evaluation runs newest first; `Enter` opens one (its verdict, evaluators and items), and
//! `Enter` on an item shows its answer against the reference (`eval_item`). Everything the daemon sends is
//! untrusted: control characters are shown escaped (`safe_output::escape`) and long text is cut.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Wrap};
use ratatui::Frame;

use super::eval_item;
use super::format::{ago, dollars, span};
use super::overview::missing;
use super::theme::Theme;
use super::widgets::{message, panel, right, Windowed};
use super::{Ctx, ListHit};
use crate::safe_output::escape;
use crate::text::{dash_if_empty, one_line, UNSET};
use crate::top::state::EvalRunUi;
use llmops_proto::v1 as pb;

/// Characters kept of a one-line field (a verdict, an input preview, an error).
pub const LINE_CHARS: usize = 300;
/// Characters kept of an answer or a judge's reasoning.
const BODY_CHARS: usize = 20_000;
/// Evaluator lines in a run's summary; more are counted on one line.
const EVALUATOR_LINES: usize = 8;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> Option<ListHit> {
    match &ctx.app.evals.open {
        None => runs(frame, area, ctx),
        Some(open) => match open.open_item() {
            Some(item) => {
                eval_item::draw(frame, area, open, item, ctx);
                None
            }
            None => run(frame, area, open, ctx),
        },
    }
}

/// Daemon text for one line: control characters escaped, whitespace runs as one space, at most `max`
/// characters.
pub fn safe_line(text: &str, max: usize, theme: &Theme) -> String {
    let cut: String = text.chars().take(max.saturating_add(1)).collect();
    theme.cut(&one_line(&escape(&cut)), max)
}

/// Daemon text for a body: control characters but newlines escaped, tabs as spaces, at most `BODY_CHARS`.
pub fn safe_body(text: &str, theme: &Theme) -> String {
    let mut cut: String = text.chars().take(BODY_CHARS).collect();
    if cut.len() < text.len() {
        cut.push_str(theme.ellipsis());
    }
    escape(&cut).replace('\t', "    ")
}

/// "PASSED", "FAILED", "ERROR", "CANCELLED", "RUNNING".
pub fn status_word(status: i32) -> &'static str {
    match pb::EvalStatus::try_from(status) {
        Ok(pb::EvalStatus::Passed) => "PASSED",
        Ok(pb::EvalStatus::Failed) => "FAILED",
        Ok(pb::EvalStatus::Error) => "ERROR",
        Ok(pb::EvalStatus::Cancelled) => "CANCELLED",
        Ok(pb::EvalStatus::Running) => "RUNNING",
        _ => UNSET,
    }
}

pub fn status_style(word: &str, theme: &Theme) -> Style {
    match word {
        "PASSED" | "PASS" | "pass" | "WIN" => theme.ok(),
        "FAILED" | "FAIL" | "ERROR" | "LOSS" => theme.error(),
        "RUNNING" => theme.accent(),
        "TIE" => theme.warn(),
        _ => theme.dim(),
    }
}

/// "85%": the items whose every evaluator passed, of all.
fn percent_passed(run: &pb::EvalRun) -> String {
    if run.items_total == 0 {
        return UNSET.to_owned();
    }
    format!("{:.0}%", f64::from(run.items_passed) * 100.0 / f64::from(run.items_total))
}

/// Wins, ties and losses against the baseline or the against route, "-" without a comparison.
fn wtl(run: &pb::EvalRun) -> String {
    run.comparison.as_ref().map_or_else(|| UNSET.to_owned(), |c| format!("{}/{}/{}", c.wins, c.ties, c.losses))
}

fn runs(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> Option<ListHit> {
    let (app, theme) = (ctx.app, ctx.theme);
    let evals = &app.evals;
    let sep = || Span::styled(theme.sep(), theme.dim());
    let mut title = vec![Span::styled(" Evals", theme.title())];
    if let Some(runs) = &evals.runs {
        title.extend([sep(), Span::raw(format!("{} runs", runs.len()))]);
    }
    if let Some(error) = &evals.error {
        title.extend([sep(), Span::styled(safe_line(error, 80, &theme), theme.error())]);
    }
    title.push(Span::raw(" "));
    let block = panel(&theme, Line::from(title));
    let runs = match &evals.runs {
        Some(runs) if !runs.is_empty() => runs,
        listed => {
            let inner = block.inner(area);
            frame.render_widget(block, area);
            let text = match (listed, &evals.error) {
                (Some(_), _) => {
                    format!("no eval runs yet {} start one with: llmopsctl eval run DATASET", theme.dash())
                }
                (None, Some(error)) => format!("cannot list eval runs: {}", safe_line(error, LINE_CHARS, &theme)),
                (None, None) => missing(app.host(), "evals", &theme),
            };
            message(frame, inner, &theme, text);
            return None;
        }
    };
    // Narrow terminals drop the prompt, then the comparison.
    let width = area.width.saturating_sub(4);
    let (with_prompt, with_wtl) = (width >= 110, width >= 90);
    let mut header = vec![Cell::from("run"), Cell::from("dataset"), Cell::from("route")];
    let mut widths = vec![Constraint::Length(9), Constraint::Fill(1), Constraint::Fill(1)];
    if with_prompt {
        header.push(Cell::from("prompt"));
        widths.push(Constraint::Fill(1));
    }
    header.extend([Cell::from("status"), right("passed".into(), theme.table_header())]);
    widths.extend([Constraint::Length(9), Constraint::Length(14)]);
    if with_wtl {
        header.push(right("w/t/l".into(), theme.table_header()));
        widths.push(Constraint::Length(11));
    }
    header.push(right("age".into(), theme.table_header()));
    widths.push(Constraint::Length(8));
    let table = Windowed { header, widths, total: runs.len(), selected: Some(evals.selected.min(runs.len() - 1)) };
    let hit = table.render(frame, area, block, &theme, |index| {
        let Some(run) = runs.get(index) else { return Vec::new() };
        let status = status_word(run.status);
        let mut cells = vec![
            Cell::from(safe_line(&run.id, 9, &theme)),
            Cell::from(safe_line(&run.dataset, 64, &theme)),
            Cell::from(safe_line(&run.route, 64, &theme)),
        ];
        if with_prompt {
            cells.push(Cell::from(dash_if_empty(&safe_line(&run.prompt, 64, &theme))));
        }
        cells.extend([
            Cell::from(Span::styled(status, status_style(status, &theme))),
            right(format!("{}/{} {:>4}", run.items_passed, run.items_total, percent_passed(run)), theme.plain()),
        ]);
        if with_wtl {
            cells.push(right(wtl(run), theme.plain()));
        }
        let age =
            if run.started_at_unix_ms > 0 { span(app.now_unix_ms - run.started_at_unix_ms) } else { UNSET.into() };
        cells.push(right(age, theme.dim()));
        cells
    });
    Some(hit)
}

fn run(frame: &mut Frame<'_>, area: Rect, open: &EvalRunUi, ctx: Ctx<'_>) -> Option<ListHit> {
    let theme = ctx.theme;
    let title = format!(" Eval {} ", safe_line(&open.run_id, 40, &theme));
    let detail = match &open.detail {
        Some(Ok(detail)) => detail,
        pending => {
            let block = panel(&theme, title);
            let inner = block.inner(area);
            frame.render_widget(block, area);
            match pending {
                Some(Err(error)) => {
                    let text = format!("could not load the run: {}", safe_line(error, LINE_CHARS, &theme));
                    let paragraph = Paragraph::new(Line::styled(text, theme.error())).wrap(Wrap { trim: true });
                    frame.render_widget(paragraph, inner);
                }
                _ => message(frame, inner, &theme, format!("loading{}", theme.ellipsis())),
            }
            return None;
        }
    };
    let summary = detail.run.as_ref().map_or_else(Vec::new, |run| summary_lines(run, ctx));
    let height = u16::try_from(summary.len() + 2).unwrap_or(u16::MAX).min(area.height / 2);
    let [top, rest] = Layout::vertical([Constraint::Length(height), Constraint::Min(3)]).areas(area);
    let block = panel(&theme, title);
    let inner = block.inner(top);
    frame.render_widget(block, top);
    frame.render_widget(Paragraph::new(summary), inner);

    let items = &detail.items;
    let title = if detail.next_item_offset > 0 {
        let id = safe_line(&open.run_id, 40, &theme);
        format!(" Items: the first {} {} llmopsctl eval show {id} lists all ", items.len(), theme.dash())
    } else {
        format!(" Items ({}) ", items.len())
    };
    let block = panel(&theme, title);
    if items.is_empty() {
        let inner = block.inner(rest);
        frame.render_widget(block, rest);
        message(frame, inner, &theme, "no item results yet");
        return None;
    }
    let table = Windowed {
        header: vec![Cell::from("item"), Cell::from("result"), Cell::from("input"), Cell::from("failed evaluators")],
        widths: vec![Constraint::Length(6), Constraint::Length(6), Constraint::Fill(2), Constraint::Fill(1)],
        total: items.len(),
        selected: Some(open.selected.min(items.len() - 1)),
    };
    let hit = table.render(frame, rest, block, &theme, |index| {
        let Some(item) = items.get(index) else { return Vec::new() };
        let result = item_result(item);
        let failed: Vec<&str> = item.results.iter().filter(|r| !r.passed).map(|r| r.name.as_str()).collect();
        vec![
            Cell::from(safe_line(&item.item_id, 6, &theme)),
            Cell::from(Span::styled(result, status_style(result, &theme))),
            Cell::from(safe_line(&item.input_preview, LINE_CHARS, &theme)),
            Cell::from(Span::styled(safe_line(&failed.join(", "), LINE_CHARS, &theme), theme.error())),
        ]
    });
    Some(hit)
}

/// "PASS", "FAIL", or "ERROR" when the request failed.
pub fn item_result(item: &pb::EvalItemResult) -> &'static str {
    if !item.error.is_empty() {
        "ERROR"
    } else if item.passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The verdict, what ran where, how it went, the comparison and the evaluators' pass rates.
fn summary_lines(run: &pb::EvalRun, ctx: Ctx<'_>) -> Vec<Line<'static>> {
    let theme = ctx.theme;
    let sep = || Span::styled(theme.sep(), theme.dim());
    let dim = |text: &str| Span::styled(text.to_owned(), theme.dim());
    let field = |text: &str| Span::raw(safe_line(text, 64, &theme));
    let status = status_word(run.status);
    let mut lines = vec![Line::from(vec![
        Span::styled(status, status_style(status, &theme).add_modifier(ratatui::style::Modifier::BOLD)),
        Span::raw("  "),
        Span::raw(safe_line(&run.verdict, LINE_CHARS, &theme)),
    ])];
    let mut what = vec![dim("dataset "), field(&run.dataset), sep(), dim("route "), field(&run.route)];
    if !run.prompt.is_empty() {
        what.extend([sep(), dim("prompt "), field(&run.prompt)]);
    }
    if !run.baseline_run.is_empty() {
        what.extend([sep(), dim("baseline "), field(&run.baseline_run)]);
    }
    if !run.against_route.is_empty() {
        what.extend([sep(), dim("against "), field(&run.against_route)]);
    }
    lines.push(Line::from(what));
    let mut how = vec![
        Span::raw(format!("items {}/{} done", run.items_done, run.items_total)),
        sep(),
        Span::raw(format!("{} passed ({})", run.items_passed, percent_passed(run))),
    ];
    if run.items_errored > 0 {
        how.extend([sep(), Span::styled(format!("{} errored", run.items_errored), theme.error())]);
    }
    how.extend([sep(), Span::raw(format!("started {}", ctx.zone.date_time(run.started_at_unix_ms)))]);
    if run.finished_at_unix_ms >= run.started_at_unix_ms && run.started_at_unix_ms > 0 {
        how.push(Span::raw(format!(", took {}", span(run.finished_at_unix_ms - run.started_at_unix_ms))));
    } else {
        how.push(dim(&format!(" ({})", ago(ctx.app.now_unix_ms, run.started_at_unix_ms))));
    }
    if run.cost_usd > 0.0 {
        how.extend([sep(), Span::raw(dollars(run.cost_usd))]);
    }
    if !run.by.is_empty() {
        how.extend([sep(), dim("by "), field(&run.by)]);
    }
    lines.push(Line::from(how));
    if let Some(c) = &run.comparison {
        lines.push(Line::from(vec![
            dim("vs "),
            field(&c.baseline),
            Span::raw(format!(": {} paired", c.paired)),
            sep(),
            Span::raw(format!("w/t/l {}/{}/{}", c.wins, c.ties, c.losses)),
            sep(),
            Span::raw(format!("mean {:+.3} [{:+.3}, {:+.3}]", c.mean_difference, c.ci_low, c.ci_high)),
        ]));
    }
    let name_width = run.evaluators.iter().map(|e| e.name.chars().count()).max().unwrap_or(0).min(24);
    for evaluator in run.evaluators.iter().take(EVALUATOR_LINES) {
        let (word, style) = if evaluator.ok { ("pass", theme.ok()) } else { ("FAIL", theme.error()) };
        let name = safe_line(&evaluator.name, name_width, &theme);
        lines.push(Line::from(vec![
            Span::styled(format!(" {word} "), style),
            Span::styled(format!("{name:<name_width$} "), theme.bold()),
            dim(&format!("{:<14} ", safe_line(&evaluator.kind, 14, &theme))),
            Span::raw(format!(
                "{}/{} {:>4.0}% (min {:.0}%), mean score {:.2}",
                evaluator.passed,
                evaluator.scored,
                evaluator.pass_rate * 100.0,
                evaluator.threshold * 100.0,
                evaluator.mean_score
            )),
        ]));
    }
    if run.evaluators.len() > EVALUATOR_LINES {
        lines.push(dim(&format!(" and {} more evaluators", run.evaluators.len() - EVALUATOR_LINES)).into());
    }
    lines
}
