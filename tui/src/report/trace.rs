//! `llmopsctl trace ID`.
use std::fmt::Display;

use chrono::TimeZone;
use llmops_proto::v1::Trace;

use super::Report;
use crate::names::trace_status_name;
use crate::scores::{source_name, value_text};
use crate::table::{Column, Table};
use crate::text::{dash_if_empty, error_text, format_ms, http_status_text, one_line, optional_ms, UNSET};
use crate::when::full_time;

pub fn render_trace<Tz: TimeZone>(trace: &Trace, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let mut report = Report::default();
    header_fields(&mut report, trace, zone);

    report.section("TAGS");
    let mut tags: Vec<_> = trace.tags.iter().collect();
    tags.sort();
    if tags.is_empty() {
        report.block("(none)");
    }
    for (key, value) in tags {
        report.field(key, value);
    }

    report.section("TIMING");
    report.field("ttft", with_unit(optional_ms(trace.ttft_ms), "ms"));
    report.field("latency", with_unit(format_ms(trace.latency_ms), "ms"));
    report.field("chunks", chunk_summary(&trace.chunk_offsets_ms));

    report.section("ATTEMPTS");
    report.block(&attempts_table(trace));

    report.section("SCORES");
    report.block(&scores_table(trace, zone));

    if !trace.guardrails.is_empty() {
        report.section("GUARDRAILS");
        for verdict in &trace.guardrails {
            let detail = if verdict.detail.is_empty() { String::new() } else { format!(" ({})", verdict.detail) };
            let line = format!(
                "{} {} on {}: {} matches{detail}",
                verdict.rule, verdict.action, verdict.stage, verdict.matches
            );
            report.block(&one_line(&line));
        }
    }
    if let Some(cache) = &trace.cache {
        report.section("CACHE");
        report.field("result", &cache.result);
        report.field("stored", cache.stored);
        if cache.result == "hit" {
            report.field("answer of", &cache.source_trace_id);
            report.field(
                "saved",
                format!(
                    "{} input + {} output tokens, ${:.6}",
                    cache.saved_input_tokens, cache.saved_output_tokens, cache.saved_usd
                ),
            );
        }
    }

    body(&mut report, "PROMPT", &trace.prompt_text, trace.prompt_chars, &trace.prompt_sha256);
    body(&mut report, "RESPONSE", &trace.response_text, trace.response_chars, &trace.response_sha256);
    report.section("REQUEST JSON");
    report.block(&pretty_json(&trace.request_json));
    report.text
}

fn header_fields<Tz: TimeZone>(report: &mut Report, trace: &Trace, zone: &Tz)
where
    Tz::Offset: Display,
{
    let estimated = if trace.tokens_estimated { " (estimated by llmopsd)" } else { "" };
    let tokens = format!("in {}, out {}{estimated}", trace.input_tokens, trace.output_tokens);
    let cost = trace.cost_usd.map_or_else(|| UNSET.to_owned(), |usd| format!("${usd:.6}"));
    let energy = trace.energy_joules.map_or_else(|| UNSET.to_owned(), |j| format!("{j:.3} J"));
    let mut fields = vec![
        ("id", dash_if_empty(&trace.id)),
        ("started", full_time(trace.started_at_unix_ms, zone)),
        ("ended", full_time(trace.ended_at_unix_ms, zone)),
        ("endpoint", dash_if_empty(&trace.endpoint)),
        ("stream", if trace.stream { "yes" } else { "no" }.to_owned()),
        ("route", dash_if_empty(&trace.route)),
        ("model requested", dash_if_empty(&trace.model_requested)),
        ("model served", dash_if_empty(&trace.model_served)),
        ("engine", dash_if_empty(&trace.engine)),
        ("status", trace_status_name(trace.status).to_owned()),
        ("http status", http_status_text(trace.http_status)),
        ("finish reason", dash_if_empty(&trace.finish_reason)),
        ("error", dash_if_empty(&error_text(trace))),
        ("tenant", dash_if_empty(&trace.tenant)),
        ("user", dash_if_empty(&trace.user)),
        ("session id", dash_if_empty(&trace.session_id)),
        ("prompt id", dash_if_empty(&trace.prompt_id)),
        ("prompt version", dash_if_empty(&trace.prompt_version)),
        ("tokens", tokens),
        ("cost", cost),
        ("energy", energy),
    ];
    // Only for registry prompts (`metadata.prompt`): other traces keep their layout.
    if !trace.prompt_hash.is_empty() {
        if let Some(at) = fields.iter().position(|(label, _)| *label == "prompt version") {
            fields.insert(at + 1, ("prompt hash", trace.prompt_hash.clone()));
        }
    }
    for (label, value) in fields {
        report.field(label, value);
    }
}

fn attempts_table(trace: &Trace) -> String {
    if trace.attempts.is_empty() {
        // Rejected requests never reach an engine.
        return "(none)".to_owned();
    }
    let mut attempts = Table::new(&[
        Column::right("#"),
        Column::left("ENGINE"),
        Column::left("MODEL"),
        Column::right("START ms"),
        Column::right("LAT ms"),
        Column::right("TTFT ms"),
        Column::right("HTTP"),
        Column::left("ERROR"),
    ]);
    for (index, attempt) in trace.attempts.iter().enumerate() {
        attempts.push(vec![
            (index + 1).to_string(),
            dash_if_empty(&attempt.engine),
            dash_if_empty(&attempt.model),
            format_ms(attempt.start_offset_ms),
            format_ms(attempt.latency_ms),
            optional_ms(attempt.ttft_ms),
            http_status_text(attempt.upstream_status),
            one_line(&attempt.error),
        ]);
    }
    attempts.render()
}

/// Feedback on the trace, oldest first: name, value (pass, fail, a number or a label), who gave it, when, and
/// the comment on one line.
fn scores_table<Tz: TimeZone>(trace: &Trace, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    if trace.scores.is_empty() {
        return "(none)".to_owned();
    }
    let mut table = Table::new(&[
        Column::left("NAME"),
        Column::left("VALUE"),
        Column::left("SOURCE"),
        Column::left("WHEN"),
        Column::left("COMMENT"),
    ]);
    for score in &trace.scores {
        table.push(vec![
            dash_if_empty(&score.name),
            value_text(score),
            source_name(score.source).to_owned(),
            full_time(score.created_at_unix_ms, zone),
            dash_if_empty(&one_line(&score.comment)),
        ]);
    }
    table.render()
}

fn with_unit(value: String, unit: &str) -> String {
    if value == UNSET {
        value
    } else {
        format!("{value} {unit}")
    }
}

fn chunk_summary(offsets_ms: &[f64]) -> String {
    match (offsets_ms.first(), offsets_ms.last()) {
        (Some(first), Some(last)) => {
            let (first, last) = (format_ms(*first), format_ms(*last));
            format!("{} (first at {first} ms, last at {last} ms)", offsets_ms.len())
        }
        _ => "0".to_owned(),
    }
}

/// A body with its length and hash; says so when privacy mode kept only those.
fn body(report: &mut Report, title: &str, text: &str, chars: u64, sha256: &str) {
    let hash = if sha256.is_empty() { String::new() } else { format!(", sha256 {sha256}") };
    report.section(&format!("{title} ({chars} chars{hash})"));
    if !text.is_empty() {
        report.block(text);
    } else if chars > 0 {
        report.block("(not stored: privacy mode)");
    } else {
        report.block("(empty)");
    }
}

fn pretty_json(raw: &str) -> String {
    if raw.is_empty() {
        return "(not stored)".to_owned();
    }
    serde_json::from_str::<serde_json::Value>(raw)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|_| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use llmops_proto::v1::{Attempt, TraceStatus};

    #[test]
    fn trace_report_shows_fields_attempts_timing_and_bodies() {
        let trace = Trace {
            id: "t-9".into(),
            status: TraceStatus::Ok as i32,
            tags: [("team".to_owned(), "search".to_owned())].into(),
            ttft_ms: Some(99.6),
            latency_ms: 400.0,
            tokens_estimated: true,
            input_tokens: 7,
            chunk_offsets_ms: vec![99.6, 250.0, 390.2],
            attempts: vec![Attempt { engine: "e1".into(), error: "timeout".into(), ..Attempt::default() }],
            prompt_text: "user: hi".into(),
            prompt_chars: 8,
            response_chars: 5,
            response_sha256: "abc".into(),
            request_json: r#"{"model":"small"}"#.into(),
            ..Trace::default()
        };
        let text = render_trace(&trace, &Utc);
        assert!(text.starts_with("id                t-9\n"), "{text}");
        assert!(text.contains("status            ok\n"), "{text}");
        assert!(text.contains("tokens            in 7, out 0 (estimated by llmopsd)\n"), "{text}");
        assert!(text.contains("cost              -\n"), "{text}");
        assert!(text.contains("\nTAGS\nteam              search\n"), "{text}");
        assert!(text.contains("ttft              100 ms\n"), "{text}");
        assert!(text.contains("chunks            3 (first at 100 ms, last at 390 ms)\n"), "{text}");
        assert!(text.contains("1  e1      -"), "{text}");
        assert!(text.contains("-  timeout\n"), "{text}");
        assert!(text.contains("\nPROMPT (8 chars)\nuser: hi\n"), "{text}");
        assert!(text.contains("\nRESPONSE (5 chars, sha256 abc)\n(not stored: privacy mode)\n"), "{text}");
        assert!(text.contains("\"model\": \"small\""), "{text}");
        assert!(text.contains("\nSCORES\n(none)\n"), "{text}");
    }

    #[test]
    fn scores_are_listed_oldest_first_with_value_source_and_comment() {
        use llmops_proto::v1::{score::Value, Score, ScoreSource};
        let score = |name: &str, value, source: ScoreSource, comment: &str| Score {
            name: name.into(),
            value: Some(value),
            source: source as i32,
            comment: comment.into(),
            created_at_unix_ms: 1_717_000_000_000,
            ..Score::default()
        };
        let trace = Trace {
            scores: vec![
                score("thumbs", Value::Passed(false), ScoreSource::Human, "wrong city\nand rude"),
                score("quality", Value::Number(0.25), ScoreSource::Llm, ""),
            ],
            ..Trace::default()
        };
        let text = render_trace(&trace, &Utc);
        let section = text.split_once("\nSCORES\n").expect("a scores section").1;
        assert!(section.starts_with("NAME     VALUE  SOURCE  WHEN"), "{text}");
        assert!(section.contains("thumbs   fail   human   2024-05-29 16:26:40.000 +00:00  wrong city"), "{text}");
        assert!(section.contains("quality  0.25   llm"), "{text}");
    }

    #[test]
    fn empty_trace_reads_as_dashes_not_zeros() {
        let text = render_trace(&Trace::default(), &Utc);
        assert!(text.contains("started           -\n"), "{text}");
        assert!(text.contains("ttft              -\n"), "{text}");
        assert!(text.contains("\nTAGS\n(none)\n"), "{text}");
        assert!(text.contains("\nATTEMPTS\n(none)\n"), "{text}");
        assert!(text.contains("\nREQUEST JSON\n(not stored)\n"), "{text}");
    }
}
