//! The overview: the host and daemon in two lines, GPU panels, requests per route over the last minute, USD
//! spend against its budgets, and the firing alerts.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::format::{bar, bytes_of, dollars, exhaustion, fraction, opt_millis};
use super::gpus;
use super::theme::Theme;
use super::widgets::{message, panel, right};
use super::Ctx;
use crate::alert_enums;
use crate::text::{dash_if_empty, one_line};
use crate::top::state::Host;
use crate::when::format_uptime;
use llmops_proto::v1 as pb;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let host = ctx.app.host();
    // The burn line, then one line per USD budget (or the line saying there is none).
    let usd_lines = 1 + usd_budgets(host).map_or(1, |b| b.len().clamp(1, 4));
    let bottom = u16::try_from(usd_lines).unwrap_or(5) + 2;
    // The requests table keeps its rows (up to five); the GPUs get what is left, as boxes or one line each.
    let routes = host.metrics.as_ref().map_or(1, |m| m.windows.iter().filter(|w| w.window_seconds == 60).count());
    let requests_height = u16::try_from(routes.clamp(1, 5)).unwrap_or(5) + 3;
    let gpu_room = area.height.saturating_sub(2 + bottom + requests_height);
    let fit = gpus::fit(host, area.width, gpu_room);
    let [host_area, gpu_area, requests_area, bottom_area] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(fit.height(host).min(gpu_room)),
        Constraint::Min(4),
        Constraint::Length(bottom),
    ])
    .areas(area);
    host_lines(frame, host_area, ctx);
    gpus::draw(frame, gpu_area, ctx, fit);
    requests(frame, requests_area, ctx);
    let [cost_area, alerts_area] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(bottom_area);
    cost(frame, cost_area, ctx);
    alerts(frame, alerts_area, ctx);
}

fn host_lines(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let sep = || Span::styled(theme.sep(), theme.dim());
    let dim = |text: &'static str| Span::styled(text, theme.dim());
    let first = match host.telemetry.as_ref().and_then(|t| t.host.as_ref()) {
        Some(h) => Line::from(vec![
            dim("host "),
            Span::styled(dash_if_empty(&h.hostname), theme.bold()),
            sep(),
            dim("CPU "),
            Span::raw(format!("{:.1}% of {} cores", h.cpu_percent, h.cpu_count)),
            sep(),
            dim("memory "),
            Span::raw(bytes_of(h.memory_used_bytes, h.memory_total_bytes)),
            sep(),
            dim("load "),
            Span::raw(format!("{:.2} {:.2} {:.2}", h.load_1m, h.load_5m, h.load_15m)),
        ]),
        None => Line::styled(format!("host: waiting for telemetry{}", theme.ellipsis()), theme.dim()),
    };
    let second = match &host.status {
        Some(s) => Line::from(vec![
            dim("llmopsd "),
            Span::raw(dash_if_empty(&s.version)),
            sep(),
            dim("up "),
            Span::raw(format_uptime(s.uptime_seconds)),
            sep(),
            dim("in flight "),
            Span::raw(s.requests_in_flight.to_string()),
            sep(),
            dim("privacy mode "),
            if s.privacy_mode { Span::styled("on", theme.warn()) } else { Span::raw("off") },
        ]),
        None => Line::styled(format!("llmopsd: waiting for status{}", theme.ellipsis()), theme.dim()),
    };
    frame.render_widget(Paragraph::new(vec![first, second]), area);
}

/// Why a panel has nothing: the daemon does not serve it, or it has not arrived yet.
pub fn missing(host: &Host, panel: &str, theme: &Theme) -> String {
    match host.unavailable.get(panel) {
        Some(reason) => format!("not served by this llmopsd: {}", one_line(reason)),
        None => format!("waiting for data{}", theme.ellipsis()),
    }
}

fn requests(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let block = panel(&theme, " Requests, last minute ");
    let Some(metrics) = &host.metrics else {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        return message(frame, inner, &theme, missing(host, "metrics", &theme));
    };
    let mut windows: Vec<&pb::RouteWindow> = metrics.windows.iter().filter(|w| w.window_seconds == 60).collect();
    if windows.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        return message(frame, inner, &theme, "no requests in the last minute");
    }
    windows.sort_by(|a, b| (&a.route, &a.model).cmp(&(&b.route, &b.model)));
    let pct = |p: &Option<pb::Percentiles>, pick: fn(&pb::Percentiles) -> Option<f64>| {
        right(opt_millis(p.as_ref().and_then(pick)), theme.plain())
    };
    let rows = windows.iter().map(|w| {
        let error_style = if w.errors > 0 { theme.error() } else { theme.plain() };
        Row::new(vec![
            Cell::from(w.route.clone()),
            Cell::from(Span::styled(w.model.clone(), theme.dim())),
            right(format!("{:.2}", w.requests_per_second), theme.plain()),
            right(format!("{:.1}", w.error_rate * 100.0), error_style),
            pct(&w.latency_ms, |p| p.p50),
            pct(&w.latency_ms, |p| p.p95),
            pct(&w.latency_ms, |p| p.p99),
            pct(&w.ttft_ms, |p| p.p50),
            pct(&w.ttft_ms, |p| p.p95),
        ])
    });
    let header = ["route", "model", "req/s", "err %", "lat p50", "p95", "p99", "TTFT p50", "p95"];
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let header = Row::new(header.iter().enumerate().map(|(i, h)| {
        // Numbers are right-aligned, so their titles are too.
        if i < 2 {
            Cell::from(*h)
        } else {
            right((*h).to_owned(), theme.table_header())
        }
    }));
    let table = Table::new(rows, widths).header(header.style(theme.table_header())).column_spacing(1).block(block);
    frame.render_widget(table, area);
}

/// Spend as a rate now (the last minute) and over the last hour, summed over routes, as the daemon counts it.
fn burn(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let Some(metrics) = &host.metrics else {
        return message(frame, area, &theme, missing(host, "metrics", &theme));
    };
    let total = |seconds: u32, value: fn(&pb::RouteWindow) -> f64| -> f64 {
        metrics.windows.iter().filter(|w| w.window_seconds == seconds).map(value).fold(0.0, |sum, v| sum + v)
    };
    let line = Line::from(vec![
        Span::styled("burn now ", theme.dim()),
        Span::styled(format!("{}/h", dollars(total(60, |w| w.cost_usd_per_hour))), theme.accent()),
        Span::styled(theme.sep(), theme.dim()),
        Span::styled("last hour ", theme.dim()),
        Span::raw(dollars(total(3600, |w| w.cost_usd))),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn usd_budgets(host: &Host) -> Option<Vec<&pb::Budget>> {
    Some(host.budgets.as_ref()?.iter().filter(|b| b.limit_kind == "usd").collect())
}

fn cost(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme, now) = (ctx.app.host(), ctx.theme, ctx.app.now_unix_ms);
    let block = panel(&theme, " Cost ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [burn_area, inner] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    burn(frame, burn_area, ctx);
    let Some(budgets) = usd_budgets(host) else {
        return message(frame, inner, &theme, missing(host, "budgets", &theme));
    };
    if budgets.is_empty() {
        return message(frame, inner, &theme, "no USD budget configured");
    }
    // Text first; the gauge gets what the longest line leaves.
    let name_width = budgets.iter().map(|b| b.name.chars().count()).max().unwrap_or(0).min(16);
    let texts: Vec<[String; 3]> = budgets
        .iter()
        .map(|b| {
            [
                format!("{}/{}", dollars(b.used), dollars(b.limit)),
                format!("{}/h", dollars(b.burn_rate_per_hour)),
                exhaustion(now, b.projected_exhaustion_unix_ms),
            ]
        })
        .collect();
    let longest = texts.iter().map(|t| t.iter().map(|s| s.chars().count() + 1).sum::<usize>()).max().unwrap_or(0);
    // Below three cells a gauge says nothing; the amounts still do.
    let gauge_width = usize::from(inner.width).saturating_sub(name_width + 4 + longest).min(16);
    let lines: Vec<Line<'_>> = budgets
        .iter()
        .zip(texts)
        .map(|(b, [money, burn, exhausts])| {
            let used = fraction(b.used, b.limit);
            let style = if used.is_some_and(|f| f >= 1.0) { theme.error() } else { theme.ok() };
            Line::from(vec![
                Span::raw(format!("{:<name_width$} ", theme.cut(&b.name, name_width))),
                Span::styled(
                    if gauge_width >= 3 { format!("[{}] ", bar(&theme, used, gauge_width)) } else { String::new() },
                    style,
                ),
                Span::raw(format!("{money} ")),
                Span::styled(format!("{burn} "), theme.accent()),
                Span::styled(exhausts, theme.dim()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn alerts(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let block = panel(&theme, " Alerts ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if host.alerts.is_empty() {
        if let Some(reason) = host.unavailable.get("alerts") {
            return message(frame, inner, &theme, format!("not served by this llmopsd: {}", one_line(reason)));
        }
    }
    if host.alerts.is_empty() && host.status.is_none() {
        // Alerts are a list, not an option: with nothing else received yet, an empty one means "not yet".
        return message(frame, inner, &theme, missing(host, "alerts", &theme));
    }
    let in_state = |state| host.alerts.iter().filter(move |a| alert_enums::state(a) == state);
    let firing: Vec<&pb::Alert> = in_state(pb::AlertState::Firing).collect();
    let count_style = if firing.is_empty() { theme.ok() } else { theme.error() };
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{} firing", firing.len()), count_style),
        Span::styled(format!(", {} acknowledged", in_state(pb::AlertState::Acknowledged).count()), theme.dim()),
    ])];
    if let Some(newest) = firing.iter().max_by_key(|a| a.started_at_unix_ms) {
        // The severity shows as the colour; the title gets the whole line.
        let title = theme.cut(&one_line(&newest.title), usize::from(inner.width));
        lines.push(Line::styled(title, theme.severity(alert_enums::severity_name(newest))));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
