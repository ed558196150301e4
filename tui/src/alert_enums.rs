//! The alert enums (state, severity, event kind, delivery status) as the console and `llmopsctl` read them:
//! the enum field, or from a daemon older than the enums, the deprecated string field it replaced. Names are
//! the lowercase words the strings always used, so JSON, tables and reports read as before.
#![allow(deprecated)] // Reading the deprecated strings is the point: older daemons send only those.

use llmops_proto::v1::{
    Alert, AlertEvent, AlertEventKind, AlertSeverity, AlertState, Delivery, DeliveryStatus, ListAlertsRequest,
};

/// An enum's known values and their names (UNSPECIFIED is none of them).
struct Names<E: 'static>(&'static [(E, &'static str)]);

impl<E: Copy + PartialEq + TryFrom<i32>> Names<E> {
    /// The value and name the enum field says, else those the legacy string says; `None` when neither is known.
    fn read(&self, field: i32, legacy: &str) -> Option<(E, &'static str)> {
        let by_enum = E::try_from(field).ok().and_then(|value| self.0.iter().find(|(known, _)| *known == value));
        by_enum.or_else(|| self.0.iter().find(|(_, name)| *name == legacy)).copied()
    }

    fn name_of(&self, value: E) -> Option<&'static str> {
        self.0.iter().find(|(known, _)| *known == value).map(|(_, name)| *name)
    }
}

const STATES: Names<AlertState> = Names(&[
    (AlertState::Firing, "firing"),
    (AlertState::Acknowledged, "acknowledged"),
    (AlertState::Resolved, "resolved"),
]);

const SEVERITIES: Names<AlertSeverity> =
    Names(&[(AlertSeverity::Info, "info"), (AlertSeverity::Warning, "warning"), (AlertSeverity::Critical, "critical")]);

const EVENT_KINDS: Names<AlertEventKind> = Names(&[
    (AlertEventKind::Raised, "raised"),
    (AlertEventKind::Updated, "updated"),
    (AlertEventKind::Acknowledged, "acknowledged"),
    (AlertEventKind::Resolved, "resolved"),
]);

const DELIVERY_STATUSES: Names<DeliveryStatus> = Names(&[
    (DeliveryStatus::Pending, "pending"),
    (DeliveryStatus::Delivered, "delivered"),
    (DeliveryStatus::Failed, "failed"),
]);

pub fn state(alert: &Alert) -> AlertState {
    STATES.read(alert.alert_state, &alert.state).map_or(AlertState::Unspecified, |(value, _)| value)
}

/// "firing", "acknowledged" or "resolved"; what the daemon sent when it is none of those.
pub fn state_name(alert: &Alert) -> &str {
    STATES.read(alert.alert_state, &alert.state).map_or(alert.state.as_str(), |(_, name)| name)
}

pub fn severity(alert: &Alert) -> AlertSeverity {
    SEVERITIES.read(alert.alert_severity, &alert.severity).map_or(AlertSeverity::Unspecified, |(value, _)| value)
}

/// "info", "warning" or "critical"; what the daemon sent when it is none of those.
pub fn severity_name(alert: &Alert) -> &str {
    SEVERITIES.read(alert.alert_severity, &alert.severity).map_or(alert.severity.as_str(), |(_, name)| name)
}

pub fn event_kind(event: &AlertEvent) -> AlertEventKind {
    EVENT_KINDS.read(event.event_kind, &event.kind).map_or(AlertEventKind::Unspecified, |(value, _)| value)
}

/// "raised", "updated", "acknowledged" or "resolved"; empty in an event that only says what a viewer missed.
pub fn event_kind_name(event: &AlertEvent) -> &str {
    EVENT_KINDS.read(event.event_kind, &event.kind).map_or(event.kind.as_str(), |(_, name)| name)
}

pub fn delivery_status(delivery: &Delivery) -> DeliveryStatus {
    DELIVERY_STATUSES
        .read(delivery.delivery_status, &delivery.status)
        .map_or(DeliveryStatus::Unspecified, |(value, _)| value)
}

/// "pending", "delivered" or "failed"; what the daemon sent when it is none of those.
pub fn delivery_status_name(delivery: &Delivery) -> &str {
    DELIVERY_STATUSES
        .read(delivery.delivery_status, &delivery.status)
        .map_or(delivery.status.as_str(), |(_, name)| name)
}

/// An event made here rather than received (the console's own acknowledgement), with both kind fields set.
pub fn local_event(kind: AlertEventKind, alert: Alert) -> AlertEvent {
    let legacy = EVENT_KINDS.name_of(kind).unwrap_or_default();
    AlertEvent { kind: legacy.to_owned(), event_kind: kind as i32, alert: Some(alert), missed: 0 }
}

/// ListAlerts for alerts in `state` ("firing", "acknowledged", "resolved"; "" for all), in both fields: a daemon
/// older than `alert_state` reads only the string.
pub fn list_request(state: &str, limit: u32) -> ListAlertsRequest {
    let alert_state = STATES.read(0, state).map_or(AlertState::Unspecified, |(value, _)| value);
    ListAlertsRequest { state: state.to_owned(), limit, alert_state: alert_state as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enum_is_read_first_and_the_string_of_an_older_daemon_else() {
        let both = Alert {
            state: "firing".into(),
            alert_state: AlertState::Resolved as i32,
            severity: "info".into(),
            alert_severity: AlertSeverity::Critical as i32,
            ..Alert::default()
        };
        assert_eq!((state(&both), state_name(&both)), (AlertState::Resolved, "resolved"));
        assert_eq!((severity(&both), severity_name(&both)), (AlertSeverity::Critical, "critical"));
        let older = Alert { state: "acknowledged".into(), severity: "warning".into(), ..Alert::default() };
        assert_eq!((state(&older), state_name(&older)), (AlertState::Acknowledged, "acknowledged"));
        assert_eq!((severity(&older), severity_name(&older)), (AlertSeverity::Warning, "warning"));
        // A value from a newer daemon this client does not know: its string is shown as sent.
        let newer = Alert { state: "snoozed".into(), alert_state: 9, ..Alert::default() };
        assert_eq!((state(&newer), state_name(&newer)), (AlertState::Unspecified, "snoozed"));
    }

    #[test]
    fn events_and_deliveries_read_the_same_way() {
        let event = AlertEvent { event_kind: AlertEventKind::Updated as i32, ..AlertEvent::default() };
        assert_eq!((event_kind(&event), event_kind_name(&event)), (AlertEventKind::Updated, "updated"));
        let missed = AlertEvent { missed: 3, ..AlertEvent::default() };
        assert_eq!((event_kind(&missed), event_kind_name(&missed)), (AlertEventKind::Unspecified, ""));
        let delivery = Delivery { status: "failed".into(), ..Delivery::default() };
        assert_eq!((delivery_status(&delivery), delivery_status_name(&delivery)), (DeliveryStatus::Failed, "failed"));
        let acked = local_event(AlertEventKind::Acknowledged, Alert::default());
        assert_eq!((acked.kind.as_str(), event_kind(&acked)), ("acknowledged", AlertEventKind::Acknowledged));
    }

    #[test]
    fn list_requests_carry_the_state_twice() {
        let request = list_request("resolved", 5);
        assert_eq!((request.state.as_str(), request.alert_state), ("resolved", AlertState::Resolved as i32));
        let all = list_request("", 5);
        assert_eq!((all.state.as_str(), all.alert_state), ("", AlertState::Unspecified as i32));
    }
}
