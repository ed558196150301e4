//! `llmopsctl alerts`, `llmopsctl alert ID`, `llmopsctl alerts ack ID` and the one-line-per-event output of
//! `llmopsctl alerts --watch`.
use std::collections::BTreeSet;
use std::fmt::Display;

use chrono::{DateTime, TimeZone};
use llmops_proto::v1::{Alert, AlertEvent, Delivery, DeliveryStatus, Evidence};

use super::Report;
use crate::alert_enums;
use crate::table::{join_cells, Column, Table};
use crate::text::{dash_if_empty, one_line, truncate, UNSET};
use crate::when::{full_time, short_time};

/// What `alerts` prints when no alert matches.
pub const NO_ALERTS: &str = "(no alerts)";

/// How many characters of an id the tables show: the end of a UUIDv7, which is random (its start is a
/// timestamp, shared by alerts raised in the same minute).
const SHORT_ID_CHARS: usize = 8;
const TITLE_MAX_CHARS: usize = 40;
const ERROR_MAX_CHARS: usize = 60;
/// Window summaries that have a natural reading order.
const SUMMARY_ORDER: [&str; 8] = ["mean", "stddev", "min", "p50", "p90", "p95", "p99", "max"];

const COLUMNS: [Column; 9] = [
    Column::left("ID"),
    Column::left("STATE"),
    Column::left("SEVERITY"),
    Column::left("RULE"),
    Column::left("TITLE"),
    Column::left("SINCE"),
    Column::right("COUNT"),
    Column::left("EVIDENCE"),
    Column::left("WEBHOOKS"),
];

/// The `alerts --watch` columns; rows arrive one at a time, so each has a fixed width.
const WATCH_COLUMNS: [Column; 7] = [
    Column::left("TIME").streamed(8),
    Column::left("EVENT").streamed(12),
    Column::left("ID").streamed(SHORT_ID_CHARS),
    Column::left("SEVERITY").streamed(8),
    Column::left("RULE").streamed(13),
    Column::left("TITLE").streamed(TITLE_MAX_CHARS),
    Column::left("EVIDENCE"),
];

/// One row per alert, in the order given (llmopsd's: firing first, then newest first).
pub fn render_alerts<Tz: TimeZone>(alerts: &[Alert], now: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    if alerts.is_empty() {
        return format!("{NO_ALERTS}\n");
    }
    let mut table = Table::new(&COLUMNS);
    for alert in alerts {
        table.push(vec![
            short_alert_id(&alert.id),
            dash_if_empty(alert_enums::state_name(alert)),
            dash_if_empty(alert_enums::severity_name(alert)),
            dash_if_empty(&alert.rule),
            dash_if_empty(&truncate(&one_line(&alert.title), TITLE_MAX_CHARS)),
            short_time(alert.started_at_unix_ms, now),
            alert.occurrences.to_string(),
            evidence_cell(alert.evidence.as_ref()),
            webhooks_summary(&alert.deliveries),
        ]);
    }
    table.render()
}

/// Everything about one alert: fields, message, labels, evidence (the two windows side by side) and webhooks.
pub fn render_alert<Tz: TimeZone>(alert: &Alert, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let mut report = Report::default();
    let optional_time = |unix_ms: Option<i64>| unix_ms.map_or_else(|| UNSET.to_owned(), |ms| full_time(ms, zone));
    let fields = [
        ("id", dash_if_empty(&alert.id)),
        ("state", dash_if_empty(alert_enums::state_name(alert))),
        ("severity", dash_if_empty(alert_enums::severity_name(alert))),
        ("rule", dash_if_empty(&alert.rule)),
        ("title", dash_if_empty(&one_line(&alert.title))),
        ("key", dash_if_empty(&alert.key)),
        ("occurrences", alert.occurrences.to_string()),
        ("started", full_time(alert.started_at_unix_ms, zone)),
        ("updated", full_time(alert.updated_at_unix_ms, zone)),
        ("acknowledged", optional_time(alert.acknowledged_at_unix_ms)),
        ("acknowledged by", dash_if_empty(&alert.acknowledged_by)),
        ("resolved", optional_time(alert.resolved_at_unix_ms)),
    ];
    for (label, value) in fields {
        report.field(label, value);
    }

    report.section("MESSAGE");
    report.block(if alert.message.is_empty() { "(none)" } else { &alert.message });

    report.section("LABELS");
    let mut labels: Vec<_> = alert.labels.iter().collect();
    labels.sort();
    if labels.is_empty() {
        report.block("(none)");
    }
    for (key, value) in labels {
        report.field(key, value);
    }

    report.section("EVIDENCE");
    match alert.evidence.as_ref().filter(|evidence| !is_blank(evidence)) {
        Some(evidence) => evidence_fields(&mut report, evidence),
        None => report.block("(none)"),
    }

    report.section("WEBHOOKS");
    report.block(&deliveries_table(&alert.deliveries, zone));
    report.text
}

/// What `alerts ack ID` prints: who acknowledged it, which is someone else if it already was.
pub fn render_acknowledged<Tz: TimeZone>(alert: &Alert, by: &str, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let severity = alert_enums::severity_name(alert);
    let what = format!("alert {} ({severity} {}: {})", alert.id, alert.rule, one_line(&alert.title));
    let when = alert.acknowledged_at_unix_ms.map_or_else(|| UNSET.to_owned(), |ms| full_time(ms, zone));
    if alert.acknowledged_by.is_empty() || alert.acknowledged_by == by {
        format!("Acknowledged {what} as {by}.\n")
    } else {
        format!("The {what} was already acknowledged by {} at {when}.\n", alert.acknowledged_by)
    }
}

/// Header for `alerts --watch`.
pub fn alert_watch_header() -> String {
    let titles: Vec<String> = WATCH_COLUMNS.iter().map(|c| c.title.to_owned()).collect();
    join_watch_cells(&titles)
}

/// The `alerts --watch` line for one event; `None` for an event without an alert (only "you missed N").
pub fn alert_watch_line<Tz: TimeZone>(event: &AlertEvent, now: &DateTime<Tz>) -> Option<String>
where
    Tz::Offset: Display,
{
    let alert = event.alert.as_ref()?;
    // Every change stamps the alert, so its update time is the event's.
    let at = if alert.updated_at_unix_ms > 0 { alert.updated_at_unix_ms } else { alert.started_at_unix_ms };
    Some(join_watch_cells(&[
        short_time(at, now),
        dash_if_empty(&alert_enums::event_kind_name(event).to_uppercase()),
        short_alert_id(&alert.id),
        dash_if_empty(alert_enums::severity_name(alert)),
        dash_if_empty(&alert.rule),
        dash_if_empty(&truncate(&one_line(&alert.title), TITLE_MAX_CHARS)),
        evidence_cell(alert.evidence.as_ref()),
    ]))
}

fn join_watch_cells(cells: &[String]) -> String {
    let widths: Vec<usize> = WATCH_COLUMNS.iter().map(|c| c.stream_width).collect();
    join_cells(&WATCH_COLUMNS, &widths, cells)
}

/// The last 8 characters of an id (`llmopsctl alert` and `alerts ack` accept them).
pub fn short_alert_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let start = chars.len().saturating_sub(SHORT_ID_CHARS);
    dash_if_empty(&chars[start..].iter().collect::<String>())
}

/// The EVIDENCE cell: the summary, or the detail of a rule without a statistic, or "-".
fn evidence_cell(evidence: Option<&Evidence>) -> String {
    match evidence {
        Some(evidence) if evidence.statistic.is_empty() && evidence.value == 0.0 && evidence.threshold == 0.0 => {
            dash_if_empty(&truncate(&one_line(&evidence.detail), TITLE_MAX_CHARS))
        }
        Some(evidence) => evidence_summary(evidence),
        None => UNSET.to_owned(),
    }
}

/// llmopsd sends an all-default evidence for alerts that have none.
fn is_blank(evidence: &Evidence) -> bool {
    evidence == &Evidence::default()
}

/// "ks_p_value 0.0012 < 0.05": the statistic, its value and how it compares with the threshold.
pub fn evidence_summary(evidence: &Evidence) -> String {
    let statistic = dash_if_empty(&evidence.statistic);
    format!("{statistic} {}", value_against_threshold(evidence.value, evidence.threshold, ""))
}

/// "0.0012 < 0.05" (with `threshold_label` before the threshold): the relation as the numbers stand, so it
/// reads right whichever way the rule fires.
fn value_against_threshold(value: f64, threshold: f64, threshold_label: &str) -> String {
    let relation = if value < threshold {
        "<"
    } else if value > threshold {
        ">"
    } else if value == threshold {
        "="
    } else {
        // NaN compares with nothing.
        "vs"
    };
    format!("{} {relation} {threshold_label}{}", compact_number(value), compact_number(threshold))
}

/// "1/1 delivered", "failed (3 tries)", "pending", "1/2 delivered, 1 failed"; "-" without webhooks.
pub fn webhooks_summary(deliveries: &[Delivery]) -> String {
    let count = |status| deliveries.iter().filter(|d| alert_enums::delivery_status(d) == status).count();
    let total = deliveries.len();
    let (delivered, failed) = (count(DeliveryStatus::Delivered), count(DeliveryStatus::Failed));
    match deliveries {
        [] => UNSET.to_owned(),
        _ if delivered == total => format!("{delivered}/{total} delivered"),
        [only] => match alert_enums::delivery_status(only) {
            DeliveryStatus::Failed => format!("failed ({})", tries(only.attempts)),
            DeliveryStatus::Pending if only.attempts > 0 => format!("retrying ({})", tries(only.attempts)),
            _ => dash_if_empty(alert_enums::delivery_status_name(only)),
        },
        _ => {
            // Anything neither delivered nor failed is still on its way.
            let pending = total - delivered - failed;
            let mut parts = vec![format!("{delivered}/{total} delivered")];
            if failed > 0 {
                parts.push(format!("{failed} failed"));
            }
            if pending > 0 {
                parts.push(format!("{pending} pending"));
            }
            parts.join(", ")
        }
    }
}

fn tries(attempts: u32) -> String {
    if attempts == 1 {
        "1 try".to_owned()
    } else {
        format!("{attempts} tries")
    }
}

/// A statistic for reading, not for computing: three significant digits, scientific notation for the very
/// small (p-values) and very large, integers from 100 on.
pub fn compact_number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let magnitude = value.abs();
    if magnitude == 0.0 {
        return "0".to_owned();
    }
    if !(1e-3..1e6).contains(&magnitude) {
        let text = format!("{value:.1e}");
        return text.replace(".0e", "e");
    }
    if magnitude >= 100.0 {
        return format!("{value:.0}");
    }
    // 1 decimal in [10, 100), 2 in [1, 10), ..., 5 in [0.001, 0.01); trailing zeros dropped.
    let decimals = (2 - magnitude.log10().floor() as i32).clamp(1, 5) as usize;
    let text = format!("{value:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn evidence_fields(report: &mut Report, evidence: &Evidence) {
    report.field("statistic", dash_if_empty(&evidence.statistic));
    report.field("value", value_against_threshold(evidence.value, evidence.threshold, "threshold "));
    report.field("detail", dash_if_empty(&one_line(&evidence.detail)));
    // Threshold rules (a GPU's temperature, a budget's use) compare no windows.
    let has_windows = evidence.reference_n > 0
        || evidence.current_n > 0
        || !evidence.reference.is_empty()
        || !evidence.current.is_empty();
    if has_windows {
        report.block("");
        report.block(&windows_table(evidence));
    }
}

/// The reference and current windows side by side: sample counts, then every summary either reports.
fn windows_table(evidence: &Evidence) -> String {
    let mut table = Table::new(&[
        Column::left("SUMMARY"),
        Column::right("REFERENCE"),
        Column::right("CURRENT"),
        Column::right("CHANGE"),
    ]);
    table.push(vec![
        "n".to_owned(),
        evidence.reference_n.to_string(),
        evidence.current_n.to_string(),
        UNSET.to_owned(),
    ]);
    // The sample counts are in the row above; llmopsd may repeat them in the summaries as "n".
    let names: BTreeSet<&String> =
        evidence.reference.keys().chain(evidence.current.keys()).filter(|name| name.as_str() != "n").collect();
    let mut names: Vec<&String> = names.into_iter().collect();
    // The usual summaries in reading order, anything else after them alphabetically (a stable sort).
    names.sort_by_key(|name| SUMMARY_ORDER.iter().position(|known| known == name).unwrap_or(SUMMARY_ORDER.len()));
    for name in names {
        let reference = evidence.reference.get(name).copied();
        let current = evidence.current.get(name).copied();
        let cell = |value: Option<f64>| value.map_or_else(|| UNSET.to_owned(), compact_number);
        table.push(vec![name.clone(), cell(reference), cell(current), change(reference, current)]);
    }
    table.render()
}

/// The current value relative to the reference, e.g. "+35%"; "-" when there is nothing to compare with.
fn change(reference: Option<f64>, current: Option<f64>) -> String {
    match (reference, current) {
        (Some(reference), Some(current)) if reference != 0.0 && reference.is_finite() && current.is_finite() => {
            format!("{:+.0}%", (current - reference) * 100.0 / reference.abs())
        }
        _ => UNSET.to_owned(),
    }
}

fn deliveries_table<Tz: TimeZone>(deliveries: &[Delivery], zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    if deliveries.is_empty() {
        return "(none configured)".to_owned();
    }
    let mut table = Table::new(&[
        Column::left("URL"),
        Column::left("STATUS"),
        Column::right("TRIES"),
        Column::left("LAST ATTEMPT"),
        Column::left("LAST ERROR"),
    ]);
    for delivery in deliveries {
        table.push(vec![
            dash_if_empty(&delivery.url),
            dash_if_empty(alert_enums::delivery_status_name(delivery)),
            delivery.attempts.to_string(),
            full_time(delivery.last_attempt_unix_ms, zone),
            dash_if_empty(&truncate(&one_line(&delivery.last_error), ERROR_MAX_CHARS)),
        ]);
    }
    table.render()
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
