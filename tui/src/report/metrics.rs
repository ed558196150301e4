//! `llmopsctl metrics`: request rate, errors, latency, TTFT and inter-token percentiles per route and model,
//! one table per window, and the feedback score rates when there are any.
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use chrono::TimeZone;
use llmops_proto::v1::{Percentiles, RequestMetrics, RouteWindow, ScoreRate};

use super::Report;
use crate::table::{Column, Table};
use crate::text::{dash_if_empty, optional_ms, UNSET};
use crate::when::full_time;

/// The windows llmopsd keeps; each gets a section even when no request fell in it.
const STANDARD_WINDOWS_SECONDS: [u32; 3] = [60, 300, 3600];

const COLUMNS: [Column; 12] = [
    Column::left("ROUTE"),
    Column::left("MODEL"),
    Column::right("REQ/S"),
    Column::right("ERR%"),
    Column::right("LAT p50"),
    Column::right("LAT p95"),
    Column::right("LAT p99"),
    Column::right("TTFT p50"),
    Column::right("TTFT p95"),
    Column::right("ITL p50"),
    Column::right("TOK/S"),
    Column::right("IN FLIGHT"),
];

pub fn render_request_metrics<Tz: TimeZone>(metrics: &RequestMetrics, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let mut report = Report::default();
    report.field("at", full_time(metrics.at_unix_ms, zone));
    report.field("times", "ms; LAT whole request, TTFT to the first token, ITL between tokens");

    let mut windows: BTreeMap<u32, Vec<&RouteWindow>> =
        STANDARD_WINDOWS_SECONDS.iter().map(|&seconds| (seconds, Vec::new())).collect();
    for window in &metrics.windows {
        windows.entry(window.window_seconds).or_default().push(window);
    }
    for (seconds, mut rows) in windows {
        rows.sort_by(|a, b| (&a.route, &a.model).cmp(&(&b.route, &b.model)));
        report.section(&format!("LAST {}", window_name(seconds)));
        let mut table = Table::new(&COLUMNS);
        for row in rows {
            table.push(route_window_cells(row));
        }
        report.block(&table.render());
    }
    if !metrics.scores.is_empty() {
        report.section("FEEDBACK SCORES (since llmopsd started)");
        report.block(&score_table(&metrics.scores));
    }
    report.text
}

/// One row per route, prompt, score name and source: counts, the pass rate of pass/fail scores and the mean
/// of numeric ones ("-" without any).
fn score_table(scores: &[ScoreRate]) -> String {
    let mut table = Table::new(&[
        Column::left("ROUTE"),
        Column::left("PROMPT"),
        Column::left("SCORE"),
        Column::left("SOURCE"),
        Column::right("N"),
        Column::right("PASS%"),
        Column::right("MEAN"),
    ]);
    for rate in scores {
        let prompt = match (rate.prompt_id.as_str(), rate.prompt_version.as_str()) {
            ("", "") => UNSET.to_owned(),
            (id, "") => id.to_owned(),
            (id, version) => format!("{id}@{version}"),
        };
        table.push(vec![
            dash_if_empty(&rate.route),
            prompt,
            dash_if_empty(&rate.name),
            dash_if_empty(&rate.source),
            rate.scores.to_string(),
            rate.pass_rate.map_or_else(|| UNSET.to_owned(), |rate| format!("{:.1}", rate * 100.0)),
            rate.mean.map_or_else(|| UNSET.to_owned(), |mean| format!("{mean:.3}")),
        ]);
    }
    table.render()
}

/// One row of `COLUMNS`.
fn route_window_cells(window: &RouteWindow) -> Vec<String> {
    let percentile = |percentiles: &Option<Percentiles>, pick: fn(&Percentiles) -> Option<f64>| {
        optional_ms(percentiles.as_ref().and_then(pick))
    };
    // Computed from the counts, so a window without requests reads "-" rather than 0%.
    let error_percent = if window.requests == 0 {
        UNSET.to_owned()
    } else {
        format!("{:.1}", window.errors as f64 * 100.0 / window.requests as f64)
    };
    vec![
        dash_if_empty(&window.route),
        dash_if_empty(&window.model),
        format!("{:.2}", window.requests_per_second),
        error_percent,
        percentile(&window.latency_ms, |p| p.p50),
        percentile(&window.latency_ms, |p| p.p95),
        percentile(&window.latency_ms, |p| p.p99),
        percentile(&window.ttft_ms, |p| p.p50),
        percentile(&window.ttft_ms, |p| p.p95),
        percentile(&window.inter_token_ms, |p| p.p50),
        format!("{:.1}", window.output_tokens_per_second),
        window.in_flight.to_string(),
    ]
}

/// "1m", "5m", "1h", "1h 30m".
fn window_name(seconds: u32) -> String {
    humantime::format_duration(Duration::from_secs(u64::from(seconds))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn window(seconds: u32, route: &str) -> RouteWindow {
        RouteWindow {
            route: route.into(),
            model: "qwen2.5:0.5b".into(),
            window_seconds: seconds,
            requests: 200,
            errors: 3,
            requests_per_second: 3.333,
            error_rate: 0.015,
            latency_ms: Some(Percentiles { p50: Some(812.4), p95: Some(2100.0), p99: Some(3999.6) }),
            ttft_ms: Some(Percentiles { p50: Some(95.0), p95: Some(240.2), p99: Some(400.0) }),
            inter_token_ms: Some(Percentiles { p50: Some(11.6), p95: Some(20.0), p99: None }),
            output_tokens_per_second: 412.25,
            in_flight: 4,
            cost_usd: 0.5,
            cost_usd_per_hour: 30.0,
        }
    }

    #[test]
    fn one_table_per_window_with_every_column() {
        let metrics = RequestMetrics {
            at_unix_ms: 1_717_000_000_123,
            windows: vec![window(300, "small"), window(60, "small"), window(60, "big")],
            ..RequestMetrics::default()
        };
        let text = render_request_metrics(&metrics, &Utc);
        assert!(text.starts_with("at                2024-05-29 16:26:40.123 +00:00\n"), "{text}");
        let (one_minute, rest) = text.split_once("\nLAST 5m\n").expect("a 5m section");
        assert!(one_minute.contains("\nLAST 1m\nROUTE  MODEL         REQ/S  ERR%  LAT p50"), "{text}");
        assert!(
            one_minute.contains("big    qwen2.5:0.5b   3.33   1.5      812     2100     4000        95       240       12  412.2          4\n"),
            "{text}"
        );
        assert!(one_minute.find("big").is_some_and(|big| one_minute.find("small").is_some_and(|small| big < small)));
        assert!(rest.contains("small  qwen2.5:0.5b   3.33"), "{text}");
        assert!(rest.ends_with("\nLAST 1h\nROUTE  MODEL  REQ/S  ERR%  LAT p50  LAT p95  LAT p99  TTFT p50  TTFT p95  ITL p50  TOK/S  IN FLIGHT\n(none)\n"), "{text}");
    }

    #[test]
    fn absent_percentiles_and_idle_windows_are_dashes() {
        let idle = RouteWindow {
            requests: 0,
            errors: 0,
            latency_ms: None,
            ttft_ms: Some(Percentiles { p50: None, p95: Some(1.0), p99: None }),
            inter_token_ms: None,
            ..window(60, "small")
        };
        let cells = route_window_cells(&idle);
        assert_eq!(cells[3..10], ["-", "-", "-", "-", "-", "1", "-"]);
    }

    #[test]
    fn feedback_scores_get_a_table_of_their_own_when_there_are_any() {
        let rate = ScoreRate {
            route: "small".into(),
            prompt_id: "support".into(),
            prompt_version: "3".into(),
            name: "thumbs".into(),
            source: "human".into(),
            scores: 8,
            booleans: 8,
            passed: 6,
            pass_rate: Some(0.75),
            ..ScoreRate::default()
        };
        let metrics = RequestMetrics { scores: vec![rate], ..RequestMetrics::default() };
        let text = render_request_metrics(&metrics, &Utc);
        assert!(
            text.contains(
                "\nFEEDBACK SCORES (since llmopsd started)\nROUTE  PROMPT     SCORE   SOURCE  N  PASS%  MEAN\n"
            ),
            "{text}"
        );
        assert!(text.contains("small  support@3  thumbs  human   8   75.0     -\n"), "{text}");
        let without = render_request_metrics(&RequestMetrics::default(), &Utc);
        assert!(!without.contains("FEEDBACK"), "{without}");
    }

    #[test]
    fn windows_are_named_in_short_units() {
        assert_eq!(window_name(60), "1m");
        assert_eq!(window_name(300), "5m");
        assert_eq!(window_name(3600), "1h");
        assert_eq!(window_name(5400), "1h 30m");
        assert_eq!(window_name(45), "45s");
    }
}
