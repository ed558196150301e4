//! What frames every view: the header (host, link, daemon version and uptime, view tabs), the link banner
//! (unreachable or connecting) and the footer (key hints, the prompt being typed, or a notice).
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::span;
use super::theme::Theme;
use super::Ctx;
use crate::text::dash_if_empty;
use crate::top::state::{Host, Link, Prompt, View};

const TABS: [(&str, &str); 4] = [("1", "Overview"), ("2", "Traces"), ("3", "Alerts"), ("4", "Budgets")];

pub fn header(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (app, theme) = (ctx.app, ctx.theme);
    let host = app.host();
    let current = match app.view {
        View::Fleet => "0",
        View::Overview => "1",
        View::Traces | View::Detail | View::Replay => "2",
        View::Alerts => "3",
        View::Budgets => "4",
        View::Evals => "5",
    };
    // The host and its link matter more than the other views' names: on a narrow terminal (or with a long
    // socket path) only the current tab keeps its name.
    let fleet = (app.hosts.len() > 1).then_some(("0", "Fleet"));
    let full_tabs: usize = fleet.into_iter().chain(TABS).map(|(key, name)| key.len() + name.chars().count() + 3).sum();
    // " llmops-top " + address + " " + link.
    let left_min = 12 + host.address.chars().count() + 1 + link_span(&host.link, &theme).width();
    let compact = left_min + full_tabs > usize::from(area.width);
    let mut tabs: Vec<Span<'static>> = Vec::new();
    for (key, name) in fleet.into_iter().chain(TABS) {
        let active = key == current;
        let style = if active { theme.tab_active() } else { theme.dim() };
        let label = if compact && !active { format!(" {key} ") } else { format!(" {key} {name} ") };
        tabs.push(Span::styled(label, style));
    }
    let tabs = Line::from(tabs);
    let tabs_width = u16::try_from(tabs.width()).unwrap_or(u16::MAX).min(area.width);

    let mut left = vec![Span::styled(" llmops-top ", theme.title())];
    if app.view == View::Fleet {
        left.push(Span::raw(format!("{} hosts", app.hosts.len())));
    } else {
        left.push(Span::raw(format!("{} ", host.address)));
        left.push(link_span(&host.link, &theme));
        if let Some(status) = &host.status {
            let version = dash_if_empty(&status.version);
            let uptime_ms = (status.uptime_seconds.max(0.0) * 1000.0) as i64;
            let daemon = format!("  v{version}, up {}", span(uptime_ms));
            // Only whole: a cut version reads as a different one.
            let used: usize = left.iter().map(Span::width).sum();
            if used + daemon.chars().count() + usize::from(tabs_width) < usize::from(area.width) {
                left.push(Span::styled(daemon, theme.dim()));
            }
        }
    }
    let [left_area, tabs_area] = Layout::horizontal([Constraint::Min(0), Constraint::Length(tabs_width)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(left)), left_area);
    frame.render_widget(Paragraph::new(tabs), tabs_area);
}

/// "● up", "connecting…", "down", coloured.
pub fn link_span(link: &Link, theme: &Theme) -> Span<'static> {
    match link {
        Link::Up => Span::styled(format!("{} up", theme.bullet()), theme.ok()),
        Link::Connecting { .. } => Span::styled(format!("connecting{}", theme.ellipsis()), theme.warn()),
        Link::Down { .. } => Span::styled(format!("{} down", theme.bullet()), theme.error()),
    }
}

/// Lines the link banner needs at `width`: none when up, two when the error is long.
pub fn banner_height(host: &Host, theme: &Theme, width: u16) -> u16 {
    match banner_text(host, theme) {
        None => 0,
        Some((text, _)) if text.chars().count() > usize::from(width) => 2,
        Some(_) => 1,
    }
}

pub fn banner(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    if let Some((text, style)) = banner_text(ctx.app.host(), &ctx.theme) {
        let paragraph = Paragraph::new(Line::from(text)).style(style).wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(paragraph, area);
    }
}

fn banner_text(host: &Host, theme: &Theme) -> Option<(String, ratatui::style::Style)> {
    Some(match &host.link {
        Link::Up => return None,
        Link::Connecting { attempt } => {
            (format!(" connecting to {}{} (attempt {attempt})", host.address, theme.ellipsis()), theme.banner_info())
        }
        Link::Down { error, attempt, retry_in } => (
            format!(
                " llmopsd unreachable at {}: {} {} retrying in {} (attempt {attempt})",
                host.address,
                crate::text::one_line(error),
                theme.dash(),
                span(i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX).max(1000)),
            ),
            theme.banner_error(),
        ),
    })
}

pub fn footer(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (app, theme) = (ctx.app, ctx.theme);
    if let Some(prompt) = &app.prompt {
        let (sigil, input) = match prompt {
            Prompt::Filter { input } => ("/", input),
            Prompt::Command { input, .. } => (":", input),
            Prompt::Dataset { input, .. } => ("add to dataset: ", input),
        };
        let mut spans = vec![Span::styled(sigil, theme.bold()), Span::raw(input.clone())];
        if let Prompt::Command { completions, pick, .. } = prompt {
            spans.push(Span::raw("   "));
            for (index, name) in completions.iter().enumerate() {
                let style = if index == *pick { theme.selected() } else { theme.dim() };
                spans.push(Span::styled(name.clone(), style));
                spans.push(Span::raw(" "));
            }
        }
        let help = match prompt {
            Prompt::Filter { .. } => "Enter keep  Esc clear",
            Prompt::Command { .. } => "Tab complete  Enter run  Esc cancel",
            Prompt::Dataset { .. } => "Enter add (created if new)  Esc cancel",
        };
        let typed = sigil.chars().count() + input.chars().count();
        let cursor_x = area.x.saturating_add(u16::try_from(typed).unwrap_or(u16::MAX));
        let [line_area, help_area] =
            Layout::horizontal([Constraint::Min(0), Constraint::Length(help.len() as u16 + 1)]).areas(area);
        frame.render_widget(Paragraph::new(Line::from(spans)), line_area);
        frame.render_widget(Paragraph::new(Line::styled(help, theme.dim()).right_aligned()), help_area);
        frame.set_cursor_position(Position::new(cursor_x.min(line_area.right().saturating_sub(1)), area.y));
        return;
    }
    if let Some(notice) = &app.notice {
        let style = if notice.error { theme.error() } else { theme.ok() };
        frame.render_widget(Paragraph::new(Line::styled(format!(" {}", notice.text), style)), area);
        return;
    }
    let mut spans = Vec::new();
    for (key, what) in hints(app.view, &theme) {
        spans.push(Span::styled(format!(" {key}"), theme.bold()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn hints(view: View, theme: &Theme) -> Vec<(&'static str, &'static str)> {
    let (updown, leftright) = if theme.ascii { ("Up/Dn", "Left/Right") } else { ("↑/↓", "←/→") };
    let mut hints = match view {
        View::Fleet => vec![(updown, "select"), ("Enter", "open host")],
        View::Overview => {
            vec![("Tab", "views"), ("2", "traces"), ("3", "alerts"), ("4", "budgets"), ("5", "evals")]
        }
        View::Traces => vec![
            (updown, "select"),
            ("/", "filter"),
            ("f", "follow/pause"),
            ("s/S", "sort/reverse"),
            ("Enter", "detail"),
        ],
        View::Detail => {
            vec![("j/k", "scroll"), ("r", "replay"), ("+/-", "thumbs"), ("a", "add to dataset"), ("Esc", "back")]
        }
        View::Alerts => vec![(updown, "select"), ("a", "acknowledge")],
        View::Budgets => vec![(updown, "select engine")],
        View::Evals => vec![(updown, "select/scroll"), ("Enter", "open run/item"), ("Esc", "back")],
        View::Replay => {
            vec![("space", "pause/play"), ("+/-", "speed"), (leftright, "step"), ("R", "re-run"), ("Esc", "back")]
        }
    };
    hints.extend([(":", "command"), ("?", "help"), ("q", "quit")]);
    hints
}
