//! The main loop's effects, carried out on a live connection (or refused while it is down).
use llmops_proto::v1 as pb;
use tonic::Code;

use super::{Effect, HostFeed};
use crate::alert_enums;
use crate::connect::Daemon;
use crate::top::host::{HostUpdate, ReplayUpdate};

/// Carries out one effect on a live connection, reporting back as updates.
pub(super) async fn perform(feed: HostFeed, daemon: Daemon, effect: Effect) {
    let explain = |status: &tonic::Status| match status.code() {
        Code::Unimplemented => "this llmopsd does not support it (older than llmops-top?)".to_owned(),
        _ => status.message().to_owned(),
    };
    match effect {
        Effect::FetchTrace { id, .. } => {
            let result = match daemon.traces().get_trace(pb::GetTraceRequest { id: id.clone() }).await {
                Ok(trace) => Ok(trace.into_inner()),
                Err(status) if status.code() == Code::NotFound => {
                    Err(format!("no trace {id} (still running, or removed by retention)"))
                }
                Err(status) => Err(explain(&status)),
            };
            let window = result.as_ref().ok().map(|t| (t.started_at_unix_ms, t.ended_at_unix_ms));
            feed.send(HostUpdate::TraceDetail { id: id.clone(), result }).await;
            if let Some((from, to)) = window {
                let result = gpu_during(&daemon, from, to).await.map_err(|status| explain(&status));
                feed.send(HostUpdate::TraceGpu { id, result }).await;
            }
        }
        Effect::Ack { alert_id, .. } => {
            let by = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "llmops-top".into());
            match daemon.alerts().ack_alert(pb::AckAlertRequest { id: alert_id, by }).await {
                Ok(alert) => {
                    let alert = alert.into_inner();
                    let text = format!("acknowledged: {}", alert.title);
                    let event = alert_enums::local_event(pb::AlertEventKind::Acknowledged, alert);
                    feed.send(HostUpdate::AlertEvent(event)).await;
                    feed.send(HostUpdate::Notice { text, error: false }).await;
                }
                Err(status) => {
                    let text = format!("cannot acknowledge: {}", explain(&status));
                    feed.send(HostUpdate::Notice { text, error: true }).await;
                }
            }
        }
        Effect::Replay { trace_id, route, .. } => {
            let request =
                pb::ReplayRequest { trace_id, route: route.unwrap_or_default(), overrides_json: String::new() };
            let failure = match daemon.traces().replay(request).await {
                Ok(response) => stream_replay(&feed, response.into_inner()).await,
                Err(status) => Some(explain(&status)),
            };
            if let Some(error) = failure {
                feed.send(HostUpdate::Replay(ReplayUpdate::Failed(error))).await;
            }
        }
        Effect::Thumbs { trace_id, up, .. } => {
            let request = pb::AddScoreRequest {
                trace_id: trace_id.clone(),
                name: crate::scores::THUMBS.to_owned(),
                value: Some(pb::add_score_request::Value::Passed(up)),
                comment: String::new(),
                source: pb::ScoreSource::Human as i32,
            };
            match daemon.feedback().add_score(request).await {
                Ok(score) => {
                    let text = format!("thumbs {} recorded for trace {trace_id}", if up { "up" } else { "down" });
                    feed.send(HostUpdate::ScoreAdded(score.into_inner())).await;
                    feed.send(HostUpdate::Notice { text, error: false }).await;
                }
                Err(status) => {
                    let text = format!("cannot score trace {trace_id}: {}", explain(&status));
                    feed.send(HostUpdate::Notice { text, error: true }).await;
                }
            }
        }
        Effect::FetchEvalRun { id, .. } => {
            let result = super::evals::fetch_run(&daemon, &id).await;
            feed.send(HostUpdate::EvalRunDetail { id, result }).await;
        }
        Effect::AddToDataset { trace_id, dataset, .. } => {
            let result = super::evals::add_trace(&daemon, &dataset, &trace_id).await;
            feed.send(HostUpdate::DatasetItemsAdded { trace_id, dataset, result }).await;
        }
        Effect::FetchLogs { engine, .. } => {
            let request = pb::GetEngineLogsRequest { engine: engine.clone(), lines: 0 };
            let logs = match daemon.status().get_engine_logs(request).await {
                Ok(logs) => logs.into_inner(),
                // Not launched by llmopsd (or unknown): the daemon's sentence says which, shown as the tail.
                Err(status) => pb::EngineLogs { engine, lines: vec![format!("({})", explain(&status))], process: None },
            };
            feed.send(HostUpdate::EngineLogs(logs)).await;
        }
    }
}

/// Forwards a re-run's events; the error when it fails or ends without its comparison.
async fn stream_replay(feed: &HostFeed, mut events: tonic::Streaming<pb::ReplayEvent>) -> Option<String> {
    loop {
        let update = match events.message().await {
            Ok(Some(pb::ReplayEvent { event: Some(event) })) => match event {
                pb::replay_event::Event::Started(started) => ReplayUpdate::Started(started),
                pb::replay_event::Event::Chunk(chunk) => ReplayUpdate::Chunk(chunk),
                pb::replay_event::Event::Done(done) => {
                    feed.send(HostUpdate::Replay(ReplayUpdate::Done(Box::new(done)))).await;
                    return None;
                }
            },
            Ok(Some(pb::ReplayEvent { event: None })) => continue,
            Ok(None) => return Some("the re-run ended before its result came".to_owned()),
            Err(status) => return Some(status.message().to_owned()),
        };
        feed.send(HostUpdate::Replay(update)).await;
    }
}

/// The answer to an effect that could not run.
pub(super) fn failure(effect: &Effect, reason: String) -> HostUpdate {
    match effect {
        Effect::FetchTrace { id, .. } => HostUpdate::TraceDetail { id: id.clone(), result: Err(reason) },
        Effect::Replay { .. } => HostUpdate::Replay(ReplayUpdate::Failed(reason)),
        Effect::FetchEvalRun { id, .. } => HostUpdate::EvalRunDetail { id: id.clone(), result: Err(reason) },
        Effect::AddToDataset { trace_id, dataset, .. } => {
            HostUpdate::DatasetItemsAdded { trace_id: trace_id.clone(), dataset: dataset.clone(), result: Err(reason) }
        }
        Effect::Ack { .. } | Effect::FetchLogs { .. } | Effect::Thumbs { .. } => {
            HostUpdate::Notice { text: reason, error: true }
        }
    }
}

/// The telemetry samples taken while a request ran, with one interval of margin on each side so a request
/// shorter than the sampling interval still gets the samples around it.
async fn gpu_during(daemon: &Daemon, from_ms: i64, to_ms: i64) -> Result<Vec<pb::TelemetrySample>, tonic::Status> {
    const MARGIN_MS: i64 = 1_000;
    let (from_unix_ms, to_unix_ms) = (from_ms - MARGIN_MS, to_ms.max(from_ms) + MARGIN_MS);
    let request = pb::QueryTelemetryRequest { from_unix_ms, to_unix_ms, step: 1 };
    Ok(daemon.telemetry().query_telemetry(request).await?.into_inner().samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_for_a_host_that_is_down_fail_with_the_reason() {
        let fetch = Effect::FetchTrace { host: 0, id: "t1".into() };
        assert_eq!(
            failure(&fetch, "down".into()),
            HostUpdate::TraceDetail { id: "t1".into(), result: Err("down".into()) }
        );
        let ack = Effect::Ack { host: 0, alert_id: "a".into() };
        assert_eq!(failure(&ack, "down".into()), HostUpdate::Notice { text: "down".into(), error: true });
        let add = Effect::AddToDataset { host: 0, trace_id: "t1".into(), dataset: "golden".into() };
        assert_eq!(
            failure(&add, "down".into()),
            HostUpdate::DatasetItemsAdded {
                trace_id: "t1".into(),
                dataset: "golden".into(),
                result: Err("down".into())
            }
        );
    }
}
