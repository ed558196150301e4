//! Alerts end to end: a budget crossing 80% and 100% and a GPU running hot raise alerts that reach the gRPC
//! API, `llmopsctl alerts` and a webhook; acknowledging and resolving follow the lifecycle.
use axum::routing::post;
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::nvml::FakeNvml;
use llmops_proto::v1 as pb;
use llmops_proto::v1::alert_service_client::AlertServiceClient;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A webhook receiver on a loopback port that keeps what it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn alerts(daemon: &Daemon) -> Vec<pb::Alert> {
    let mut client = AlertServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let request = pb::ListAlertsRequest { state: String::new(), limit: 100 };
    client.list_alerts(request).await.expect("ListAlerts").into_inner().alerts
}

async fn wait_for_alert(daemon: &Daemon, what: &str, check: impl Fn(&pb::Alert) -> bool) -> pb::Alert {
    for _ in 0..(WAIT.as_millis() / 50) {
        if let Some(alert) = alerts(daemon).await.into_iter().find(&check) {
            return alert;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: alerts {:#?}\n{}", alerts(daemon).await, daemon.log_tail(30));
}

#[tokio::test]
async fn budget_thresholds_raise_alerts_that_reach_grpc_llmopsctl_and_the_webhook() {
    let (hook, received) = receiver().await;
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(10), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    // Each request: 11 tokens at $0.10 = $1.10 against a soft $2.50 budget: 80% after the second, 100% after
    // the third.
    let config = format!(
        "[engines.paid]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         price = {{ input = 100000.0, output = 100000.0 }}\n\
         [[budgets]]\nname = \"soft\"\nwindow = \"day\"\nlimit_usd = 2.5\naction = \"alert\"\n\
         [[alerts.webhooks]]\nurl = \"{hook}\"\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let body = json!({"model": "fake-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 200, "an alert budget never blocks");
    }
    let warning = wait_for_alert(&daemon, "80% alert", |a| a.rule == "budget" && a.title.contains("80%")).await;
    let critical = wait_for_alert(&daemon, "100% alert", |a| a.rule == "budget" && a.title.contains("100%")).await;
    assert_eq!((warning.severity.as_str(), critical.severity.as_str()), ("warning", "critical"));
    assert_eq!(warning.state, "firing");
    let evidence = critical.evidence.as_ref().expect("evidence");
    assert!(evidence.value >= 1.0 && evidence.threshold == 1.0, "{evidence:?}");

    let delivered = wait_until(WAIT, || async { received.lock().map(|r| r.len() >= 2).unwrap_or(false) }).await;
    assert!(delivered, "webhook got {:?}", received.lock().map(|r| r.clone()));
    let first = received.lock().expect("lock")[0].clone();
    assert_eq!(first["event"], "raised");
    assert_eq!(first["alert"]["rule"], "budget");

    let listed = daemon.llmopsctl_async(&["alerts"]).await.expect("llmopsctl alerts");
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success() && shown.contains("budget soft at 100%"), "{shown}");
    let acked = daemon.llmopsctl_async(&["alerts", "ack", &critical.id, "--by", "ops"]).await.expect("ack");
    assert!(acked.status.success(), "{}", String::from_utf8_lossy(&acked.stderr));
    let after = wait_for_alert(&daemon, "acknowledged", |a| a.id == critical.id && a.state == "acknowledged").await;
    assert_eq!(after.acknowledged_by, "ops");
    let gone = daemon.llmopsctl_async(&["alerts", "ack", "no-such-alert"]).await.expect("ack");
    assert_eq!(gone.status.code(), Some(1));
}

#[tokio::test]
async fn a_hot_gpu_raises_an_alert_that_resolves_when_it_cools() {
    let values = |temperature: u32| {
        format!(
            "driver_version 550.54.15\ndevice_count 1\ngpu0.name NVIDIA L4\ngpu0.uuid GPU-hot\n\
             gpu0.memory_total 24000000000\ngpu0.memory_used 1000000000\ngpu0.temperature {temperature}\n"
        )
    };
    let nvml = FakeNvml::new(&values(60));
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 200\nnvml_library = \"{}\"\n[alerts]\ngpu_temperature_celsius = 80\n\
         [engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        nvml.lib_path().display(),
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    nvml.set(&values(92));
    let hot = wait_for_alert(&daemon, "hot GPU", |a| a.key == "gpu:GPU-hot:temperature" && a.state == "firing").await;
    assert_eq!(hot.severity, "critical", "92 C is 10 C over the 80 C threshold");
    nvml.set(&values(70));
    let cooled = wait_for_alert(&daemon, "cooled", |a| a.id == hot.id && a.state == "resolved").await;
    assert!(cooled.resolved_at_unix_ms.is_some());
}
