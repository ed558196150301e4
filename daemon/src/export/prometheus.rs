//! The Prometheus text exposition format, version 0.0.4, and the request metrics in it.
//!
//! ```
//! use llmopsd::export::prometheus::{MetricKind, MetricWriter};
//! let mut w = MetricWriter::new();
//! w.family("llmops_gpu_power_watts", "GPU power draw.", MetricKind::Gauge);
//! w.sample("llmops_gpu_power_watts", &[("gpu", "0")], 231.5);
//! assert!(w.finish().ends_with("llmops_gpu_power_watts{gpu=\"0\"} 231.5\n"));
//! ```
use crate::telemetry::requests::CumulativeStats;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// The `Content-Type` of what [`MetricWriter::finish`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub const OPERATION_DURATION: &str = "gen_ai_client_operation_duration_seconds";
pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_seconds";
pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai_server_time_per_output_token_seconds";
pub const REQUESTS_TOTAL: &str = "llmops_requests_total";
pub const REQUESTS_IN_FLIGHT: &str = "llmops_requests_in_flight";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Name it `..._total`.
    Counter,
    Gauge,
    /// Write it with [`MetricWriter::histogram`].
    Histogram,
    Summary,
    Untyped,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
        }
    }
}

/// Builds one exposition. The format wants each family's samples in one group under a single `# HELP` and
/// `# TYPE`; the writer keeps one buffer per family, so families may be declared again and samples written
/// in any order. Families come out in the order first declared (or first written to).
///
/// Metric and label names must match `[a-zA-Z_:][a-zA-Z0-9_:]*` and `[a-zA-Z_][a-zA-Z0-9_]*` (checked in
/// debug builds); label values and help text may hold anything.
#[derive(Debug, Default)]
pub struct MetricWriter {
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: MetricKind,
    help: Option<String>,
    lines: String,
}

impl MetricWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (`name` without the `_bucket`/`_sum`/`_count` suffixes; a counter's ends in
    /// `_total`). Declaring it again changes nothing: the first help and kind stay.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        let index = self.family_index(name, kind);
        if let Some(family) = self.families.get_mut(index) {
            family.help.get_or_insert_with(|| help.to_owned());
        }
    }

    /// One sample. `name` is a family's name or, for a histogram or summary family, that plus `_bucket`,
    /// `_sum` or `_count`; a sample of no declared family makes an untyped family of its own.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let index = self.owner(name);
        if let Some(family) = self.families.get_mut(index) {
            write_line(&mut family.lines, name, labels, None, &format_value(value));
        }
    }

    /// One histogram series: `_bucket` lines, cumulative, up to `le="+Inf"`, then `_sum` and `_count`.
    /// `counts[i]` counts observations in (`bounds[i-1]`, `bounds[i]`]; an element past the bounds counts
    /// those above the last bound. `_count` is the sum of `counts`. Declares `name` a histogram if undeclared.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], counts: &[u64], sum: f64) {
        debug_assert!(counts.len() == bounds.len() || counts.len() == bounds.len() + 1, "one count per bucket");
        let index = self.family_index(name, MetricKind::Histogram);
        let Some(family) = self.families.get_mut(index) else { return };
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0_u64;
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative = cumulative.saturating_add(*count);
            write_line(&mut family.lines, &bucket, labels, Some(&format_value(*bound)), &cumulative.to_string());
        }
        let total = counts.iter().fold(0_u64, |total, count| total.saturating_add(*count)).to_string();
        write_line(&mut family.lines, &bucket, labels, Some("+Inf"), &total);
        write_line(&mut family.lines, &format!("{name}_sum"), labels, None, &format_value(sum));
        write_line(&mut family.lines, &format!("{name}_count"), labels, None, &total);
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for family in self.families {
            if let Some(help) = family.help.as_deref().filter(|help| !help.is_empty()) {
                let _ = writeln!(out, "# HELP {} {}", family.name, escape(help, false));
            }
            if family.kind != MetricKind::Untyped {
                let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            }
            out.push_str(&family.lines);
        }
        out
    }

    fn family_index(&mut self, name: &str, kind: MetricKind) -> usize {
        debug_assert!(valid_name(name, true), "invalid metric name {name:?}");
        if let Some(&index) = self.by_name.get(name) {
            if let Some(family) = self.families.get_mut(index).filter(|f| f.kind == MetricKind::Untyped) {
                family.kind = kind;
            }
            return index;
        }
        self.families.push(Family { name: name.to_owned(), kind, help: None, lines: String::new() });
        self.by_name.insert(name.to_owned(), self.families.len() - 1);
        self.families.len() - 1
    }

    /// The family a sample name belongs to.
    fn owner(&mut self, name: &str) -> usize {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix));
        let grouped = base.and_then(|base| self.by_name.get(base)).copied().filter(|&index| {
            self.families.get(index).is_some_and(|f| matches!(f.kind, MetricKind::Histogram | MetricKind::Summary))
        });
        grouped.unwrap_or_else(|| self.family_index(name, MetricKind::Untyped))
    }
}

/// `name{label="value",...,le="bound"} value`.
fn write_line(out: &mut String, name: &str, labels: &[(&str, &str)], le: Option<&str>, value: &str) {
    out.push_str(name);
    let le = le.map(|bound| ("le", bound));
    let mut all = labels.iter().copied().chain(le).peekable();
    if all.peek().is_some() {
        out.push('{');
        for (i, (label, value)) in all.enumerate() {
            debug_assert!(valid_name(label, false), "invalid label name {label:?}");
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, "{comma}{label}=\"{}\"", escape(value, true));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Backslash and newline escaped, and for label values the double quote too.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, plain decimals (`3`, `0.25`) in the
/// usual range, and exponents (`1e21`, `1.5e-7`) only outside it.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value == 0.0 {
        "0".into() // also for -0.0
    } else if (1e-6..1e21).contains(&value.abs()) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

fn valid_name(name: &str, colons: bool) -> bool {
    let allowed = |c: char, first: bool| {
        c == '_' || (colons && c == ':') || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
    };
    name.chars().enumerate().all(|(i, c)| allowed(c, i == 0)) && !name.is_empty()
}

/// The request metrics since start: the OpenTelemetry GenAI histograms (attributes as labels, dots as
/// underscores; `gen_ai_request_model` is the route, `gen_ai_response_model` the model that answered,
/// `error_type` set on failures), requests by outcome, and requests in flight by route (0 for routes seen
/// before, so the gauge does not vanish between requests).
pub fn render_requests(w: &mut MetricWriter, cumulative: &[CumulativeStats], in_flight: &[(String, u64)]) {
    use MetricKind::{Counter, Gauge, Histogram};
    w.family(OPERATION_DURATION, "GenAI operation duration.", Histogram);
    w.family(TOKEN_USAGE, "Number of input and output tokens used.", Histogram);
    w.family(TIME_TO_FIRST_TOKEN, "Time to generate first token for successful responses.", Histogram);
    let per_token = "Time per output token generated after the first token for successful responses.";
    w.family(TIME_PER_OUTPUT_TOKEN, per_token, Histogram);
    w.family(REQUESTS_TOTAL, "Requests finished, by route, model and outcome (ok or error).", Counter);
    w.family(REQUESTS_IN_FLIGHT, "Requests in flight, by route.", Gauge);
    let mut outcomes: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    let mut routes: BTreeMap<&str, u64> = BTreeMap::new();
    for stats in cumulative {
        let mut labels = vec![
            ("gen_ai_operation_name", stats.operation.as_str()),
            ("gen_ai_request_model", stats.route.as_str()),
            ("gen_ai_response_model", stats.model.as_str()),
        ];
        if let Some(error_type) = &stats.error_type {
            labels.push(("error_type", error_type));
        }
        let series = [
            (OPERATION_DURATION, None, &stats.duration_s),
            (TIME_TO_FIRST_TOKEN, None, &stats.ttft_s),
            (TIME_PER_OUTPUT_TOKEN, None, &stats.time_per_output_token_s),
            (TOKEN_USAGE, Some("input"), &stats.input_tokens),
            (TOKEN_USAGE, Some("output"), &stats.output_tokens),
        ];
        // Empty series are left out: an embedding has no first token, a failure often no usage.
        for (name, token_type, histogram) in series.into_iter().filter(|(_, _, h)| h.count > 0) {
            let mut labels = labels.clone();
            labels.extend(token_type.map(|token_type| ("gen_ai_token_type", token_type)));
            w.histogram(name, &labels, histogram.bounds, &histogram.counts, histogram.sum);
        }
        let outcome = if stats.error_type.is_some() { "error" } else { "ok" };
        *outcomes.entry((&stats.route, &stats.model, outcome)).or_default() += stats.duration_s.count;
        routes.entry(&stats.route).or_default();
    }
    for ((route, model, outcome), count) in outcomes {
        w.sample(REQUESTS_TOTAL, &[("route", route), ("model", model), ("outcome", outcome)], count as f64);
    }
    for (route, count) in in_flight {
        routes.insert(route, *count);
    }
    for (route, count) in routes {
        w.sample(REQUESTS_IN_FLIGHT, &[("route", route)], count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::requests::{RequestMetrics, RequestObservation};

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = MetricWriter::new();
        w.family("up", "Line one\nback\\slash \"quoted\"", MetricKind::Gauge);
        w.sample("up", &[("path", "C:\\x\n\"y\"")], 1.0);
        let expected =
            "# HELP up Line one\\nback\\\\slash \"quoted\"\n# TYPE up gauge\nup{path=\"C:\\\\x\\n\\\"y\\\"\"} 1\n";
        assert_eq!(w.finish(), expected);
    }

    #[test]
    fn values_are_formatted_the_prometheus_way() {
        let cases = [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (-0.0, "0"),
            (3.0, "3"),
            (0.25, "0.25"),
            (-1.5, "-1.5"),
            (1048576.0, "1048576"),
            (1e20, "100000000000000000000"),
            (1e21, "1e21"),
            (1.5e-7, "1.5e-7"),
        ];
        for (value, text) in cases {
            assert_eq!(format_value(value), text, "{value}");
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets() {
        let mut w = MetricWriter::new();
        w.family("latency_seconds", "Latency.", MetricKind::Histogram);
        w.histogram("latency_seconds", &[("route", "a")], &[0.1, 1.0], &[2, 1, 4], 9.5);
        let expected = "\
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{route=\"a\",le=\"0.1\"} 2
latency_seconds_bucket{route=\"a\",le=\"1\"} 3
latency_seconds_bucket{route=\"a\",le=\"+Inf\"} 7
latency_seconds_sum{route=\"a\"} 9.5
latency_seconds_count{route=\"a\"} 7
";
        assert_eq!(w.finish(), expected);
    }

    #[test]
    fn families_are_written_once_with_their_samples_together() {
        let mut w = MetricWriter::new();
        w.family("a_total", "A.", MetricKind::Counter);
        w.sample("a_total", &[("x", "1")], 1.0);
        w.family("b", "B.", MetricKind::Gauge);
        w.sample("b", &[], 2.0);
        w.family("a_total", "Again.", MetricKind::Gauge);
        w.sample("a_total", &[("x", "2")], 3.0);
        w.sample("loose", &[], 4.0);
        w.family("h", "H.", MetricKind::Histogram);
        w.sample("b", &[("y", "1")], 5.0);
        w.sample("h_count", &[], 6.0);
        let expected = "\
# HELP a_total A.
# TYPE a_total counter
a_total{x=\"1\"} 1
a_total{x=\"2\"} 3
# HELP b B.
# TYPE b gauge
b 2
b{y=\"1\"} 5
loose 4
# HELP h H.
# TYPE h histogram
h_count 6
";
        assert_eq!(w.finish(), expected);
    }

    #[test]
    fn request_metrics_render_as_genai_families() {
        let metrics = RequestMetrics::created_at(0);
        let offsets = [200.0, 250.0];
        let base = RequestObservation {
            route: "r",
            model: "m",
            operation: "chat",
            ended_at_unix_ms: 1_000,
            ..Default::default()
        };
        metrics.observe(&RequestObservation {
            latency_ms: 300.0,
            ttft_ms: Some(200.0),
            chunk_offsets_ms: &offsets,
            input_tokens: 7,
            output_tokens: 2,
            ..base
        });
        metrics.observe(&RequestObservation { latency_ms: 50.0, error_type: Some("timeout_error"), ..base });
        let mut w = MetricWriter::new();
        render_requests(&mut w, &metrics.cumulative(), &[("idle".into(), 0), ("s".into(), 2)]);
        let text = w.finish();
        let ok = "gen_ai_operation_name=\"chat\",gen_ai_request_model=\"r\",gen_ai_response_model=\"m\"";
        for line in [
            format!("gen_ai_client_operation_duration_seconds_bucket{{{ok},le=\"0.32\"}} 1"),
            format!("gen_ai_client_operation_duration_seconds_count{{{ok},error_type=\"timeout_error\"}} 1"),
            format!("gen_ai_client_token_usage_bucket{{{ok},gen_ai_token_type=\"input\",le=\"16\"}} 1"),
            format!("gen_ai_client_token_usage_sum{{{ok},gen_ai_token_type=\"output\"}} 2"),
            format!("gen_ai_server_time_to_first_token_seconds_sum{{{ok}}} 0.2"),
            // (0.3 s − 0.2 s) / 1 token.
            format!("gen_ai_server_time_per_output_token_seconds_bucket{{{ok},le=\"0.1\"}} 1"),
            "llmops_requests_total{route=\"r\",model=\"m\",outcome=\"error\"} 1".into(),
            "llmops_requests_total{route=\"r\",model=\"m\",outcome=\"ok\"} 1".into(),
            "llmops_requests_in_flight{route=\"idle\"} 0".into(),
            "llmops_requests_in_flight{route=\"r\"} 0".into(),
            "llmops_requests_in_flight{route=\"s\"} 2".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // The failure has no first token and no usage, so no such series.
        assert!(!text.contains("time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"r\",gen_ai_response_model=\"m\",error_type"));
        assert_eq!(text.matches("# TYPE ").count(), 6);
        assert_eq!(text.lines().filter(|l| l.starts_with("gen_ai_client_token_usage_count")).count(), 2);
    }
}
