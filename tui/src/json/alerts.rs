//! `--json` for `alerts`, `alert ID`, `alerts ack` and `alerts --watch`, in the same shapes as the rest of
//! `json`: proto field names, absent optional fields as `null`.
use llmops_proto::v1::{Alert, AlertEvent, Delivery, Evidence};
use serde_json::{json, Value};

use crate::alert_enums;

/// One alert; `alert ID --json` and `alerts ack ID --json` print this object.
pub fn alert_to_json(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "key": alert.key,
        "rule": alert.rule,
        "severity": alert_enums::severity_name(alert),
        "state": alert_enums::state_name(alert),
        "title": alert.title,
        "message": alert.message,
        "evidence": alert.evidence.as_ref().map(evidence_to_json),
        "started_at_unix_ms": alert.started_at_unix_ms,
        "updated_at_unix_ms": alert.updated_at_unix_ms,
        "acknowledged_at_unix_ms": alert.acknowledged_at_unix_ms,
        "resolved_at_unix_ms": alert.resolved_at_unix_ms,
        "occurrences": alert.occurrences,
        "labels": alert.labels,
        "deliveries": alert.deliveries.iter().map(delivery_to_json).collect::<Vec<_>>(),
        "acknowledged_by": alert.acknowledged_by,
    })
}

/// `alerts --json`: `{"alerts": [...]}`, in the order of the table.
pub fn alerts_to_json(alerts: &[Alert]) -> Value {
    json!({ "alerts": alerts.iter().map(alert_to_json).collect::<Vec<_>>() })
}

/// One `alerts --watch --json` line: `{"kind": "raised"|..., "alert": {...}|null, "missed": n}`.
pub fn alert_event_to_json(event: &AlertEvent) -> Value {
    json!({
        "kind": alert_enums::event_kind_name(event),
        "alert": event.alert.as_ref().map(alert_to_json),
        "missed": event.missed,
    })
}

/// Statistics that are not numbers (NaN from an empty window) become `null`: JSON has no NaN.
fn evidence_to_json(evidence: &Evidence) -> Value {
    json!({
        "statistic": evidence.statistic,
        "value": evidence.value,
        "threshold": evidence.threshold,
        "reference": evidence.reference,
        "current": evidence.current,
        "reference_n": evidence.reference_n,
        "current_n": evidence.current_n,
        "detail": evidence.detail,
    })
}

fn delivery_to_json(delivery: &Delivery) -> Value {
    json!({
        "url": delivery.url,
        "status": alert_enums::delivery_status_name(delivery),
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "last_attempt_unix_ms": delivery.last_attempt_unix_ms,
    })
}

#[cfg(test)]
// The fixtures fill the deprecated strings beside the enums, as llmopsd does.
#[allow(deprecated)]
mod tests {
    use super::*;
    use llmops_proto::v1::{AlertEventKind, AlertSeverity, AlertState, DeliveryStatus};

    fn alert() -> Alert {
        Alert {
            id: "0190b5a8-7c1e-7d3a-9f00-00000000a1e7".into(),
            key: "drift:small:prompt_chars".into(),
            rule: "drift".into(),
            severity: "warning".into(),
            alert_severity: AlertSeverity::Warning as i32,
            state: "acknowledged".into(),
            alert_state: AlertState::Acknowledged as i32,
            title: "Prompt length drifted".into(),
            evidence: Some(Evidence {
                statistic: "ks_p_value".into(),
                value: 0.0012,
                threshold: 0.05,
                reference: [("mean".to_owned(), 120.0)].into(),
                current: [("mean".to_owned(), 180.0)].into(),
                reference_n: 1000,
                current_n: 200,
                detail: String::new(),
            }),
            started_at_unix_ms: 1_717_000_000_000,
            updated_at_unix_ms: 1_717_000_060_000,
            acknowledged_at_unix_ms: Some(1_717_000_060_000),
            resolved_at_unix_ms: None,
            occurrences: 3,
            labels: [("route".to_owned(), "small".to_owned())].into(),
            deliveries: vec![Delivery {
                url: "https://hooks.example/alerts".into(),
                status: "delivered".into(),
                delivery_status: DeliveryStatus::Delivered as i32,
                attempts: 1,
                last_error: String::new(),
                last_attempt_unix_ms: 1_717_000_000_500,
            }],
            acknowledged_by: "alice".into(),
            ..Alert::default()
        }
    }

    #[test]
    fn alert_has_every_proto_field_and_null_for_absent_times() {
        let value = alert_to_json(&alert());
        let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "id",
            "key",
            "rule",
            "severity",
            "state",
            "title",
            "message",
            "evidence",
            "started_at_unix_ms",
            "updated_at_unix_ms",
            "acknowledged_at_unix_ms",
            "resolved_at_unix_ms",
            "occurrences",
            "labels",
            "deliveries",
            "acknowledged_by",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["acknowledged_at_unix_ms"], 1_717_000_060_000_i64);
        assert_eq!(value["resolved_at_unix_ms"], Value::Null);
        assert!(value["occurrences"].is_u64(), "counts are integers");
        assert_eq!(value["labels"], json!({"route": "small"}));
        assert_eq!(
            value["evidence"],
            json!({
                "statistic": "ks_p_value", "value": 0.0012, "threshold": 0.05,
                "reference": {"mean": 120.0}, "current": {"mean": 180.0},
                "reference_n": 1000, "current_n": 200, "detail": "",
            })
        );
        assert_eq!(
            value["deliveries"],
            json!([{
                "url": "https://hooks.example/alerts", "status": "delivered", "attempts": 1, "last_error": "",
                "last_attempt_unix_ms": 1_717_000_000_500_i64,
            }])
        );
    }

    #[test]
    fn missing_evidence_and_nan_statistics_are_null() {
        assert_eq!(alert_to_json(&Alert::default())["evidence"], Value::Null);
        let nan = Alert { evidence: Some(Evidence { value: f64::NAN, ..Evidence::default() }), ..alert() };
        assert_eq!(alert_to_json(&nan)["evidence"]["value"], Value::Null);
    }

    #[test]
    fn list_and_events_wrap_the_alerts() {
        assert_eq!(alerts_to_json(&[]), json!({"alerts": []}));
        assert_eq!(alerts_to_json(&[alert()])["alerts"][0]["state"], "acknowledged");
        let event = AlertEvent {
            kind: "raised".into(),
            event_kind: AlertEventKind::Raised as i32,
            alert: Some(alert()),
            missed: 0,
        };
        let value = alert_event_to_json(&event);
        assert_eq!(
            (&value["kind"], &value["alert"]["rule"], &value["missed"]),
            (&json!("raised"), &json!("drift"), &json!(0))
        );
        let missed = AlertEvent { kind: String::new(), alert: None, missed: 4, ..AlertEvent::default() };
        assert_eq!(alert_event_to_json(&missed), json!({"kind": "", "alert": null, "missed": 4}));
    }
}
