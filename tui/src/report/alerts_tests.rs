//! Tests of `report/alerts.rs`: tables, the alert report, evidence and webhook summaries, watch lines.
// The fixtures fill the deprecated strings beside the enums, as llmopsd does.
#![allow(deprecated)]
use super::*;
use chrono::Utc;
use llmops_proto::v1::{AlertEventKind, AlertSeverity, AlertState};

const AT: i64 = 1_717_000_000_000; // 2024-05-29 16:26:40 UTC

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 29, 18, 0, 0).single().expect("valid date")
}

fn delivery(status: &str, attempts: u32) -> Delivery {
    let name = format!("DELIVERY_STATUS_{}", status.to_uppercase());
    let delivery_status = DeliveryStatus::from_str_name(&name).unwrap_or_default() as i32;
    Delivery {
        url: "https://hooks.example/a".into(),
        status: status.into(),
        delivery_status,
        attempts,
        ..Delivery::default()
    }
}

fn drift_alert() -> Alert {
    Alert {
        id: "0190b5a8-7c1e-7d3a-9f00-00000000a1e7".into(),
        key: "drift:small:prompt_chars".into(),
        rule: "drift".into(),
        severity: "warning".into(),
        alert_severity: AlertSeverity::Warning as i32,
        state: "firing".into(),
        alert_state: AlertState::Firing as i32,
        title: "Prompt length drifted on route small since the reference week".into(),
        message: "KS test: the prompts of the last hour are longer.".into(),
        evidence: Some(Evidence {
            statistic: "ks_p_value".into(),
            value: 0.0012,
            threshold: 0.05,
            reference: [
                ("mean".to_owned(), 120.0),
                ("p95".to_owned(), 410.0),
                ("rate".to_owned(), 2.5),
                ("n".to_owned(), 1e3),
            ]
            .into(),
            current: [("mean".to_owned(), 180.0), ("p95".to_owned(), 900.0)].into(),
            reference_n: 1000,
            current_n: 200,
            detail: "prompt_chars, route small".into(),
        }),
        started_at_unix_ms: AT,
        updated_at_unix_ms: AT + 60_000,
        occurrences: 3,
        labels: [("route".to_owned(), "small".to_owned())].into(),
        deliveries: vec![Delivery { last_attempt_unix_ms: AT + 500, ..delivery("delivered", 1) }],
        ..Alert::default()
    }
}

#[test]
fn alerts_table_has_one_row_per_alert() {
    let gpu = Alert {
        id: "gpu-1".into(),
        rule: "gpu".into(),
        severity: "critical".into(),
        alert_severity: AlertSeverity::Critical as i32,
        state: "resolved".into(),
        alert_state: AlertState::Resolved as i32,
        title: "GPU 0 at 91 °C".into(),
        evidence: Some(Evidence {
            statistic: "gpu_temp_c".into(),
            value: 91.0,
            threshold: 85.0,
            ..Evidence::default()
        }),
        started_at_unix_ms: AT - 86_400_000,
        occurrences: 1,
        deliveries: vec![delivery("failed", 3)],
        ..Alert::default()
    };
    let text = render_alerts(&[drift_alert(), gpu], &now());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "ID        STATE     SEVERITY  RULE   TITLE                                     SINCE                \
             COUNT  EVIDENCE                  WEBHOOKS",
            "0000a1e7  firing    warning   drift  Prompt length drifted on route small si…  16:26:40                 \
             3  ks_p_value 0.0012 < 0.05  1/1 delivered",
            "gpu-1     resolved  critical  gpu    GPU 0 at 91 °C                            2024-05-28 16:26:40      \
             1  gpu_temp_c 91 > 85        failed (3 tries)",
        ]
    );
}

#[test]
fn no_alerts_and_bare_alerts_read_as_such() {
    assert_eq!(render_alerts(&[], &now()), "(no alerts)\n");
    let text = render_alerts(&[Alert::default()], &now());
    let blank =
        Alert { evidence: Some(Evidence { detail: "engine down".into(), ..Evidence::default() }), ..Alert::default() };
    assert!(
        render_alerts(&[blank], &now()).contains("  0  engine down  -"),
        "a rule without a statistic shows its detail"
    );
    assert_eq!(text.lines().nth(1), Some("-   -      -         -     -      -          0  -         -"));
}

#[test]
fn evidence_is_the_statistic_against_its_threshold() {
    let evidence = |statistic: &str, value: f64, threshold: f64| {
        evidence_summary(&Evidence { statistic: statistic.into(), value, threshold, ..Evidence::default() })
    };
    assert_eq!(evidence("ks_p_value", 0.0012, 0.05), "ks_p_value 0.0012 < 0.05");
    assert_eq!(evidence("ks_p_value", 3.14e-12, 0.05), "ks_p_value 3.1e-12 < 0.05");
    assert_eq!(evidence("wasserstein_normed", 0.3127, 0.2), "wasserstein_normed 0.313 > 0.2");
    assert_eq!(evidence("p95_latency_ms", 2500.4, 2000.0), "p95_latency_ms 2500 > 2000");
    assert_eq!(evidence("error_rate", 0.05, 0.05), "error_rate 0.05 = 0.05");
    assert_eq!(evidence("", f64::NAN, 0.05), "- NaN vs 0.05");
    let cases = [(0.0, "0"), (1.0, "1"), (12.345, "12.3"), (99.96, "100"), (-1.5, "-1.5"), (2e6, "2e6")];
    for (value, text) in cases {
        assert_eq!(compact_number(value), text, "{value}");
    }
    assert_eq!(compact_number(f64::INFINITY), "inf");
}

#[test]
fn webhooks_summarise_their_deliveries() {
    assert_eq!(webhooks_summary(&[]), "-");
    assert_eq!(webhooks_summary(&[delivery("delivered", 1)]), "1/1 delivered");
    assert_eq!(webhooks_summary(&[delivery("failed", 1)]), "failed (1 try)");
    assert_eq!(webhooks_summary(&[delivery("pending", 0)]), "pending");
    assert_eq!(webhooks_summary(&[delivery("pending", 2)]), "retrying (2 tries)");
    let mixed = [delivery("delivered", 1), delivery("failed", 3), delivery("pending", 0)];
    assert_eq!(webhooks_summary(&mixed), "1/3 delivered, 1 failed, 1 pending");
    assert_eq!(webhooks_summary(&[delivery("failed", 3), delivery("failed", 2)]), "0/2 delivered, 2 failed");
}

#[test]
fn alert_report_shows_fields_evidence_windows_and_webhooks() {
    let text = render_alert(&drift_alert(), &Utc);
    assert!(text.starts_with("id                0190b5a8-7c1e-7d3a-9f00-00000000a1e7\n"), "{text}");
    assert!(text.contains("\noccurrences       3\nstarted           2024-05-29 16:26:40.000 +00:00\n"), "{text}");
    assert!(text.contains("\nacknowledged      -\nacknowledged by   -\nresolved          -\n"), "{text}");
    assert!(text.contains("\nMESSAGE\nKS test: the prompts of the last hour are longer.\n"), "{text}");
    assert!(text.contains("\nLABELS\nroute             small\n"), "{text}");
    assert!(text.contains("\nstatistic         ks_p_value\nvalue             0.0012 < threshold 0.05\n"), "{text}");
    assert!(text.contains("\ndetail            prompt_chars, route small\n\nSUMMARY"), "{text}");
    assert!(
        text.contains(
            "SUMMARY  REFERENCE  CURRENT  CHANGE\n\
             n             1000      200       -\n\
             mean           120      180    +50%\n\
             p95            410      900   +120%\n\
             rate           2.5        -       -\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nWEBHOOKS\nURL                      STATUS     TRIES  LAST ATTEMPT"), "{text}");
    assert!(text.contains("delivered      1  2024-05-29 16:26:40.500 +00:00  -\n"), "{text}");

    let threshold_only =
        Evidence { statistic: "gpu_temp_c".into(), value: 91.0, threshold: 85.0, ..Evidence::default() };
    let text = render_alert(&Alert { evidence: Some(threshold_only), ..Alert::default() }, &Utc);
    assert!(text.contains("value             91 > threshold 85\ndetail            -\n\nWEBHOOKS"), "{text}");
    // llmopsd sends a blank evidence rather than none.
    let bare = render_alert(&Alert { evidence: Some(Evidence::default()), ..Alert::default() }, &Utc);
    assert!(bare.contains("\nLABELS\n(none)\n\nEVIDENCE\n(none)\n\nWEBHOOKS\n(none configured)\n"), "{bare}");
}

#[test]
fn acknowledging_says_who_did_it() {
    let acked = Alert {
        state: "acknowledged".into(),
        alert_state: AlertState::Acknowledged as i32,
        acknowledged_by: "alice".into(),
        acknowledged_at_unix_ms: Some(AT),
        ..drift_alert()
    };
    let what = "alert 0190b5a8-7c1e-7d3a-9f00-00000000a1e7 (warning drift: Prompt length drifted on route small \
                since the reference week)";
    assert_eq!(render_acknowledged(&acked, "alice", &Utc), format!("Acknowledged {what} as alice.\n"));
    assert_eq!(
        render_acknowledged(&acked, "bob", &Utc),
        format!("The {what} was already acknowledged by alice at 2024-05-29 16:26:40.000 +00:00.\n")
    );
}

#[test]
fn watch_lines_line_up_with_their_header() {
    assert_eq!(
        alert_watch_header(),
        format!("TIME      EVENT         ID        SEVERITY  RULE           TITLE{}EVIDENCE", " ".repeat(37))
    );
    let event = AlertEvent {
        kind: "raised".into(),
        event_kind: AlertEventKind::Raised as i32,
        alert: Some(drift_alert()),
        missed: 0,
    };
    let line = alert_watch_line(&event, &now()).expect("a line");
    assert!(line.starts_with("16:27:40  RAISED        0000a1e7  warning   drift          Prompt length"), "{line}");
    // Columns in characters: the cut title ends in a 3-byte "…".
    let column = |text: &str, start: &str| text.find(start).map(|at| text[..at].chars().count());
    assert_eq!(column(&alert_watch_header(), "EVIDENCE"), column(&line, "ks_p_value"), "{line}");
    assert_eq!(alert_watch_line(&AlertEvent { missed: 3, ..AlertEvent::default() }, &now()), None);
    assert_eq!(short_alert_id("abc"), "abc");
    assert_eq!(short_alert_id(""), "-");
}
