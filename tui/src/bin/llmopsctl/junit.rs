//! An evaluation run as JUnit XML, the format CI systems show as test results: one test case per item (a
//! failure when it failed an evaluator whose threshold was missed, an error when its request failed), one per
//! evaluator threshold and one for the comparison with the baseline. Failures tolerated by a threshold below 1
//! are not JUnit failures (they are listed in the case's output), so the file fails exactly when the verdict
//! does.
use std::fmt::Write;

use llmops_proto::v1::{EvalItemResult, EvalRun};

/// Text as XML character data or an attribute value: the five special characters escaped, and the characters
/// XML 1.0 cannot hold at all (most control characters) dropped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => escaped.push(c),
        }
    }
    escaped
}

fn seconds(ms: f64) -> String {
    format!("{:.3}", (ms / 1000.0).max(0.0))
}

/// The JUnit document for `run` and its `items`.
pub fn render(run: &EvalRun, items: &[EvalItemResult]) -> String {
    let missed: Vec<&str> = run.evaluators.iter().filter(|e| !e.ok).map(|e| e.name.as_str()).collect();
    let mut cases = String::new();
    let (mut failures, mut errors, mut tests) = (0, 0, 0);
    let suite = escape(&run.dataset);
    for item in items {
        tests += 1;
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{suite}\" name=\"item {}\" time=\"{}\">",
            escape(&item.item_id),
            seconds(item.latency_ms)
        );
        let failed: Vec<String> =
            item.results.iter().filter(|r| !r.passed).map(|r| format!("{}: {}", r.name, r.reasoning)).collect();
        let counted = item.results.iter().any(|r| !r.passed && missed.contains(&r.name.as_str()));
        if !item.error.is_empty() {
            errors += 1;
            let _ = writeln!(cases, "      <error message=\"{}\" type=\"request\"/>", escape(&item.error));
        } else if counted {
            failures += 1;
            let _ = writeln!(
                cases,
                "      <failure message=\"{}\" type=\"evaluator\">{}</failure>",
                escape(failed.first().map_or("", String::as_str)),
                escape(&failed.join("\n"))
            );
        } else if !failed.is_empty() {
            let _ = writeln!(
                cases,
                "      <system-out>tolerated by a threshold: {}</system-out>",
                escape(&failed.join("\n"))
            );
        }
        let _ = writeln!(cases, "    </testcase>");
    }
    for evaluator in &run.evaluators {
        tests += 1;
        let name = escape(&format!("threshold {}", evaluator.name));
        let _ = write!(cases, "    <testcase classname=\"{suite}\" name=\"{name}\" time=\"0\">");
        if !evaluator.ok {
            failures += 1;
            let message = format!(
                "{} of {} passed ({:.1}%) < threshold {:.1}%",
                evaluator.passed,
                evaluator.scored,
                evaluator.pass_rate * 100.0,
                evaluator.threshold * 100.0
            );
            let _ = write!(cases, "<failure message=\"{}\" type=\"threshold\"/>", escape(&message));
        }
        let _ = writeln!(cases, "</testcase>");
    }
    if let Some(c) = &run.comparison {
        tests += 1;
        let name = escape(&format!("compared with {}", c.baseline));
        let _ = write!(cases, "    <testcase classname=\"{suite}\" name=\"{name}\" time=\"0\">");
        if c.ci_high < 0.0 {
            failures += 1;
            let message = format!(
                "significantly worse: mean difference {:+.3} (95% CI {:+.3} to {:+.3}); regressed: {}",
                c.mean_difference,
                c.ci_low,
                c.ci_high,
                c.regressed_items.join(", ")
            );
            let _ = write!(cases, "<failure message=\"{}\" type=\"regression\"/>", escape(&message));
        }
        let _ = writeln!(cases, "</testcase>");
    }
    let time = seconds((run.finished_at_unix_ms - run.started_at_unix_ms) as f64);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"llmops eval\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">"
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{suite} {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">",
        escape(&run.id)
    );
    let _ = writeln!(xml, "    <properties>");
    for (name, value) in [("route", &run.route), ("prompt", &run.prompt), ("verdict", &run.verdict)] {
        let _ = writeln!(xml, "      <property name=\"{name}\" value=\"{}\"/>", escape(value));
    }
    let _ = writeln!(xml, "    </properties>");
    xml.push_str(&cases);
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmops_proto::v1::{EvalComparison, EvaluatorResult, EvaluatorSummary};

    #[test]
    fn escapes_markup_and_drops_what_xml_cannot_hold() {
        assert_eq!(escape("a<b>&\"c'\u{1b}[2J\u{0}\n"), "a&lt;b&gt;&amp;&quot;c&apos;[2J\n");
    }

    #[test]
    fn fails_exactly_where_the_verdict_does() {
        let run = EvalRun {
            id: "run-2".into(),
            dataset: "qa".into(),
            evaluators: vec![
                EvaluatorSummary { name: "contains".into(), ok: false, passed: 1, scored: 3, ..Default::default() },
                EvaluatorSummary { name: "regex".into(), ok: true, threshold: 0.5, ..Default::default() },
            ],
            comparison: Some(EvalComparison { baseline: "run-1".into(), ci_high: -0.2, ..Default::default() }),
            ..Default::default()
        };
        let failed = |name: &str| EvaluatorResult { name: name.into(), passed: false, ..Default::default() };
        let items = vec![
            EvalItemResult { item_id: "1".into(), results: vec![failed("contains")], ..Default::default() },
            EvalItemResult { item_id: "2".into(), results: vec![failed("regex")], ..Default::default() },
            EvalItemResult { item_id: "3".into(), error: "HTTP 502".into(), ..Default::default() },
        ];
        let xml = render(&run, &items);
        assert!(xml.contains("tests=\"6\" failures=\"3\" errors=\"1\""), "{xml}");
        assert!(xml.contains("tolerated by a threshold: regex"), "{xml}");
    }
}
