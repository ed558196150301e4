//! The alerts view: firing, acknowledged and recently resolved alerts, and the evidence of the selected one
//! (the statistic against its threshold, reference and current windows, webhook deliveries).
use std::collections::BTreeSet;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Wrap};
use ratatui::Frame;

use super::format::ago;
use super::overview::missing;
use super::theme::Theme;
use super::widgets::{message, panel, right, Windowed};
use super::{Ctx, ListHit};
use crate::alert_enums;
use crate::report::{compact_number, evidence_summary, webhooks_summary};
use crate::text::{one_line, UNSET};
use llmops_proto::v1 as pb;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> Option<ListHit> {
    let (app, theme) = (ctx.app, ctx.theme);
    let host = app.host();
    let firing = host.alerts.iter().filter(|a| alert_enums::state(a) == pb::AlertState::Firing).count();
    let title = format!(" Alerts {} firing, {} in all ", firing, host.alerts.len());
    if host.alerts.is_empty() {
        let block = panel(&theme, title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text =
            if host.unavailable.contains_key("alerts") { missing(host, "alerts", &theme) } else { "no alerts".into() };
        message(frame, inner, &theme, text);
        return None;
    }
    let list_height = u16::try_from(host.alerts.len() + 3).unwrap_or(u16::MAX).min(area.height * 2 / 5).max(4);
    let [list_area, evidence_area] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(area);
    let selected = app.alerts_selected.min(host.alerts.len() - 1);
    // The rule also heads the evidence, so a narrow screen gives its room to the title.
    let with_rule = area.width >= 90;
    let mut header = vec!["severity", "state", "rule", "title", "times", "started"];
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Length(13),
        Constraint::Fill(1),
        Constraint::Length(5),
        Constraint::Length(12),
    ];
    if !with_rule {
        header.remove(2);
        widths.remove(2);
    }
    let table = Windowed {
        header: header.into_iter().map(Cell::from).collect(),
        widths,
        total: host.alerts.len(),
        selected: Some(selected),
    };
    let hit = table.render(frame, list_area, panel(&theme, title), &theme, |index| {
        let Some(alert) = host.alerts.get(index) else {
            return Vec::new();
        };
        let firing = alert_enums::state(alert) == pb::AlertState::Firing;
        let state_style = if firing { theme.error() } else { theme.dim() };
        let severity = alert_enums::severity_name(alert);
        let mut cells = vec![
            Cell::from(Span::styled(severity.to_owned(), theme.severity(severity))),
            Cell::from(Span::styled(alert_enums::state_name(alert).to_owned(), state_style)),
            Cell::from(alert.rule.clone()),
            Cell::from(one_line(&alert.title)),
            right(alert.occurrences.to_string(), theme.plain()),
            Cell::from(ago(app.now_unix_ms, alert.started_at_unix_ms)),
        ];
        if !with_rule {
            cells.remove(2);
        }
        cells
    });
    if let Some(alert) = host.alerts.get(selected) {
        let block = panel(&theme, " Evidence ");
        let inner = block.inner(evidence_area);
        frame.render_widget(block, evidence_area);
        let lines = evidence_lines(alert, ctx);
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }
    Some(hit)
}

fn evidence_lines(alert: &pb::Alert, ctx: Ctx<'_>) -> Vec<Line<'static>> {
    let (theme, now) = (ctx.theme, ctx.app.now_unix_ms);
    let label = |text: &str| Span::styled(format!("{text:<12}"), theme.dim());
    let mut lines = vec![Line::from(vec![
        Span::styled(one_line(&alert.title), theme.bold()),
        Span::styled(
            if alert.key.is_empty() {
                format!("  ({})", alert.rule)
            } else {
                format!("  ({}, {})", alert.rule, alert.key)
            },
            theme.dim(),
        ),
    ])];
    if !alert.message.is_empty() {
        lines.push(Line::raw(one_line(&alert.message)));
    }
    let mut state = format!("{}, started {}", alert_enums::state_name(alert), ago(now, alert.started_at_unix_ms));
    if let Some(at) = alert.acknowledged_at_unix_ms {
        let by =
            if alert.acknowledged_by.is_empty() { String::new() } else { format!(" by {}", alert.acknowledged_by) };
        state.push_str(&format!(", acknowledged {}{by}", ago(now, at)));
    }
    if let Some(at) = alert.resolved_at_unix_ms {
        state.push_str(&format!(", resolved {}", ago(now, at)));
    }
    lines.push(Line::from(vec![label("state"), Span::raw(state)]));
    match &alert.evidence {
        Some(evidence) if evidence != &pb::Evidence::default() => evidence_fields(&mut lines, evidence, &theme),
        _ => lines.push(Line::from(vec![label("evidence"), Span::styled("none recorded", theme.dim())])),
    }
    if !alert.labels.is_empty() {
        let mut labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        lines.push(Line::from(vec![label("labels"), Span::raw(labels.join(" "))]));
    }
    lines.push(Line::from(vec![label("deliveries"), Span::raw(webhooks_summary(&alert.deliveries))]));
    for delivery in &alert.deliveries {
        let error = if delivery.last_error.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&delivery.last_error))
        };
        let failed = alert_enums::delivery_status(delivery) == pb::DeliveryStatus::Failed;
        let style = if failed { theme.error() } else { theme.dim() };
        lines.push(Line::styled(
            format!(
                "  {} {} ({} {}){error}",
                delivery.url,
                alert_enums::delivery_status_name(delivery),
                delivery.attempts,
                if delivery.attempts == 1 { "try" } else { "tries" }
            ),
            style,
        ));
    }
    lines
}

fn evidence_fields(lines: &mut Vec<Line<'static>>, evidence: &pb::Evidence, theme: &Theme) {
    let label = |text: &str| Span::styled(format!("{text:<12}"), theme.dim());
    lines.push(Line::from(vec![label("statistic"), Span::styled(evidence_summary(evidence), theme.warn())]));
    let keys: BTreeSet<&String> = evidence.reference.keys().chain(evidence.current.keys()).collect();
    if !keys.is_empty() || evidence.reference_n > 0 || evidence.current_n > 0 {
        lines.push(Line::from(vec![
            label(""),
            Span::styled(format!("{:<10} {:>12} {:>12}", "", "reference", "current"), theme.table_header()),
        ]));
        lines.push(Line::from(vec![
            label(""),
            Span::raw(format!("{:<10} {:>12} {:>12}", "n", evidence.reference_n, evidence.current_n)),
        ]));
        let value = |map: &std::collections::HashMap<String, f64>, key: &String| {
            map.get(key).map_or_else(|| UNSET.to_owned(), |v| compact_number(*v))
        };
        for key in keys {
            lines.push(Line::from(vec![
                label(""),
                Span::raw(format!(
                    "{:<10} {:>12} {:>12}",
                    key,
                    value(&evidence.reference, key),
                    value(&evidence.current, key)
                )),
            ]));
        }
    }
    if !evidence.detail.is_empty() {
        lines.push(Line::from(vec![label("detail"), Span::raw(one_line(&evidence.detail))]));
    }
}
