//! Drift alerts end to end, against the release binary and a webhook receiver: the window tests (KS on a
//! length, z-test on a rate), the CUSUM change-point detector and the input anomaly rule. They are raised on
//! the daemon's drift thread, which has no tokio runtime: every alert must still reach the webhook, with texts
//! for people and the evidence of both windows. Small references and windows keep the suite quick.
// Reads the deprecated alert strings on purpose: llmopsd keeps filling them for clients older than the enums.
#![allow(deprecated)]
mod alert_support;

use alert_support::{ack, assert_readable, chat, chats, engine_toml, wait_delivered, wait_for_alert, Hook};
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};

/// A daemon with one engine, one webhook and these `[drift]` settings.
async fn daemon(hook: &Hook, upstream: &FakeUpstream, drift: &str, dir: &tempfile::TempDir) -> Daemon {
    let config = format!("[drift]\n{drift}\n{}{}", hook.toml(), engine_toml(&upstream.base_url()));
    Daemon::start(&config, dir.path()).await.expect("llmopsd starts")
}

#[tokio::test]
async fn window_drift_in_a_length_and_a_rate_raises_then_resolves_on_the_webhook() {
    let hook = Hook::start().await;
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let drift = "reference_size = 30\nwindow_size = 30\nconsecutive = 1\ncusum_h = 0.0\ninput_anomaly_factor = 0.0";
    let daemon = daemon(&hook, &upstream, drift, &dir).await;
    // The fake engine echoes the prompt: "echo: question number seven" is 4 tokens.
    chats(&daemon, 30, "question number seven").await;
    // Then the answers are refusals, and 11 tokens long.
    chats(&daemon, 30, "I'm sorry, but I can't help with that request today").await;

    let length = hook.wait_for(&daemon, "raised", "output length drift", |a| {
        a["rule"] == "drift" && a["key"].as_str().is_some_and(|k| k.ends_with(":output_tokens"))
    });
    let length = length.await;
    assert_eq!(length["title"], "output length drifted up on route fake-model (model fake-model)");
    assert_readable(
        &length,
        &["mean from 4 tokens to 11 tokens (+175%)", "over the last 30 requests against 30 reference requests"],
    );
    let evidence = &length["evidence"];
    assert_eq!((evidence["statistic"].as_str(), evidence["reference_n"].as_u64()), (Some("ks_p_value"), Some(30)));
    assert_eq!((evidence["reference"]["mean"].as_f64(), evidence["current"]["mean"].as_f64()), (Some(4.0), Some(11.0)));
    assert!(evidence["value"].as_f64() < evidence["threshold"].as_f64(), "{evidence}");

    let refusals = hook.wait_for(&daemon, "raised", "refusal rate drift", |a| {
        a["key"].as_str().is_some_and(|k| k.ends_with(":refusal_rate"))
    });
    let refusals = refusals.await;
    assert_readable(
        &refusals,
        &["refusal rate drifted up", "from 0.0% of 30 reference requests to 100.0% of the last 30"],
    );
    let evidence = &refusals["evidence"];
    assert_eq!((evidence["statistic"].as_str(), evidence["current_n"].as_u64()), (Some("z_test_p_value"), Some(30)));
    assert_eq!((evidence["reference"]["mean"].as_f64(), evidence["current"]["mean"].as_f64()), (Some(0.0), Some(1.0)));

    // The next window is like the reference again: both resolve.
    chats(&daemon, 30, "question number seven").await;
    for alert in [&length, &refusals] {
        let id = alert["id"].as_str().unwrap_or_default();
        let resolved = hook.wait_for(&daemon, "resolved", "window drift resolved", |a| a["id"] == id).await;
        assert_eq!(resolved["resolution"], "the last 30 requests match the reference again");
        assert_eq!(hook.events_for(id), ["raised", "resolved"]);
        wait_delivered(&daemon, id).await;
    }
}

#[tokio::test]
async fn a_cusum_shift_reaches_the_webhook_with_both_windows_and_ends_after_its_timeout() {
    let hook = Hook::start().await;
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(10), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let drift = "reference_size = 30\nwindow_size = 1000\ninput_anomaly_factor = 0.0\nevent_alert_timeout_secs = 1";
    let daemon = daemon(&hook, &upstream, drift, &dir).await;
    chats(&daemon, 40, "hi").await;
    // The engine's answers grow 1.5x and slow down.
    upstream.set_behavior(Behavior { reply_words: Some(15), token_delay_ms: 2, ..Behavior::default() });
    chats(&daemon, 10, "hi").await;

    let key_end = ":output_tokens:shift";
    let shift =
        hook.wait_for(&daemon, "raised", "CUSUM shift", |a| a["key"].as_str().is_some_and(|k| k.ends_with(key_end)));
    let shift = shift.await;
    assert_eq!((shift["rule"].as_str(), shift["severity"].as_str()), (Some("drift"), Some("warning")));
    assert_eq!(shift["title"], "output length shifted up on route fake-model (model fake-model)");
    assert_readable(
        &shift,
        &["mean from 10 tokens over 30 reference requests to 15 tokens (+50%)", "resolves 1 s after the last shift"],
    );
    let evidence = &shift["evidence"];
    assert_eq!((evidence["statistic"].as_str(), evidence["reference_n"].as_u64()), (Some("cusum"), Some(30)));
    assert_eq!((evidence["reference"]["n"].as_u64(), evidence["reference"]["mean"].as_f64()), (Some(30), Some(10.0)));
    let current_n = evidence["current_n"].as_u64().unwrap_or_default();
    assert!((1..=10).contains(&current_n), "{evidence}");
    assert_eq!(
        (evidence["current"]["n"].as_u64(), evidence["current"]["mean"].as_f64()),
        (Some(current_n), Some(15.0))
    );

    let id = shift["id"].as_str().unwrap_or_default();
    let ended = hook.wait_for(&daemon, "resolved", "shift timed out", |a| a["id"] == id).await;
    assert_eq!(ended["resolution"], "no recurrence within 1 s of the last one");
    assert_eq!(hook.events_for(id), ["raised", "resolved"]);
    let stored = wait_delivered(&daemon, id).await;
    assert_eq!(stored.state, "resolved");
    assert!(stored.deliveries.iter().all(|d| d.attempts >= 1 && d.last_error.is_empty()), "{stored:?}");
}

#[tokio::test]
async fn an_input_anomaly_fires_again_after_an_acknowledgement_then_times_out() {
    let hook = Hook::start().await;
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(5), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let drift = "reference_size = 30\nwindow_size = 1000\ncusum_h = 0.0\ninput_anomaly_factor = 5.0\n\
                 event_alert_timeout_secs = 5";
    let daemon = daemon(&hook, &upstream, drift, &dir).await;
    chats(&daemon, 30, "a short question").await;
    let long = ["please read all of this"; 8].join(" ");
    assert_eq!(chat(&daemon, &long).await, 200);

    let raised = hook.wait_for(&daemon, "raised", "input anomaly", |a| a["rule"] == "input_anomaly").await;
    let id = raised["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(raised["title"], "unusually long prompt on route fake-model (model fake-model)");
    assert_readable(
        &raised,
        &["40 tokens, 13.3 times the usual p99 of 3 tokens", "alert above 15 tokens", "acknowledge it to silence it"],
    );
    let evidence = &raised["evidence"];
    assert_eq!((evidence["value"].as_f64(), evidence["threshold"].as_f64()), (Some(40.0), Some(15.0)));
    assert_eq!((evidence["reference"]["p50"].as_f64(), evidence["reference_n"].as_u64()), (Some(3.0), Some(30)));

    ack(&daemon, &id).await;
    hook.wait_for(&daemon, "acknowledged", "ack", |a| a["id"] == id.as_str()).await;
    // Another such prompt: the acknowledged alert fires again and notifies again.
    assert_eq!(chat(&daemon, &long).await, 200);
    let again = wait_for_alert(&daemon, "fired again", |a| a.id == id && a.state == "firing" && a.occurrences == 2);
    let again = again.await;
    assert!(again.acknowledged_by.is_empty(), "{again:?}");
    let ended = hook.wait_for(&daemon, "resolved", "anomaly timed out", |a| a["id"] == id.as_str()).await;
    assert_eq!(ended["resolution"], "no recurrence within 5 s of the last one");
    assert_eq!(hook.events_for(&id), ["raised", "acknowledged", "raised", "resolved"]);
    wait_delivered(&daemon, &id).await;
}
