//! `llmops.v1.AlertService`: list, watch and acknowledge alerts.
use super::watch::{self, WatchStream};
use crate::alerts::{
    Alert, AlertError, AlertEvent, AlertEventKind, AlertFilter, AlertManager, AlertState, DeliveryStatus, Severity,
    Summary,
};
use crate::shutdown::Shutdown;
use llmops_proto::v1 as pb;
use std::collections::HashMap;
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

fn kind_to_proto(kind: AlertEventKind) -> pb::AlertEventKind {
    match kind {
        AlertEventKind::Raised => pb::AlertEventKind::Raised,
        AlertEventKind::Updated => pb::AlertEventKind::Updated,
        AlertEventKind::Acknowledged => pb::AlertEventKind::Acknowledged,
        AlertEventKind::Resolved => pb::AlertEventKind::Resolved,
    }
}

fn severity_to_proto(severity: Severity) -> pb::AlertSeverity {
    match severity {
        Severity::Info => pb::AlertSeverity::Info,
        Severity::Warning => pb::AlertSeverity::Warning,
        Severity::Critical => pb::AlertSeverity::Critical,
    }
}

fn state_to_proto(state: AlertState) -> pb::AlertState {
    match state {
        AlertState::Firing => pb::AlertState::Firing,
        AlertState::Acknowledged => pb::AlertState::Acknowledged,
        AlertState::Resolved => pb::AlertState::Resolved,
    }
}

fn state_from_proto(state: pb::AlertState) -> Option<AlertState> {
    match state {
        pb::AlertState::Unspecified => None,
        pb::AlertState::Firing => Some(AlertState::Firing),
        pb::AlertState::Acknowledged => Some(AlertState::Acknowledged),
        pb::AlertState::Resolved => Some(AlertState::Resolved),
    }
}

fn delivery_status_to_proto(status: DeliveryStatus) -> (pb::DeliveryStatus, &'static str) {
    match status {
        DeliveryStatus::Pending => (pb::DeliveryStatus::Pending, "pending"),
        DeliveryStatus::Delivered => (pb::DeliveryStatus::Delivered, "delivered"),
        DeliveryStatus::Failed => (pb::DeliveryStatus::Failed, "failed"),
    }
}

/// The alert with each enum twice: the enum field and the deprecated string it replaced (older clients read it).
#[allow(deprecated)]
pub fn alert_to_proto(alert: &Alert) -> pb::Alert {
    let evidence = &alert.evidence;
    pb::Alert {
        id: alert.id.clone(),
        key: alert.key.clone(),
        rule: alert.rule.clone(),
        severity: alert.severity.as_str().into(),
        alert_severity: severity_to_proto(alert.severity) as i32,
        state: alert.state.as_str().into(),
        alert_state: state_to_proto(alert.state) as i32,
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
            .map(|d| {
                let (delivery_status, status) = delivery_status_to_proto(d.status);
                pb::Delivery {
                    url: d.url.clone(),
                    status: status.into(),
                    delivery_status: delivery_status as i32,
                    attempts: d.attempts,
                    last_error: d.last_error.clone().unwrap_or_default(),
                    last_attempt_unix_ms: d.last_attempt_unix_ms.unwrap_or(0),
                }
            })
            .collect(),
        acknowledged_by: alert.acknowledged_by.clone().unwrap_or_default(),
    }
}

/// The event with its kind twice: the enum and the deprecated string it replaced (older clients read it).
#[allow(deprecated)]
fn event_to_proto(AlertEvent { kind, alert }: AlertEvent) -> pb::AlertEvent {
    pb::AlertEvent {
        kind: kind_name(kind).into(),
        event_kind: kind_to_proto(kind) as i32,
        alert: Some(alert_to_proto(&alert)),
        missed: 0,
    }
}

/// The state ListAlerts asks for: `alert_state`, else the deprecated `state` string (clients from before the
/// enum); `None` for all.
#[allow(deprecated)]
fn requested_state(request: &pb::ListAlertsRequest) -> Result<Option<AlertState>, Status> {
    match pb::AlertState::try_from(request.alert_state) {
        Ok(pb::AlertState::Unspecified) => {}
        Ok(state) => return Ok(state_from_proto(state)),
        Err(_) => return Err(Status::invalid_argument(format!("unknown alert_state value {}", request.alert_state))),
    }
    match request.state.as_str() {
        "" | "all" => Ok(None),
        name => AlertState::parse(name).map(Some).ok_or_else(|| {
            Status::invalid_argument(format!("state {name:?}: expected firing, acknowledged or resolved"))
        }),
    }
}

fn status(error: AlertError) -> Status {
    match error {
        AlertError::NotFound(_) => Status::not_found(error.to_string()),
        AlertError::AlreadyResolved(_) => Status::failed_precondition(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for AlertApi {
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let request = request.into_inner();
        let state = requested_state(&request)?;
        let filter = AlertFilter { state, limit: Some(if request.limit == 0 { 100 } else { request.limit }) };
        let alerts = self.alerts.clone();
        let listed = tokio::task::spawn_blocking(move || alerts.list(filter))
            .await
            .map_err(|e| Status::internal(format!("alert query failed: {e}")))?
            .map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse { alerts: listed.iter().map(alert_to_proto).collect() }))
    }

    type WatchAlertsStream = WatchStream<pb::AlertEvent>;

    async fn watch_alerts(
        &self,
        _: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        Ok(Response::new(watch::follow(self.alerts.subscribe(), self.shutdown.clone(), event_to_proto)))
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
