//! The budgets & engines view: every budget's use against its limit, burn rate and projected exhaustion;
//! the engines with health, process and load; the selected engine's log tail.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::format::{amount, bar, exhaustion, fraction};
use super::overview::missing;
use super::widgets::{message, panel, right, Windowed};
use super::{Ctx, ListHit};
use crate::names::engine_health_name;
use crate::text::{one_line, UNSET};
use llmops_proto::v1 as pb;

const GAUGE_CELLS: usize = 6;

/// Budget columns: title, width (`None` shares the rest) and whether a narrow screen may drop it.
const BUDGET_COLUMNS: [(&str, Option<u16>); 10] = [
    ("name", None),
    ("scope", Some(12)),
    ("window", Some(6)),
    ("kind", Some(10)),
    ("used", Some(8)),
    ("used / limit", Some(19)),
    ("remaining", Some(9)),
    ("burn/h", Some(8)),
    ("exhausts", Some(16)),
    ("action", Some(9)),
];
const BUDGET_DROP_ORDER: [&str; 5] = ["kind", "remaining", "window", "action", "scope"];

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> Option<ListHit> {
    let host = ctx.app.host();
    let budget_rows = host.budgets.as_ref().map_or(1, |b| b.len().max(1));
    let engines = host.status.as_ref().map_or(&[][..], |s| s.engines.as_slice());
    let budgets_height = u16::try_from(budget_rows + 3).unwrap_or(u16::MAX).min(area.height * 2 / 5).max(3);
    let engines_height = u16::try_from(engines.len().max(1) + 3).unwrap_or(u16::MAX).min(area.height * 3 / 10).max(4);
    let [budgets_area, engines_area, logs_area] =
        Layout::vertical([Constraint::Length(budgets_height), Constraint::Length(engines_height), Constraint::Min(0)])
            .areas(area);
    budgets(frame, budgets_area, ctx);
    let hit = engines_table(frame, engines_area, ctx, engines);
    logs(frame, logs_area, ctx, engines);
    hit
}

fn budgets(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme, now) = (ctx.app.host(), ctx.theme, ctx.app.now_unix_ms);
    let block = panel(&theme, " Budgets ");
    let list = match &host.budgets {
        Some(list) if !list.is_empty() => list,
        other => {
            let inner = block.inner(area);
            frame.render_widget(block, area);
            let text =
                if other.is_some() { "budgets: none configured".to_owned() } else { missing(host, "budgets", &theme) };
            return message(frame, inner, &theme, text);
        }
    };
    let mut shown: Vec<(&str, Option<u16>)> = BUDGET_COLUMNS.to_vec();
    let width = area.width.saturating_sub(2);
    let needed = |shown: &[(&str, Option<u16>)]| -> u16 { shown.iter().map(|(_, w)| w.unwrap_or(12) + 1).sum::<u16>() };
    for drop in BUDGET_DROP_ORDER {
        if needed(&shown) <= width + 1 {
            break;
        }
        shown.retain(|(title, _)| *title != drop);
    }
    let rows = list.iter().map(|b| {
        let concurrent = b.limit_kind == "concurrent";
        let used = fraction(b.used, b.limit);
        let gauge_style = match used {
            Some(f) if f >= 1.0 => theme.error(),
            Some(f) if f >= 0.8 => theme.warn(),
            _ => theme.ok(),
        };
        let unit = match b.limit_kind.as_str() {
            "usd" | "" => String::new(),
            kind => format!(" {kind}"),
        };
        let cells = shown.iter().map(|(title, _)| match *title {
            "name" => Cell::from(b.name.clone()),
            "scope" => Cell::from(b.scope.clone()),
            "window" => Cell::from(if concurrent { UNSET.to_owned() } else { b.window.clone() }),
            "kind" => Cell::from(b.limit_kind.clone()),
            "used" => Cell::from(Span::styled(format!("[{}]", bar(&theme, used, GAUGE_CELLS)), gauge_style)),
            "used / limit" => right(
                format!("{} / {}{unit}", amount(&b.limit_kind, b.used), amount(&b.limit_kind, b.limit)),
                theme.plain(),
            ),
            "remaining" => right(amount(&b.limit_kind, b.remaining), theme.plain()),
            "burn/h" if concurrent => right(UNSET.to_owned(), theme.plain()),
            "burn/h" => right(amount(&b.limit_kind, b.burn_rate_per_hour), theme.accent()),
            "exhausts" if concurrent => Cell::from(UNSET),
            "exhausts" => Cell::from(exhaustion(now, b.projected_exhaustion_unix_ms)),
            "action" => Cell::from(b.action.clone()),
            _ => Cell::from(""),
        });
        Row::new(cells.collect::<Vec<_>>())
    });
    let header = Row::new(shown.iter().map(|(title, _)| Cell::from(*title))).style(theme.table_header());
    let widths: Vec<Constraint> =
        shown.iter().map(|(_, w)| w.map_or(Constraint::Fill(1), Constraint::Length)).collect();
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1).block(block), area);
}

fn engines_table(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>, engines: &[pb::EngineStatus]) -> Option<ListHit> {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let block = panel(&theme, " Engines ");
    if engines.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text =
            if host.status.is_some() { "no engines configured".to_owned() } else { missing(host, "status", &theme) };
        message(frame, inner, &theme, text);
        return None;
    }
    let count = |n: Option<u64>| n.map_or_else(|| UNSET.to_owned(), |n| n.to_string());
    let table = Windowed {
        // prefix%: prompt tokens the engine served from its prefix cache since the daemon's previous scrape.
        header: ["name", "kind", "health", "process", "restarts", "run/wait", "KV %", "prefix%"]
            .into_iter()
            .map(Cell::from)
            .collect(),
        widths: vec![
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(7),
        ],
        total: engines.len(),
        selected: Some(ctx.app.engine_selected.min(engines.len() - 1)),
    };
    let hit = table.render(frame, area, block, &theme, |index| {
        let Some(engine) = engines.get(index) else {
            return Vec::new();
        };
        let health = engine_health_name(engine.health);
        let health_style = match health {
            "healthy" => theme.ok(),
            "unhealthy" => theme.error(),
            _ => theme.dim(),
        };
        let (state, restarts) = engine
            .process
            .as_ref()
            .map_or_else(|| (UNSET.to_owned(), UNSET.to_owned()), |p| (p.state.clone(), p.restarts.to_string()));
        vec![
            Cell::from(engine.name.clone()),
            Cell::from(engine.kind.clone()),
            Cell::from(Span::styled(health, health_style)),
            Cell::from(state),
            right(restarts, theme.plain()),
            right(format!("{}/{}", count(engine.running), count(engine.waiting)), theme.plain()),
            right(
                engine.kv_cache_used_fraction.map_or_else(|| UNSET.to_owned(), |f| format!("{:.0}", f * 100.0)),
                theme.plain(),
            ),
            right(
                engine.prefix_cache_hit_rate.map_or_else(|| UNSET.to_owned(), |f| format!("{:.0}", f * 100.0)),
                theme.plain(),
            ),
        ]
    });
    Some(hit)
}

fn logs(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>, engines: &[pb::EngineStatus]) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let Some(engine) = engines.get(ctx.app.engine_selected.min(engines.len().saturating_sub(1))) else {
        return;
    };
    let block = panel(&theme, format!(" {} log tail ", engine.name));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if !engine.last_error.is_empty() && inner.height > 0 {
        let error = Line::styled(format!("last error: {}", one_line(&engine.last_error)), theme.error());
        frame.render_widget(Paragraph::new(error), Rect { height: 1, ..inner });
    }
    let text_area = if engine.last_error.is_empty() {
        inner
    } else {
        Rect { y: inner.y.saturating_add(1), height: inner.height.saturating_sub(1), ..inner }
    };
    if engine.process.is_none() {
        return message(frame, text_area, &theme, "not launched by llmopsd: its output is not captured");
    }
    let Some(logs) = host.engine_logs.as_ref().filter(|l| l.engine == engine.name) else {
        return message(frame, text_area, &theme, missing(host, "engine_logs", &theme));
    };
    if logs.lines.is_empty() {
        return message(frame, text_area, &theme, "no output yet");
    }
    // The newest lines that fit, oldest at the top.
    let skip = logs.lines.len().saturating_sub(usize::from(text_area.height));
    let lines: Vec<Line<'_>> = logs.lines[skip..].iter().map(|l| Line::raw(l.as_str())).collect();
    frame.render_widget(Paragraph::new(lines), text_area);
}
