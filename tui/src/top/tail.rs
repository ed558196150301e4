//! The rows of the traces view: the tail filtered by the `/` words and sorted by the chosen column.
use std::cmp::Ordering;

use llmops_proto::v1 as pb;

use super::state::{SortKey, TraceTail, TracesUi};

/// In-flight traces first (newest first), then finished ones, filtered and sorted as `ui` says.
pub fn visible<'a>(tail: &'a TraceTail, ui: &TracesUi) -> Vec<&'a pb::Trace> {
    let filter = Filter::parse(&ui.filter);
    let mut rows: Vec<&pb::Trace> =
        tail.in_flight.iter().rev().chain(tail.finished.iter()).filter(|t| filter.matches(t)).collect();
    if ui.sort != SortKey::Time || !ui.descending {
        // Stable: equal keys keep newest-first order.
        rows.sort_by(|a, b| {
            let order = compare(a, b, ui.sort);
            if ui.descending {
                order.reverse()
            } else {
                order
            }
        });
    }
    rows
}

fn compare(a: &pb::Trace, b: &pb::Trace, key: SortKey) -> Ordering {
    let float = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match key {
        SortKey::Time => a.started_at_unix_ms.cmp(&b.started_at_unix_ms),
        SortKey::Route => a.route.cmp(&b.route),
        SortKey::Model => served_or_requested(a).cmp(served_or_requested(b)),
        SortKey::Status => a.status.cmp(&b.status),
        SortKey::Ttft => float(a.ttft_ms.unwrap_or(-1.0), b.ttft_ms.unwrap_or(-1.0)),
        SortKey::Latency => float(a.latency_ms, b.latency_ms),
        SortKey::TokensIn => a.input_tokens.cmp(&b.input_tokens),
        SortKey::TokensOut => a.output_tokens.cmp(&b.output_tokens),
        SortKey::Cost => float(a.cost_usd.unwrap_or(-1.0), b.cost_usd.unwrap_or(-1.0)),
    }
}

/// Whether one trace passes the `/` filter `filter` (the same words as the traces view).
pub fn matches(filter: &str, trace: &pb::Trace) -> bool {
    Filter::parse(filter).matches(trace)
}

pub fn served_or_requested(trace: &pb::Trace) -> &str {
    if trace.model_served.is_empty() {
        &trace.model_requested
    } else {
        &trace.model_served
    }
}

/// `model:`, `route:` and `status:` words match those fields (substring, any case); other words must appear
/// in the route, model, tenant, error, prompt or response.
#[derive(Debug, Default)]
struct Filter {
    model: Vec<String>,
    route: Vec<String>,
    status: Vec<String>,
    text: Vec<String>,
}

impl Filter {
    fn parse(input: &str) -> Self {
        let mut filter = Self::default();
        for word in input.split_whitespace().map(str::to_lowercase) {
            match word.split_once(':') {
                Some(("model", v)) => filter.model.push(v.to_string()),
                Some(("route", v)) => filter.route.push(v.to_string()),
                Some(("status", v)) => filter.status.push(v.to_string()),
                _ => filter.text.push(word),
            }
        }
        filter
    }

    fn matches(&self, trace: &pb::Trace) -> bool {
        let has = |field: &str, needle: &str| field.to_lowercase().contains(needle);
        let model_ok = self.model.iter().all(|m| has(&trace.model_requested, m) || has(&trace.model_served, m));
        let route_ok = self.route.iter().all(|r| has(&trace.route, r));
        let status = status_name(trace.status);
        let status_ok = self.status.iter().all(|s| status.starts_with(s.as_str()));
        let text_ok = self.text.iter().all(|w| {
            [&trace.route, &trace.model_requested, &trace.model_served, &trace.tenant, &trace.error_message]
                .into_iter()
                .chain([&trace.prompt_text, &trace.response_text])
                .any(|field| has(field, w))
        });
        model_ok && route_ok && status_ok && text_ok
    }
}

/// Lower-case status word as the filter and the status column use it: the shared names, except that a trace
/// in flight reads "running" and an unknown status "unknown" on screen.
pub fn status_name(status: i32) -> &'static str {
    match crate::names::trace_status_name(status) {
        "in_flight" => "running",
        "unspecified" => "unknown",
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(id: &str, route: &str, status: pb::TraceStatus, latency_ms: f64, started: i64) -> pb::Trace {
        pb::Trace {
            id: id.into(),
            route: route.into(),
            model_requested: route.into(),
            status: status as i32,
            latency_ms,
            started_at_unix_ms: started,
            response_text: format!("answer from {route}"),
            ..pb::Trace::default()
        }
    }

    fn tail() -> TraceTail {
        TraceTail {
            finished: [
                trace("c", "chat", pb::TraceStatus::Ok, 30.0, 3),
                trace("b", "code", pb::TraceStatus::Error, 90.0, 2),
                trace("a", "chat", pb::TraceStatus::Ok, 10.0, 1),
            ]
            .into(),
            in_flight: vec![trace("d", "code", pb::TraceStatus::InFlight, 0.0, 4)],
            missed: 0,
        }
    }

    fn ids(rows: &[&pb::Trace]) -> Vec<String> {
        rows.iter().map(|t| t.id.clone()).collect()
    }

    #[test]
    fn newest_first_with_running_on_top() {
        assert_eq!(ids(&visible(&tail(), &TracesUi::default())), ["d", "c", "b", "a"]);
    }

    #[test]
    fn filter_words_combine() {
        let tail = tail();
        let by = |filter: &str| ids(&visible(&tail, &TracesUi { filter: filter.into(), ..TracesUi::default() }));
        assert_eq!(by("route:chat"), ["c", "a"]);
        assert_eq!(by("status:err"), ["b"]);
        assert_eq!(by("code status:ok"), Vec::<String>::new());
        assert_eq!(by("ANSWER model:co"), ["d", "b"]);
    }

    #[test]
    fn sorts_by_column_both_ways() {
        let tail = tail();
        let ui = TracesUi { sort: SortKey::Latency, descending: true, ..TracesUi::default() };
        assert_eq!(ids(&visible(&tail, &ui)), ["b", "c", "a", "d"]);
        let ui = TracesUi { descending: false, ..ui };
        assert_eq!(ids(&visible(&tail, &ui)), ["d", "a", "c", "b"]);
    }
}
