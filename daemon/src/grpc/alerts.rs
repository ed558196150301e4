//! `llmops.v1.AlertService`: list, watch and acknowledge alerts.
use crate::alerts::{Alert, AlertError, AlertEvent, AlertEventKind, AlertFilter, AlertManager, AlertState, Summary};
use crate::shutdown::Shutdown;
use futures::Stream;
use llmops_proto::v1 as pb;
use std::collections::HashMap;
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

pub struct AlertApi {
    pub alerts: AlertManager,
    pub shutdown: Shutdown,
}

fn summary_to_map(summary: &Option<Summary>) -> HashMap<String, f64> {
    summary
        .as_ref()
        .map(|s| {
            HashMap::from([
                ("n".into(), s.n as f64),
                ("mean".into(), s.mean),
                ("p50".into(), s.p50),
                ("p95".into(), s.p95),
            ])
        })
        .unwrap_or_default()
}

fn kind_name(kind: AlertEventKind) -> &'static str {
    match kind {
        AlertEventKind::Raised => "raised",
        AlertEventKind::Updated => "updated",
        AlertEventKind::Acknowledged => "acknowledged",
        AlertEventKind::Resolved => "resolved",
    }
}

pub fn alert_to_proto(alert: &Alert) -> pb::Alert {
    let evidence = &alert.evidence;
    pb::Alert {
        id: alert.id.clone(),
        key: alert.key.clone(),
        rule: alert.rule.clone(),
        severity: alert.severity.as_str().into(),
        state: alert.state.as_str().into(),
        title: alert.title.clone(),
        message: alert.message.clone(),
        evidence: Some(pb::Evidence {
            statistic: evidence.statistic.clone(),
            value: evidence.value,
            threshold: evidence.threshold,
            reference: summary_to_map(&evidence.reference),
            current: summary_to_map(&evidence.current),
            reference_n: evidence.reference_n,
            current_n: evidence.current_n,
            detail: evidence.detail.clone(),
        }),
        started_at_unix_ms: alert.started_at_unix_ms,
        updated_at_unix_ms: alert.updated_at_unix_ms,
        acknowledged_at_unix_ms: alert.acknowledged_at_unix_ms,
        resolved_at_unix_ms: alert.resolved_at_unix_ms,
        occurrences: alert.occurrences,
        labels: alert.labels.clone().into_iter().collect(),
        deliveries: alert
            .deliveries
            .iter()
            .map(|d| pb::Delivery {
                url: d.url.clone(),
                status: serde_json::to_value(d.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                attempts: d.attempts,
                last_error: d.last_error.clone().unwrap_or_default(),
                last_attempt_unix_ms: d.last_attempt_unix_ms.unwrap_or(0),
            })
            .collect(),
        acknowledged_by: alert.acknowledged_by.clone().unwrap_or_default(),
    }
}

fn status(error: AlertError) -> Status {
    match error {
        AlertError::NotFound(_) => Status::not_found(error.to_string()),
        AlertError::AlreadyResolved(_) => Status::failed_precondition(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AlertEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for AlertApi {
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let request = request.into_inner();
        let state = match request.state.as_str() {
            "" | "all" => None,
            name => Some(AlertState::parse(name).ok_or_else(|| {
                Status::invalid_argument(format!("state {name:?}: expected firing, acknowledged or resolved"))
            })?),
        };
        let filter = AlertFilter { state, limit: Some(if request.limit == 0 { 100 } else { request.limit }) };
        let alerts = self.alerts.clone();
        let listed = tokio::task::spawn_blocking(move || alerts.list(filter))
            .await
            .map_err(|e| Status::internal(format!("alert query failed: {e}")))?
            .map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse { alerts: listed.iter().map(alert_to_proto).collect() }))
    }

    type WatchAlertsStream = EventStream;

    async fn watch_alerts(
        &self,
        _: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let receiver = self.alerts.subscribe();
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::unfold(Some((receiver, shutdown)), |state| async move {
            let (mut receiver, mut shutdown) = state?;
            let next = tokio::select! {
                next = receiver.recv() => next,
                _ = shutdown.wait() => return None,
            };
            match next {
                Ok(AlertEvent { kind, alert }) => {
                    let event =
                        pb::AlertEvent { kind: kind_name(kind).into(), alert: Some(alert_to_proto(&alert)), missed: 0 };
                    Some((Ok(event), Some((receiver, shutdown))))
                }
                // A slow viewer is told what it missed and dropped; the daemon never waits for it.
                Err(RecvError::Lagged(missed)) => {
                    Some((Ok(pb::AlertEvent { missed, ..pb::AlertEvent::default() }), None))
                }
                Err(RecvError::Closed) => None,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack_alert(&self, request: Request<pb::AckAlertRequest>) -> Result<Response<pb::Alert>, Status> {
        let request = request.into_inner();
        let by = if request.by.trim().is_empty() { "unknown".to_string() } else { request.by };
        let alerts = self.alerts.clone();
        let alert = tokio::task::spawn_blocking(move || alerts.acknowledge(&request.id, &by))
            .await
            .map_err(|e| Status::internal(format!("acknowledge failed: {e}")))?
            .map_err(status)?;
        Ok(Response::new(alert_to_proto(&alert)))
    }
}
