//! The trace detail view: who asked what, where it ran (attempts and fallbacks), how long each phase took,
//! what it cost, its feedback scores (`+`/`-` add a thumbs up or down), and the prompt and response,
//! scrollable.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::{count, dollars, millis, opt_millis};
use super::theme::Theme;
use super::widgets::{message, panel, wrap};
use super::Ctx;
use crate::scores::{source_name, value_text};
use crate::text::{dash_if_empty, error_text, http_status_text, one_line, UNSET};
use crate::top::tail::{served_or_requested, status_name};
use llmops_proto::v1 as pb;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let theme = ctx.theme;
    let Some(detail) = &ctx.app.detail else {
        return message(frame, area, &theme, "no trace selected: pick one in the traces view (2) and press Enter");
    };
    let block = panel(&theme, format!(" Trace {} ", detail.trace_id));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(trace) = &detail.trace else {
        match &detail.error {
            Some(error) => {
                let text = format!("could not load the trace: {}", one_line(error));
                let paragraph =
                    Paragraph::new(Line::styled(text, theme.error())).wrap(ratatui::widgets::Wrap { trim: true });
                frame.render_widget(paragraph, inner);
            }
            None => message(frame, inner, &theme, format!("loading{}", theme.ellipsis())),
        }
        return;
    };
    let mut summary = summary_lines(trace, ctx);
    summary.extend(super::trace_gpu::lines(detail.gpu.as_ref(), &theme, 4));
    summary.extend(score_lines(&trace.scores, &theme));
    let summary_height = u16::try_from(summary.len()).unwrap_or(u16::MAX).min(inner.height.saturating_sub(3));
    let [summary_area, body_area] =
        Layout::vertical([Constraint::Length(summary_height), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(summary), summary_area);

    let width = usize::from(body_area.width);
    let mut body = Vec::new();
    for (title, text, chars, sha) in [
        ("prompt", &trace.prompt_text, trace.prompt_chars, &trace.prompt_sha256),
        ("response", &trace.response_text, trace.response_chars, &trace.response_sha256),
    ] {
        body.push(rule(title, width, &theme));
        match body_text(text, chars, sha, &theme) {
            Ok(text) => body.extend(wrap(text, width).into_iter().map(Line::from)),
            Err(note) => body.push(Line::styled(note, theme.dim())),
        }
    }
    // Scrolling stops with the last line at the bottom.
    let max_scroll = body.len().saturating_sub(usize::from(body_area.height));
    let scroll = usize::from(detail.scroll).min(max_scroll);
    let visible: Vec<Line<'_>> = body.into_iter().skip(scroll).collect();
    frame.render_widget(Paragraph::new(visible), body_area);
}

fn summary_lines(trace: &pb::Trace, ctx: Ctx<'_>) -> Vec<Line<'static>> {
    let theme = ctx.theme;
    let sep = || Span::styled(theme.sep(), theme.dim());
    let dim = |text: String| Span::styled(text, theme.dim());
    let status = status_name(trace.status);
    let mut lines = vec![Line::from(vec![
        Span::styled(dash_if_empty(&trace.route), theme.bold()),
        Span::raw(format!(" {} {}", theme.arrow(), dash_if_empty(served_or_requested(trace)))),
        dim(format!(" on {}", dash_if_empty(&trace.engine))),
        sep(),
        Span::styled(status, theme.status(status)),
        Span::raw(format!(" HTTP {}", http_status_text(trace.http_status))),
        sep(),
        Span::raw(ctx.zone.date_time(trace.started_at_unix_ms)),
        sep(),
        dim("tenant ".into()),
        Span::raw(dash_if_empty(&trace.tenant)),
        dim(" user ".into()),
        Span::raw(dash_if_empty(&trace.user)),
    ])];
    if !trace.replay_of.is_empty() {
        lines.push(Line::from(vec![dim("replay of ".into()), Span::raw(trace.replay_of.clone())]));
    }
    let queue = trace.attempts.first().map(|a| a.start_offset_ms);
    let generation = trace.ttft_ms.map(|ttft| trace.latency_ms - ttft);
    lines.push(Line::from(vec![
        dim("queue ".into()),
        Span::raw(opt_millis(queue)),
        sep(),
        dim("TTFT ".into()),
        Span::raw(opt_millis(trace.ttft_ms)),
        sep(),
        dim("generation ".into()),
        Span::raw(opt_millis(generation)),
        sep(),
        dim("total ".into()),
        Span::raw(millis(trace.latency_ms)),
    ]));
    let estimated = if trace.tokens_estimated { " (estimated)" } else { "" };
    let energy = trace
        .energy_joules
        .map_or_else(|| UNSET.to_owned(), |joules| format!("{} J ({:.3} Wh)", count(joules), joules / 3600.0));
    lines.push(Line::from(vec![
        dim("tokens in ".into()),
        Span::raw(trace.input_tokens.to_string()),
        dim(" out ".into()),
        Span::raw(format!("{}{estimated}", trace.output_tokens)),
        sep(),
        dim("cost ".into()),
        Span::raw(trace.cost_usd.map_or_else(|| UNSET.to_owned(), dollars)),
        sep(),
        dim("energy ".into()),
        Span::raw(energy),
    ]));
    let error = error_text(trace);
    if !error.is_empty() {
        lines.push(Line::from(vec![dim("error ".into()), Span::styled(one_line(&error), theme.error())]));
    }
    lines.push(Line::styled(
        if trace.attempts.is_empty() { "attempts: none (no engine was called)" } else { "attempts:" },
        theme.dim(),
    ));
    let target_width = trace.attempts.iter().map(|a| a.engine.chars().count() + a.model.chars().count() + 1).max();
    for (index, attempt) in trace.attempts.iter().enumerate() {
        lines.push(attempt_line(index, attempt, target_width.unwrap_or(0), &theme));
    }
    if let Some(cache) = &trace.cache {
        let mut spans = vec![dim("cache ".into()), Span::raw(cache.result.clone())];
        if cache.result == "hit" {
            let saved = format!(
                " of {}: saved {} tokens, {}",
                cache.source_trace_id,
                cache.saved_input_tokens + cache.saved_output_tokens,
                dollars(cache.saved_usd)
            );
            spans.push(dim(saved));
        } else if cache.stored {
            spans.push(dim(" (stored)".into()));
        }
        lines.push(Line::from(spans));
    }
    for verdict in &trace.guardrails {
        let style = if verdict.action == "block" { theme.error() } else { theme.dim() };
        let detail = if verdict.detail.is_empty() { String::new() } else { format!(" ({})", verdict.detail) };
        lines.push(Line::from(vec![
            dim("guardrail ".into()),
            Span::styled(one_line(&format!("{} {} on {}{detail}", verdict.rule, verdict.action, verdict.stage)), style),
        ]));
    }
    let mut tags: Vec<String> = trace.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tags.sort();
    lines.push(Line::from(vec![
        dim("tags ".into()),
        Span::raw(if tags.is_empty() { "none".to_owned() } else { tags.join(" ") }),
    ]));
    lines
}

/// Feedback scores shown at most; older ones are counted.
const SCORE_LINES: usize = 4;

/// "feedback (2):" and the newest scores, "  thumbs pass  human  great answer"; or how to give one.
fn score_lines(scores: &[pb::Score], theme: &Theme) -> Vec<Line<'static>> {
    if scores.is_empty() {
        return vec![Line::styled("feedback: none yet (+ thumbs up, - thumbs down)", theme.dim())];
    }
    let mut lines = vec![Line::styled(format!("feedback ({}):", scores.len()), theme.dim())];
    let shown = &scores[scores.len().saturating_sub(SCORE_LINES)..];
    if scores.len() > shown.len() {
        lines.push(Line::styled(format!("  {} earlier not shown", scores.len() - shown.len()), theme.dim()));
    }
    let name_width = shown.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let value_width = shown.iter().map(|s| value_text(s).chars().count()).max().unwrap_or(0);
    for score in shown {
        let value = value_text(score);
        let style = match score.value {
            Some(pb::score::Value::Passed(true)) => theme.ok(),
            Some(pb::score::Value::Passed(false)) => theme.error(),
            _ => theme.bold(),
        };
        let mut spans = vec![
            Span::raw(format!("  {:<name_width$} ", one_line(&score.name))),
            Span::styled(format!("{:<value_width$}", one_line(&value)), style),
            Span::styled(format!("  {:<5}", source_name(score.source)), theme.dim()),
        ];
        if !score.comment.is_empty() {
            spans.push(Span::raw(format!("  {}", one_line(&score.comment))));
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// "  2 vllm-b/llama  fallback  ok HTTP 200  880 ms": later attempts are fallbacks after a failure.
fn attempt_line(index: usize, attempt: &pb::Attempt, target_width: usize, theme: &Theme) -> Line<'static> {
    let target = format!("{}/{}", attempt.engine, attempt.model);
    let mut spans = vec![
        Span::raw(format!("  {} {target:<target_width$} ", index + 1)),
        Span::styled(if index > 0 { "fallback " } else { "         " }, theme.warn()),
        Span::raw(format!(
            "HTTP {:>3} {:>8} TTFT {:>7}  ",
            http_status_text(attempt.upstream_status),
            millis(attempt.latency_ms),
            opt_millis(attempt.ttft_ms)
        )),
    ];
    if attempt.error.is_empty() {
        spans.push(Span::styled("ok", theme.ok()));
    } else {
        spans.push(Span::styled(format!("failed: {}", one_line(&attempt.error)), theme.error()));
    }
    Line::from(spans)
}

/// "── prompt ────": a titled rule across the body.
fn rule(title: &str, width: usize, theme: &Theme) -> Line<'static> {
    let line = if theme.ascii { '-' } else { '─' };
    let head = format!("{line}{line} {title} ");
    let rest = width.saturating_sub(head.chars().count());
    Line::styled(format!("{head}{}", line.to_string().repeat(rest)), theme.title())
}

/// The text to show, or why there is none (privacy mode keeps only its length and hash).
pub fn body_text<'a>(text: &'a str, chars: u64, sha256: &str, theme: &Theme) -> Result<&'a str, String> {
    if !text.is_empty() {
        return Ok(text);
    }
    if !sha256.is_empty() || chars > 0 {
        let sha = dash_if_empty(&theme.cut(sha256, 16));
        return Err(format!("(privacy mode: {chars} chars, sha256 {sha})"));
    }
    Err("(empty)".to_owned())
}
