//! Engine and route alerts end to end, against the release binary and a webhook receiver: an engine down, a
//! launched engine in a restart loop, a route over its latency SLO and a spike of errors. Each is driven by
//! the fake upstream, asserted as raised on the webhook and, where the rule can clear within a test, resolved.
//! (The restart loop clears only once ten minutes hold fewer restarts: `telemetry::rules` tests that with an
//! injected clock.)
mod alert_support;

use alert_support::{assert_readable, chat, chats, engine_toml, wait_delivered, Hook, WAIT};
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn id(alert: &serde_json::Value) -> String {
    alert["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_engine_down_for_long_enough_alerts_until_it_answers_again() {
    let hook = Hook::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 100\n[alerts]\nengine_down_secs = 1\n{}{}",
        hook.toml(),
        engine_toml(&format!("http://127.0.0.1:{port}/v1"))
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let down = hook.wait_for(&daemon, "raised", "engine down", |a| a["key"] == "engine:fake:down").await;
    assert_eq!((down["rule"].as_str(), down["severity"].as_str()), (Some("engine"), Some("critical")));
    assert_readable(&down, &["Engine fake has been unhealthy for", "(alert after 1 s); last error: "]);
    assert!(down["evidence"]["value"].as_f64() >= Some(1.0), "{down}");

    // The engine comes up: the next request finds it healthy.
    let upstream = FakeUpstream::start_on(([127, 0, 0, 1], port).into(), Behavior::default()).await.expect("fake");
    let answered = wait_until(WAIT, || async { chat(&daemon, "hi").await == 200 }).await;
    assert!(answered, "{}", daemon.log_tail(20));
    let up = hook.wait_for(&daemon, "resolved", "engine up", |a| a["id"] == id(&down).as_str()).await;
    assert_eq!(up["resolution"], "engine fake is healthy again");
    assert_eq!(hook.events_for(&id(&down)), ["raised", "resolved"]);
    wait_delivered(&daemon, &id(&down)).await;
    drop(upstream);
}

#[tokio::test]
async fn a_launched_engine_in_a_restart_loop_alerts() {
    let hook = Hook::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 100\n[alerts]\nengine_restarts = 2\nengine_down_secs = 0\n{}\
         [engines.broken]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"fake-model\"]\n\
         launch = [\"/bin/sh\", \"-c\", \"echo cannot load weights >&2; exit 3\"]\n",
        hook.toml()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let looping = hook.wait_for(&daemon, "raised", "restart loop", |a| a["key"] == "engine:broken:restarts").await;
    assert_eq!((looping["rule"].as_str(), looping["severity"].as_str()), (Some("engine"), Some("critical")));
    assert!(looping["title"].as_str().is_some_and(|t| t.starts_with("engine broken restarted")), "{looping}");
    assert_readable(&looping, &["in the last 10 minutes (alert at 2); last exit: ", "exit status: 3"]);
    assert_eq!(looping["evidence"]["threshold"].as_f64(), Some(2.0));
    wait_delivered(&daemon, &id(&looping)).await;
}

#[tokio::test]
async fn a_route_over_its_latency_slo_alerts_until_its_p95_is_back() {
    let hook = Hook::start().await;
    let slow = Behavior { reply_words: Some(10), token_delay_ms: 20, ..Behavior::default() };
    let upstream = FakeUpstream::start(slow).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 100\n[alerts]\nlatency_p95_ms = 100.0\nlatency_slo_minutes = 1\n{}{}",
        hook.toml(),
        engine_toml(&upstream.base_url())
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    chats(&daemon, 3, "hi").await;
    let slo = hook.wait_for(&daemon, "raised", "latency SLO", |a| a["rule"] == "latency_slo").await;
    assert_eq!(
        (slo["key"].as_str(), slo["severity"].as_str()),
        (Some("latency_slo:fake-model:fake-model"), Some("warning"))
    );
    assert_readable(
        &slo,
        &["Route fake-model (model fake-model): p95 latency", "over the last 1 min, above the 100 ms SLO"],
    );
    assert!(slo["evidence"]["value"].as_f64() > Some(100.0), "{slo}");

    // Fast answers: 3 slow ones among 100 more are under 5%.
    upstream.set_behavior(Behavior { reply_words: Some(10), ..Behavior::default() });
    chats(&daemon, 100, "hi").await;
    let back = hook.wait_for(&daemon, "resolved", "SLO met again", |a| a["id"] == id(&slo).as_str()).await;
    let reason = back["resolution"].as_str().unwrap_or_default();
    assert!(reason.starts_with("p95 latency back to ") && reason.ends_with(" ms, within the 100 ms SLO"), "{reason}");
    assert_eq!(hook.events_for(&id(&slo)), ["raised", "resolved"]);
    wait_delivered(&daemon, &id(&slo)).await;
}

#[tokio::test]
async fn an_error_rate_spike_alerts_until_requests_succeed_again() {
    let hook = Hook::start().await;
    let upstream = FakeUpstream::start(Behavior { fail_status: Some(500), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    // No circuit breaker, so that every request reaches the engine.
    let config = format!(
        "[telemetry]\ninterval_ms = 100\n[resilience.breaker]\nconsecutive_failures = 0\nmin_requests = 1000\n\
         [alerts]\nerror_rate = 0.5\nerror_rate_min_requests = 5\nengine_down_secs = 0\n{}{}",
        hook.toml(),
        engine_toml(&upstream.base_url())
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    for _ in 0..5 {
        assert!(chat(&daemon, "hi").await >= 500);
    }
    let spike = hook.wait_for(&daemon, "raised", "error rate", |a| a["rule"] == "error_rate").await;
    assert_eq!(spike["severity"], "critical");
    assert_eq!(spike["title"], "fake-model failing: 100% of the last minute's requests");
    assert_readable(&spike, &["5 of 5 requests failed in the last minute (100%), at or over the 50% alert threshold"]);
    assert_eq!((spike["evidence"]["value"].as_f64(), spike["evidence"]["current_n"].as_u64()), (Some(1.0), Some(5)));

    upstream.set_behavior(Behavior::default());
    chats(&daemon, 10, "hi").await;
    let calm = hook.wait_for(&daemon, "resolved", "error rate down", |a| a["id"] == id(&spike).as_str()).await;
    let reason = calm["resolution"].as_str().unwrap_or_default();
    assert!(reason.starts_with("error rate back to ") && reason.ends_with("(alert at 50% of at least 5)"), "{reason}");
    assert_eq!(hook.events_for(&id(&spike)), ["raised", "resolved"]);
    wait_delivered(&daemon, &id(&spike)).await;
}
