//! OTLP export through the release binary: traces wait in the outbox while the receiver is down (across a daemon
//! restart, the receiver asking for a day's wait with Retry-After) and all arrive once it is back; a full outbox drops the oldest and says so; a trace the receiver
//! refuses is found and dropped alone; a receiver that hangs is cut off by the timeout. Export state is checked
//! where operators read it: `llmopsctl status --json` and `/metrics`. (Phoenix, the real receiver, is
//! exercised by scripts/phoenix-check.sh.)
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::otlp_receiver::{string_attribute, Mode, OtlpReceiver};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn config(upstream: &str, receiver: &str, extra: &str) -> String {
    format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{upstream}\"\nmodels = [\"fake-model\"]\n\n\
         [export.otlp]\nendpoint = \"{receiver}\"\nflush_interval_ms = 20\nretry_initial_ms = 20\n\
         retry_max_ms = 100\ntimeout_ms = 500\n{extra}"
    )
}

/// One chat; returns its trace id (the `x-request-id` the gateway answers with).
async fn chat(daemon: &Daemon, user: &str) -> String {
    let body = json!({"model": "fake-model", "user": user, "messages": [{"role": "user", "content": "hello"}]});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id").to_string();
    response.bytes().await.expect("body");
    id
}

async fn export_status(daemon: &Daemon) -> Value {
    let output = daemon.llmopsctl_async(&["--json", "status"]).await.expect("llmopsctl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    status["otlp_export"].clone()
}

async fn wait_status(daemon: &Daemon, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = export_status(daemon).await;
        if condition(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(config: &str, dir: &Path) -> Daemon {
    Daemon::start(config, dir).await.expect("llmopsd starts")
}

#[tokio::test]
async fn a_receiver_down_across_a_restart_loses_no_trace() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let receiver = OtlpReceiver::start(Mode::Fail(503)).await.expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&upstream.base_url(), &receiver.endpoint(), "batch_size = 4\n");
    let mut daemon = start(&config, dir.path()).await;
    let mut sent = BTreeSet::new();
    for i in 0..6 {
        sent.insert(chat(&daemon, &format!("before-{i}")).await);
    }
    let status = wait_status(&daemon, "6 traces waiting after failed sends", |s| {
        s["pending"] == 6 && s["failures"].as_u64() >= Some(2) && s["state"] == "retrying"
    })
    .await;
    assert!(status["last_error"].as_str().unwrap_or_default().contains("HTTP 503"), "{status:#}");
    assert_eq!(status["exported"], 0);

    // Restart while the receiver is still down: the outbox is in the trace store, not in memory.
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(20)).await.expect("llmopsd stops");
    let daemon = start(&config, dir.path()).await;
    for i in 0..3 {
        sent.insert(chat(&daemon, &format!("after-{i}")).await);
    }
    wait_status(&daemon, "all 9 waiting after the restart", |s| s["pending"] == 9).await;
    let metrics = reqwest::get(daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("llmops_otlp_outbox_items 9"), "{metrics}");

    receiver.set_mode(Mode::Accept);
    let delivered = wait_until(WAIT, || async { receiver.request_spans().len() >= sent.len() }).await;
    let received: BTreeSet<String> = receiver.request_spans().into_keys().collect();
    assert!(delivered, "delivered {} of {}", received.len(), sent.len());
    assert_eq!(received, sent, "every trace, from before and after the restart");
    let status = wait_status(&daemon, "an empty outbox", |s| s["pending"] == 0 && s["state"] == "idle").await;
    assert_eq!(status["dropped"], 0, "{status:#}");
    assert!(status["last_success_unix_ms"].as_i64() > Some(0), "{status:#}");
    // Each request span has its attempt as a child span.
    let spans = receiver.spans();
    for (trace_id, span) in receiver.request_spans() {
        let children = spans.iter().filter(|s| s.parent_span_id == span.span_id && s.trace_id == span.trace_id);
        assert_eq!(children.count(), 1, "one attempt span under {trace_id}");
        assert_eq!(span.name, "chat fake-model");
    }
    let metrics = reqwest::get(daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("llmops_otlp_outbox_items 0"), "{metrics}");
    assert!(metrics.contains("llmops_otlp_exported_traces_total 9"), "{metrics}");

    // A score given after its trace went out follows on its own, under the same request span.
    let scored = sent.iter().next().cloned().expect("a trace");
    let body = json!({"trace_id": scored, "name": "helpful", "value": 0.75, "source": "llm"});
    let response = reqwest::Client::new().post(daemon.url("/v1/feedback")).json(&body).send().await.expect("feedback");
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    let request_span = receiver.request_spans()[&scored].clone();
    let arrived = wait_until(WAIT, || async {
        receiver.spans().iter().any(|s| s.name == "evaluation helpful" && s.parent_span_id == request_span.span_id)
    })
    .await;
    assert!(arrived, "the score's span under its request span");
    let spans = receiver.spans();
    let score = spans.iter().find(|s| s.name == "evaluation helpful").expect("score span");
    assert_eq!(score.trace_id, request_span.trace_id);
    assert_eq!(score.events.first().map(|e| e.name.as_str()), Some("gen_ai.evaluation.result"));
    wait_status(&daemon, "the score counted", |s| s["exported_scores"] == 1 && s["pending"] == 0).await;
}

#[tokio::test]
async fn a_full_outbox_drops_the_oldest_and_counts_them() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let receiver = OtlpReceiver::start(Mode::Fail(503)).await.expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(&config(&upstream.base_url(), &receiver.endpoint(), "outbox_capacity = 3\n"), dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(chat(&daemon, &format!("u{i}")).await);
        // One at a time into the outbox, so "oldest" is well defined.
        let total = |s: &Value| s["pending"].as_u64().unwrap_or(0) + s["dropped"].as_u64().unwrap_or(0);
        wait_status(&daemon, "the trace in the outbox", |s| total(s) == i + 1).await;
    }
    let status = wait_status(&daemon, "two dropped", |s| s["dropped"] == 2).await;
    assert_eq!(status["pending"], 3, "{status:#}");
    receiver.set_mode(Mode::Accept);
    assert!(wait_until(WAIT, || async { receiver.request_spans().len() >= 3 }).await);
    let received: BTreeSet<String> = receiver.request_spans().into_keys().collect();
    assert_eq!(received, ids[2..].iter().cloned().collect::<BTreeSet<_>>(), "the newest three");
}

#[tokio::test]
async fn a_trace_the_receiver_refuses_is_dropped_alone_and_a_hanging_receiver_times_out() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let receiver = OtlpReceiver::start(Mode::Hang).await.expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(&config(&upstream.base_url(), &receiver.endpoint(), "batch_size = 8\n"), dir.path()).await;
    let mut good = BTreeSet::new();
    for user in ["a", "b", "poison", "c", "d"] {
        let id = chat(&daemon, user).await;
        if user != "poison" {
            good.insert(id);
        }
    }
    // The receiver never answers: each try ends at timeout_ms and is retried; the daemon keeps serving.
    let status = wait_status(&daemon, "timed-out sends", |s| s["failures"].as_u64() >= Some(2)).await;
    assert_eq!(status["pending"], 5, "{status:#}");
    good.insert(chat(&daemon, "e").await);

    // Now it answers, refusing any batch with the poison trace in it: the batch is split until that one trace
    // is alone, and only it is dropped.
    receiver.set_mode(Mode::RefuseUser("poison".into()));
    let status = wait_status(&daemon, "an empty outbox", |s| s["pending"] == 0 && s["rejected"] == 1).await;
    assert!(status["last_error"].as_str().unwrap_or_default().contains("HTTP 400"), "{status:#}");
    let received = receiver.request_spans();
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), good);
    assert!(received.values().all(|span| string_attribute(span, "llmops.user").as_deref() != Some("poison")));
    // The daemon still answers normally.
    chat(&daemon, "after").await;
}

#[tokio::test]
async fn a_receiver_answering_with_a_flood_is_read_no_further() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let receiver = OtlpReceiver::start(Mode::Flood(64 * 1024 * 1024)).await.expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(&config(&upstream.base_url(), &receiver.endpoint(), ""), dir.path()).await;
    let mut sent = BTreeSet::new();
    for i in 0..3 {
        sent.insert(chat(&daemon, &format!("f{i}")).await);
    }
    // A 64 MiB answer to each export: read up to 64 KiB, taken as the success its status says.
    let status = wait_status(&daemon, "all exported", |s| s["exported"] == 3 && s["pending"] == 0).await;
    assert_eq!(status["rejected"], 0, "{status:#}");
    assert_eq!(receiver.request_spans().into_keys().collect::<BTreeSet<_>>(), sent);
}
