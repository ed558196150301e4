//! The replay view: a recorded answer played back at its original chunk timing; with a re-run, the original
//! and the new answer side by side, then the daemon's comparison and a word diff.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::detail::body_text;
use super::diff::word_diff;
use super::format::{bar, count, millis, signed_dollars, signed_millis};
use super::theme::Theme;
use super::widgets::{centered, message, panel, popup, wrap};
use super::Ctx;
use crate::text::{dash_if_empty, one_line, UNSET};
use crate::top::state::{Playback, ReRun, ReplayUi, RoutePicker};
use crate::top::tail::{served_or_requested, status_name};
use llmops_proto::v1 as pb;

const PROGRESS_CELLS: usize = 10;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let theme = ctx.theme;
    let Some(replay) = &ctx.app.replay else {
        return message(frame, area, &theme, "no replay: open a trace (Enter in traces) and press r");
    };
    let [top, rest] = Layout::vertical([Constraint::Length(4), Constraint::Min(0)]).areas(area);
    let block =
        panel(&theme, format!(" Replay of {} ", replay.original.id)).padding(ratatui::widgets::Padding::horizontal(1));
    let inner = block.inner(top);
    frame.render_widget(block, top);
    let lines = vec![summary(&replay.original, &theme), progress(&replay.playback, &theme)];
    frame.render_widget(Paragraph::new(lines), inner);

    match &replay.rerun {
        None => played(frame, rest, replay, &theme),
        Some(rerun) => side_by_side(frame, rest, replay, rerun, &theme),
    }
    if let Some(picker) = &replay.picker {
        route_picker(frame, area, picker, &theme);
    }
}

/// "chat → llama (vllm-a) │ ok │ 40 chunks │ in 512 out 128 tokens │ 2.1 s".
fn summary(trace: &pb::Trace, theme: &Theme) -> Line<'static> {
    let sep = || Span::styled(theme.sep(), theme.dim());
    let status = status_name(trace.status);
    Line::from(vec![
        Span::styled(trace.route.clone(), theme.bold()),
        Span::raw(format!(" {} {}", theme.arrow(), served_or_requested(trace))),
        Span::styled(format!(" ({})", dash_if_empty(&trace.engine)), theme.dim()),
        sep(),
        Span::styled(status, theme.status(status)),
        sep(),
        Span::raw(format!("{} chunks", trace.chunk_offsets_ms.len())),
        sep(),
        Span::raw(format!("in {} out {} tokens", trace.input_tokens, trace.output_tokens)),
        sep(),
        Span::raw(millis(trace.latency_ms)),
    ])
}

/// "▶ 1.0x  chunk 12/40  0.84 s / 2.10 s  [██████░░░░]".
fn progress(playback: &Playback, theme: &Theme) -> Line<'static> {
    let (icon, style) = if playback.paused { (theme.pause(), theme.warn()) } else { (theme.play(), theme.ok()) };
    let done =
        if playback.total_ms > 0.0 { Some((playback.position_ms / playback.total_ms).clamp(0.0, 1.0)) } else { None };
    Line::from(vec![
        Span::styled(format!("{icon} {}", speed(playback.speed)), style),
        Span::raw(format!(
            "  chunk {}/{}  {:.2} s / {:.2} s  ",
            playback.shown.min(playback.chunks.len()),
            playback.chunks.len(),
            playback.position_ms / 1000.0,
            playback.total_ms / 1000.0
        )),
        Span::styled(format!("[{}]", bar(theme, done, PROGRESS_CELLS)), theme.accent()),
    ])
}

/// "1.0x", "0.25x", "16.0x".
fn speed(speed: f64) -> String {
    if speed.fract() == 0.0 {
        format!("{speed:.1}x")
    } else {
        format!("{speed}x")
    }
}

/// The chunks played so far, wrapped and kept scrolled to the newest line.
fn played(frame: &mut Frame<'_>, area: Rect, replay: &ReplayUi, theme: &Theme) {
    let block = panel(theme, " Played ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if replay.playback.chunks.is_empty() {
        let text = match body_text("", replay.original.response_chars, &replay.original.response_sha256, theme) {
            Err(note) if note.starts_with("(privacy") => format!("nothing to play: {note}"),
            _ => "nothing to play: the trace recorded no streamed chunks".to_owned(),
        };
        return message(frame, inner, theme, text);
    }
    let shown = replay.playback.shown.min(replay.playback.chunks.len());
    let text: String = replay.playback.chunks[..shown].iter().map(|c| c.text.as_str()).collect();
    tail_text(frame, inner, &text, theme.plain());
}

/// The last lines of `text` that fit in `area`.
fn tail_text(frame: &mut Frame<'_>, area: Rect, text: &str, style: ratatui::style::Style) {
    let lines = wrap(text, usize::from(area.width));
    let skip = lines.len().saturating_sub(usize::from(area.height));
    let lines: Vec<Line<'_>> = lines.into_iter().skip(skip).map(|l| Line::styled(l, style)).collect();
    frame.render_widget(Paragraph::new(lines), area);
}

fn side_by_side(frame: &mut Frame<'_>, area: Rect, replay: &ReplayUi, rerun: &ReRun, theme: &Theme) {
    let comparison_height = if rerun.done.is_some() { area.height / 2 } else { 0 };
    let [panes, comparison_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(comparison_height)]).areas(area);
    let [left, right] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(panes);

    let original = &replay.original;
    let block = panel(theme, format!(" original: {} ", original.route));
    let inner = block.inner(left);
    frame.render_widget(block, left);
    match body_text(&original.response_text, original.response_chars, &original.response_sha256, theme) {
        Ok(text) => tail_text(frame, inner, text, theme.plain()),
        Err(note) => message(frame, inner, theme, note),
    }

    let state = match (&rerun.error, &rerun.done) {
        (Some(_), _) => Span::styled("failed", theme.error()),
        (None, Some(_)) => Span::styled("done", theme.ok()),
        (None, None) => Span::styled(format!("running{}", theme.ellipsis()), theme.accent()),
    };
    let title = Line::from(vec![
        Span::styled(format!(" re-run: {} ", rerun.route), theme.title()),
        state,
        Span::styled(format!(" {} chunks, {} ", rerun.chunks, millis(rerun.elapsed_ms)), theme.dim()),
    ]);
    let block = panel(theme, title);
    let inner = block.inner(right);
    frame.render_widget(block, right);
    if let Some(error) = &rerun.error {
        let text = Paragraph::new(Line::styled(one_line(error), theme.error())).wrap(Wrap { trim: true });
        frame.render_widget(text, inner);
    } else {
        tail_text(frame, inner, &rerun.text, theme.plain());
    }

    if let Some(done) = &rerun.done {
        comparison(frame, comparison_area, replay, rerun, done, theme);
    }
}

fn comparison(
    frame: &mut Frame<'_>,
    area: Rect,
    replay: &ReplayUi,
    rerun: &ReRun,
    done: &pb::ReplayDone,
    theme: &Theme,
) {
    let block = panel(theme, " Comparison (re-run minus original) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(c) = &done.comparison else {
        return message(frame, inner, theme, "the daemon sent no comparison");
    };
    let sep = || Span::styled(theme.sep(), theme.dim());
    let delta = theme.delta();
    let signed = |n: i64| if n > 0 { format!("+{}", count(n as f64)) } else { count(n as f64) };
    let identical =
        if c.text_identical { Span::styled("identical", theme.ok()) } else { Span::styled("different", theme.warn()) };
    let mut lines = vec![Line::from(vec![
        identical,
        Span::raw(format!(", similarity {:.0}%", c.text_similarity * 100.0)),
        sep(),
        Span::raw(format!("tokens out {delta} {}", signed(c.output_tokens_delta))),
        sep(),
        Span::raw(format!("latency {delta} {}", signed_millis(c.latency_delta_ms))),
        sep(),
        Span::raw(format!("TTFT {delta} {}", c.ttft_delta_ms.map_or_else(|| UNSET.to_owned(), signed_millis))),
        sep(),
        Span::raw(format!("cost {delta} {}", c.cost_delta_usd.map_or_else(|| UNSET.to_owned(), signed_dollars))),
    ])];
    let new_text = if rerun.text.is_empty() {
        done.replay.as_ref().map_or("", |t| t.response_text.as_str())
    } else {
        rerun.text.as_str()
    };
    if replay.original.response_text.is_empty() && !replay.original.response_sha256.is_empty() {
        lines.push(Line::styled("no word diff: the original's text was not kept (privacy mode)", theme.dim()));
    } else if c.text_identical {
        lines.push(Line::styled("no differences", theme.dim()));
    } else {
        lines.extend(word_diff(&replay.original.response_text, new_text, theme));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn route_picker(frame: &mut Frame<'_>, area: Rect, picker: &RoutePicker, theme: &Theme) {
    let widest = picker.routes.iter().map(|r| r.chars().count()).max().unwrap_or(0);
    let width = u16::try_from(widest.max(26) + 6).unwrap_or(u16::MAX);
    let height = u16::try_from(picker.routes.len().max(1) + 3).unwrap_or(u16::MAX);
    let inner = popup(frame, centered(area, width, height), panel(theme, " re-run on route "));
    let mut lines: Vec<Line<'_>> = picker
        .routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let style = if index == picker.selected { theme.selected() } else { theme.plain() };
            Line::styled(format!(" {route:<widest$} "), style)
        })
        .collect();
    if picker.routes.is_empty() {
        lines.push(Line::styled(" no routes configured", theme.dim()));
    }
    lines.push(Line::styled(" Enter run  Esc cancel", theme.dim()));
    frame.render_widget(Paragraph::new(lines), inner);
}
