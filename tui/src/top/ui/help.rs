//! The `?` overlay: every key binding, grouped by where it applies, in two columns so it fits 80x24.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::theme::Theme;
use super::widgets::{centered, panel, popup};
use super::Ctx;

type Group = (&'static str, &'static [(&'static str, &'static str)]);

const GLOBAL: Group = (
    "Global",
    &[
        ("?", "help"),
        ("q / Ctrl-C", "quit"),
        ("Tab/S-Tab", "next/prev view"),
        ("1", "overview"),
        ("2", "traces"),
        ("3", "alerts"),
        ("4", "budgets & engines"),
        ("5", "evals"),
        ("0", "fleet"),
        (":", "command"),
        ("Esc", "back/close"),
        ("ARROWS/hjkl", "move"),
        ("g / G", "first/last"),
        ("PgUp/PgDn", "page"),
        ("click", "select"),
        ("wheel", "scroll"),
    ],
);
const FLEET: Group = ("Fleet", &[("Enter", "drill into host")]);
const ALERTS: Group = ("Alerts", &[("a", "acknowledge")]);
const TRACES: Group = (
    "Traces",
    &[
        ("/", "filter: model:NAME route:NAME"),
        ("", "status:ok|error|... or text"),
        ("f / space", "follow/pause"),
        ("s", "sort column"),
        ("S", "reverse sort"),
        ("Enter", "detail"),
    ],
);
const DETAIL: Group = (
    "Detail",
    &[("r", "replay"), ("j / k", "scroll"), ("+ / -", "thumbs up/down (score)"), ("a", "add to dataset (eval)")],
);
const BUDGETS: Group = ("Budgets & engines", &[("UPDOWN", "select engine (log tail)")]);
const REPLAY: Group = (
    "Replay",
    &[
        ("space", "pause/play"),
        ("+ / -", "speed (0.25x-16x)"),
        ("LEFTRIGHT", "step chunk"),
        ("R", "re-run (route picker)"),
    ],
);

const EVALS: Group = ("Evals", &[("Enter", "open run, then item (diff)"), ("Esc", "back one level")]);

const KEY_WIDTH: usize = 12;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let theme = ctx.theme;
    let left = lines(&[GLOBAL, FLEET, ALERTS], &theme);
    let right = lines(&[TRACES, DETAIL, BUDGETS, REPLAY, EVALS], &theme);
    let height = u16::try_from(left.len().max(right.len()) + 2).unwrap_or(u16::MAX);
    let title = format!(" keys {} ? or Esc to close ", theme.dash());
    let inner = popup(frame, centered(area, 84, height), panel(&theme, title));
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).spacing(1).areas(inner);
    frame.render_widget(Paragraph::new(left), left_area);
    frame.render_widget(Paragraph::new(right), right_area);
}

fn lines(groups: &[Group], theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (title, bindings) in groups {
        lines.push(Line::styled(*title, theme.title()));
        for (key, what) in *bindings {
            let key = key_name(key, theme);
            lines.push(Line::from(vec![Span::styled(format!(" {key:<KEY_WIDTH$}"), theme.bold()), Span::raw(*what)]));
        }
    }
    lines
}

/// Arrow keys by glyph, or by name in ASCII mode.
fn key_name(key: &str, theme: &Theme) -> String {
    let (arrows, updown, leftright) = if theme.ascii {
        ("arrows/hjkl", "Up/Down", "Left/Right")
    } else {
        ("←↓↑→/hjkl", "↑ / ↓", "← / →")
    };
    match key {
        "ARROWS/hjkl" => arrows.to_owned(),
        "UPDOWN" => updown.to_owned(),
        "LEFTRIGHT" => leftright.to_owned(),
        other => other.to_owned(),
    }
}
