//! What the feed tells the main loop about one daemon (`HostUpdate`), and how a `Host` merges it.
use llmops_proto::v1 as pb;

use crate::alert_enums;

use super::state::{GpuHistory, Host, Link, SPARK_POINTS, TRACE_TAIL_CAPACITY};

/// Resolved alerts kept per host; firing and acknowledged ones are never dropped.
const RESOLVED_ALERTS_KEPT: usize = 200;
/// How far into the newest finished traces a FINISHED event looks for a copy already listed. The feed opens
/// the watch (with the daemon's recently finished traces, at most 256) before listing, so only those first
/// events can repeat listed traces, and they are among the newest.
const DUPLICATE_WINDOW: usize = 512;

/// One piece of news from a host's feed task, applied in the main loop.
#[derive(Debug, Clone, PartialEq)]
pub enum HostUpdate {
    Link(Link),
    Status(pb::Status),
    /// A full `GetTelemetry` sample: replaces the picture.
    Telemetry(pb::TelemetrySample),
    /// A `WatchTelemetry` update: only the GPUs, engines and host that changed.
    TelemetryDelta(pb::TelemetryUpdate),
    Metrics(pb::RequestMetrics),
    /// `ListBudgets`: replaces them all.
    Budgets(Vec<pb::Budget>),
    /// `WatchBudgets`: the budgets that changed.
    BudgetsChanged(Vec<pb::Budget>),
    /// `ListAlerts`: replaces them all.
    Alerts(Vec<pb::Alert>),
    AlertEvent(pb::AlertEvent),
    /// `ListTraces`, newest first: replaces the tail.
    Traces(Vec<pb::Trace>),
    TraceEvent(pb::TraceEvent),
    /// The daemon dropped this viewer's trace watch after it fell behind by this many events.
    TracesMissed(u64),
    EngineLogs(pb::EngineLogs),
    /// The daemon does not serve this panel's RPCs (older llmopsd) or refused them; the sentence says why.
    Unavailable {
        panel: &'static str,
        reason: String,
    },
    /// The answer to `Effect::FetchTrace`.
    TraceDetail {
        id: String,
        result: Result<pb::Trace, String>,
    },
    /// Telemetry from while a fetched trace ran (after `TraceDetail`), or why there is none.
    TraceGpu {
        id: String,
        result: Result<Vec<pb::TelemetrySample>, String>,
    },
    /// The stream of `Effect::Replay`.
    Replay(ReplayUpdate),
    /// A score stored by `Effect::Thumbs`, for the open detail of its trace.
    ScoreAdded(pb::Score),
    /// `ListEvalRuns` (newest first), polled while the evals view is open, or why it failed.
    EvalRuns(Result<Vec<pb::EvalRun>, String>),
    /// The answer to `Effect::FetchEvalRun`.
    EvalRunDetail {
        id: String,
        result: Result<pb::EvalRunDetail, String>,
    },
    /// The answer to `Effect::AddToDataset` (the app words it as a notice), or why it failed.
    DatasetItemsAdded {
        trace_id: String,
        dataset: String,
        result: Result<pb::AddDatasetItemsResponse, String>,
    },
    /// The outcome of an action (acknowledge, ...), or why a command could not run.
    Notice {
        text: String,
        error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplayUpdate {
    Started(pb::ReplayStarted),
    Chunk(pb::ReplayChunk),
    /// Boxed: it carries the whole new trace.
    Done(Box<pb::ReplayDone>),
    Failed(String),
}

impl Host {
    /// Merges one update. Detail, replay and notice updates belong to the app, not the host, and are ignored.
    pub fn apply(&mut self, update: HostUpdate) {
        match update {
            HostUpdate::Link(link) => {
                // A reconnect may reach an upgraded daemon: panels get another chance.
                if link == Link::Up {
                    self.unavailable.clear();
                }
                self.link = link;
            }
            HostUpdate::Status(status) => self.status = Some(status),
            HostUpdate::Telemetry(sample) => {
                self.telemetry = Some(sample);
                self.record_gpu_history();
            }
            HostUpdate::TelemetryDelta(delta) => self.merge_telemetry(delta),
            HostUpdate::Metrics(metrics) => self.metrics = Some(metrics),
            HostUpdate::Budgets(budgets) => self.budgets = Some(budgets),
            HostUpdate::BudgetsChanged(changed) => {
                let budgets = self.budgets.get_or_insert_with(Vec::new);
                for budget in changed {
                    match budgets.iter_mut().find(|b| b.name == budget.name) {
                        Some(slot) => *slot = budget,
                        None => budgets.push(budget),
                    }
                }
            }
            HostUpdate::Alerts(alerts) => {
                self.alerts = alerts;
                self.order_alerts();
            }
            HostUpdate::AlertEvent(event) => {
                if let Some(alert) = event.alert {
                    match self.alerts.iter_mut().find(|a| a.id == alert.id) {
                        Some(slot) => *slot = alert,
                        None => self.alerts.push(alert),
                    }
                    self.order_alerts();
                }
            }
            HostUpdate::Traces(mut traces) => {
                traces.truncate(TRACE_TAIL_CAPACITY);
                self.traces.finished = traces.into();
                // Traces that were running when the link broke may have finished unseen.
                self.traces.in_flight.clear();
            }
            HostUpdate::TraceEvent(event) => self.apply_trace_event(event),
            HostUpdate::TracesMissed(missed) => self.traces.missed += missed,
            HostUpdate::EngineLogs(logs) => self.engine_logs = Some(logs),
            HostUpdate::Unavailable { panel, reason } => {
                self.unavailable.insert(panel, reason);
            }
            HostUpdate::TraceDetail { .. }
            | HostUpdate::TraceGpu { .. }
            | HostUpdate::Replay(_)
            | HostUpdate::ScoreAdded(_)
            | HostUpdate::EvalRuns(_)
            | HostUpdate::EvalRunDetail { .. }
            | HostUpdate::DatasetItemsAdded { .. }
            | HostUpdate::Notice { .. } => {}
        }
    }

    fn apply_trace_event(&mut self, event: pb::TraceEvent) {
        let Some(trace) = event.trace else { return };
        let tail = &mut self.traces;
        match pb::trace_event::Kind::try_from(event.kind) {
            Ok(pb::trace_event::Kind::Started) if !tail.in_flight.iter().any(|t| t.id == trace.id) => {
                tail.in_flight.push(trace);
            }
            Ok(pb::trace_event::Kind::Finished) => {
                tail.in_flight.retain(|t| t.id != trace.id);
                // The start time first: an integer compare rules out nearly every candidate.
                let seen = |t: &pb::Trace| t.started_at_unix_ms == trace.started_at_unix_ms && t.id == trace.id;
                if tail.finished.iter().take(DUPLICATE_WINDOW).any(seen) {
                    return;
                }
                tail.finished.push_front(trace);
                tail.finished.truncate(TRACE_TAIL_CAPACITY);
            }
            _ => {}
        }
    }

    /// Firing, then acknowledged, then resolved; newest first within each; old resolved ones dropped.
    fn order_alerts(&mut self) {
        fn rank(alert: &pb::Alert) -> u8 {
            match alert_enums::state(alert) {
                pb::AlertState::Firing => 0,
                pb::AlertState::Acknowledged => 1,
                pb::AlertState::Resolved => 2,
                pb::AlertState::Unspecified => 3,
            }
        }
        self.alerts.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then(b.started_at_unix_ms.cmp(&a.started_at_unix_ms))
                .then(b.updated_at_unix_ms.cmp(&a.updated_at_unix_ms))
        });
        let mut resolved = 0;
        self.alerts.retain(|a| {
            let is_resolved = alert_enums::state(a) == pb::AlertState::Resolved;
            resolved += usize::from(is_resolved);
            !is_resolved || resolved <= RESOLVED_ALERTS_KEPT
        });
    }

    fn merge_telemetry(&mut self, delta: pb::TelemetryUpdate) {
        let sample = self.telemetry.get_or_insert_with(pb::TelemetrySample::default);
        sample.at_unix_ms = delta.at_unix_ms;
        if let Some(reason) = delta.gpu_unavailable {
            sample.gpu_unavailable = reason;
        }
        if let Some(host) = delta.host {
            sample.host = Some(host);
        }
        for gpu in delta.gpus {
            match sample.gpus.iter_mut().find(|g| g.index == gpu.index) {
                Some(slot) => *slot = gpu,
                None => {
                    sample.gpus.push(gpu);
                    sample.gpus.sort_by_key(|g| g.index);
                }
            }
        }
        for engine in delta.engines {
            match sample.engines.iter_mut().find(|e| e.name == engine.name) {
                Some(slot) => *slot = engine,
                None => sample.engines.push(engine),
            }
        }
        self.record_gpu_history();
    }

    /// One point per GPU per sample, from the merged picture, so unchanged GPUs keep pace on the sparklines.
    fn record_gpu_history(&mut self) {
        let Some(sample) = &self.telemetry else { return };
        for gpu in &sample.gpus {
            let history = self.gpu_history.entry(gpu.index).or_default();
            push_point(history, gpu);
        }
    }
}

fn push_point(history: &mut GpuHistory, gpu: &pb::GpuSample) {
    fn push(series: &mut std::collections::VecDeque<u64>, value: Option<u64>) {
        if let Some(value) = value {
            if series.len() == SPARK_POINTS {
                series.pop_front();
            }
            series.push_back(value);
        }
    }
    let memory = match (gpu.memory_used_bytes, gpu.memory_total_bytes) {
        (Some(used), Some(total)) if total > 0 => Some(percent(used as f64 / total as f64 * 100.0)),
        _ => None,
    };
    push(&mut history.memory_used_percent, memory);
    push(&mut history.utilization_percent, gpu.utilization_gpu_percent.map(u64::from));
    push(&mut history.power_watts, gpu.power_watts.map(percent));
    push(&mut history.temperature_celsius, gpu.temperature_celsius.map(u64::from));
}

/// Rounded and floored at 0 (a negative reading is a driver glitch, not a value to plot).
fn percent(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
// Alerts as an llmopsd from before the alert enums sends them (strings only): the console still orders them.
#[allow(deprecated)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host::new("unix:/tmp/test.sock")
    }

    fn gpu(index: u32, used: u64, utilization: Option<u32>) -> pb::GpuSample {
        pb::GpuSample {
            index,
            memory_total_bytes: Some(1000),
            memory_used_bytes: Some(used),
            utilization_gpu_percent: utilization,
            power_watts: Some(120.4),
            ..pb::GpuSample::default()
        }
    }

    fn trace(id: &str) -> pb::Trace {
        pb::Trace { id: id.into(), ..pb::Trace::default() }
    }

    fn event(kind: pb::trace_event::Kind, id: &str) -> HostUpdate {
        HostUpdate::TraceEvent(pb::TraceEvent { kind: kind as i32, trace: Some(trace(id)), missed: 0 })
    }

    fn alert(id: &str, state: &str, started: i64) -> pb::Alert {
        pb::Alert { id: id.into(), state: state.into(), started_at_unix_ms: started, ..pb::Alert::default() }
    }

    #[test]
    fn telemetry_delta_merges_by_gpu_index_and_engine_name() {
        let mut host = host();
        let engine = |name: &str, running| pb::EngineLoadSample { name: name.into(), running, ..Default::default() };
        host.apply(HostUpdate::Telemetry(pb::TelemetrySample {
            gpus: vec![gpu(0, 100, Some(10)), gpu(1, 200, Some(20))],
            engines: vec![engine("a", Some(1)), engine("b", Some(2))],
            ..pb::TelemetrySample::default()
        }));
        host.apply(HostUpdate::TelemetryDelta(pb::TelemetryUpdate {
            at_unix_ms: 7,
            gpus: vec![gpu(1, 500, None), gpu(2, 1, Some(1))],
            engines: vec![engine("b", Some(9))],
            gpu_unavailable: None,
            ..pb::TelemetryUpdate::default()
        }));
        let sample = host.telemetry.as_ref().expect("merged");
        assert_eq!(sample.at_unix_ms, 7);
        let used: Vec<_> = sample.gpus.iter().map(|g| (g.index, g.memory_used_bytes)).collect();
        assert_eq!(used, [(0, Some(100)), (1, Some(500)), (2, Some(1))]);
        let running: Vec<_> = sample.engines.iter().map(|e| (e.name.as_str(), e.running)).collect();
        assert_eq!(running, [("a", Some(1)), ("b", Some(9))]);
    }

    #[test]
    fn gpu_history_keeps_present_values_and_is_capped() {
        let mut host = host();
        host.apply(HostUpdate::Telemetry(pb::TelemetrySample {
            gpus: vec![gpu(0, 250, Some(40))],
            ..pb::TelemetrySample::default()
        }));
        host.apply(HostUpdate::TelemetryDelta(pb::TelemetryUpdate {
            gpus: vec![gpu(0, 500, None)],
            ..pb::TelemetryUpdate::default()
        }));
        let history = &host.gpu_history[&0];
        assert_eq!(history.memory_used_percent, [25, 50]);
        assert_eq!(history.utilization_percent, [40], "an absent value is not pushed");
        assert_eq!(history.power_watts, [120, 120]);
        assert!(history.temperature_celsius.is_empty());
        for _ in 0..SPARK_POINTS + 5 {
            host.apply(HostUpdate::TelemetryDelta(pb::TelemetryUpdate::default()));
        }
        assert_eq!(host.gpu_history[&0].memory_used_percent.len(), SPARK_POINTS);
    }

    #[test]
    fn trace_events_move_from_in_flight_to_the_front_of_finished() {
        let mut host = host();
        host.apply(HostUpdate::Traces(vec![trace("old2"), trace("old1")]));
        host.apply(event(pb::trace_event::Kind::Started, "a"));
        host.apply(event(pb::trace_event::Kind::Started, "b"));
        assert_eq!(host.traces.in_flight.len(), 2);
        host.apply(event(pb::trace_event::Kind::Finished, "a"));
        host.apply(event(pb::trace_event::Kind::Finished, "a"));
        let in_flight: Vec<_> = host.traces.in_flight.iter().map(|t| t.id.as_str()).collect();
        let finished: Vec<_> = host.traces.finished.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(in_flight, ["b"]);
        assert_eq!(finished, ["a", "old2", "old1"], "a repeated FINISHED is not listed twice");
    }

    #[test]
    fn finished_tail_is_capped() {
        let mut host = host();
        host.apply(HostUpdate::Traces((0..TRACE_TAIL_CAPACITY).map(|i| trace(&format!("t{i}"))).collect()));
        host.apply(event(pb::trace_event::Kind::Finished, "new"));
        assert_eq!(host.traces.finished.len(), TRACE_TAIL_CAPACITY);
        assert_eq!(host.traces.finished.front().map(|t| t.id.as_str()), Some("new"));
    }

    #[test]
    fn alerts_upsert_by_id_in_state_order() {
        let mut host = host();
        host.apply(HostUpdate::Alerts(vec![alert("r", "resolved", 5), alert("f1", "firing", 1)]));
        host.apply(HostUpdate::AlertEvent(pb::AlertEvent {
            kind: "raised".into(),
            alert: Some(alert("f2", "firing", 3)),
            ..pb::AlertEvent::default()
        }));
        host.apply(HostUpdate::AlertEvent(pb::AlertEvent {
            kind: "acknowledged".into(),
            alert: Some(alert("f1", "acknowledged", 1)),
            ..pb::AlertEvent::default()
        }));
        let order: Vec<_> = host.alerts.iter().map(|a| (a.id.as_str(), a.state.as_str())).collect();
        assert_eq!(order, [("f2", "firing"), ("f1", "acknowledged"), ("r", "resolved")]);
    }

    #[test]
    fn budgets_upsert_by_name() {
        let mut host = host();
        let budget = |name: &str, used| pb::Budget { name: name.into(), used, ..pb::Budget::default() };
        host.apply(HostUpdate::Budgets(vec![budget("a", 1.0), budget("b", 2.0)]));
        host.apply(HostUpdate::BudgetsChanged(vec![budget("b", 5.0), budget("c", 3.0)]));
        let used: Vec<_> = host.budgets.iter().flatten().map(|b| (b.name.as_str(), b.used)).collect();
        assert_eq!(used, [("a", 1.0), ("b", 5.0), ("c", 3.0)]);
    }

    #[test]
    fn link_up_gives_unavailable_panels_another_chance() {
        let mut host = host();
        host.apply(HostUpdate::Unavailable { panel: "budgets", reason: "older llmopsd".into() });
        assert!(host.unavailable.contains_key("budgets"));
        host.apply(HostUpdate::Link(Link::Up));
        assert!(host.unavailable.is_empty());
        assert_eq!(host.link, Link::Up);
    }
}
