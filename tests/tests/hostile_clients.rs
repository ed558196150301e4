//! Hostile clients end to end against the release binary: what a client or a web page sends is bounded or
//! refused before it reaches a label, a monitor or the store, and a normal request still works afterwards.
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::key_service_client::KeyServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

async fn start(extra: &str) -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior { reply_words: Some(3), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{extra}\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

fn chat() -> Value {
    json!({"model": "fake-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

/// A normal request still gets its answer.
async fn still_serves(daemon: &Daemon) {
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&chat()).send().await;
    let status = response.expect("POST").status();
    assert_eq!(status, 200, "a normal request after the hostile ones\n{}", daemon.log_tail(20));
}

async fn metrics(daemon: &Daemon) -> String {
    reqwest::get(daemon.url("/metrics")).await.expect("GET /metrics").text().await.expect("text")
}

async fn trace_count(daemon: &Daemon) -> usize {
    let mut client = TraceServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let request = pb::ListTracesRequest { limit: 1000, ..pb::ListTracesRequest::default() };
    client.list_traces(request).await.expect("ListTraces").into_inner().traces.len()
}

#[tokio::test]
async fn made_up_models_and_oversized_names_never_become_metric_labels() {
    let (_dir, _upstream, daemon) = start("").await;
    let http = reqwest::Client::new();
    let huge = "m".repeat(1024 * 1024);
    for _ in 0..20 {
        let body = json!({"model": huge, "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.expect("json");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("at most 256")), "{error}");
    }
    for i in 0..300 {
        let body = json!({"model": format!("no-such-model-{i}"), "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 404);
    }
    still_serves(&daemon).await;
    let counted = wait_until(WAIT, || async { metrics(&daemon).await.contains("route=\"fake-model\"") }).await;
    let text = metrics(&daemon).await;
    assert!(counted, "the served route is labelled:\n{text}");
    assert!(!text.contains("no-such-model") && !text.contains("mmmm"), "client names became labels");
    assert!(text.len() < 256 * 1024, "/metrics is {} bytes", text.len());
}

#[tokio::test]
async fn a_max_tokens_past_the_token_limit_is_refused_not_wrapped() {
    let (_dir, _upstream, daemon) = start("[rate_limits]\ntokens_per_min = 1000\n").await;
    let http = reqwest::Client::new();
    for max_tokens in [json!(u64::MAX), json!(5000), json!(400)] {
        let mut body = chat();
        body["max_tokens"] = max_tokens.clone();
        body["n"] = json!(4);
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 400, "max_tokens {max_tokens} with n = 4");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["param"], "max_tokens", "{error}");
    }
    still_serves(&daemon).await;
}

#[tokio::test]
async fn web_pages_cannot_spend_through_the_keyless_loopback_default() {
    let (_dir, _upstream, daemon) = start("[server]\ncors_origins = [\"https://chat.example.com\"]\n").await;
    let http = reqwest::Client::new();
    let url = daemon.url("/v1/chat/completions");
    let body = chat().to_string();
    // A form post from any page: no preflight needed, so it must be refused by its content type.
    let form = http.post(&url).header("content-type", "text/plain").header("origin", "https://evil.example");
    let refused = form.body(body.clone()).send().await.expect("POST");
    assert_eq!(refused.status(), 403, "a foreign origin is refused first");
    let plain = http.post(&url).header("content-type", "text/plain").body(body.clone()).send().await.expect("POST");
    assert_eq!(plain.status(), 415);
    let foreign = http.post(&url).header("origin", "https://evil.example").json(&chat()).send().await.expect("POST");
    assert_eq!(foreign.status(), 403);
    let error: Value = foreign.json().await.expect("json");
    assert_eq!(error["error"]["code"], "origin_not_allowed", "{error}");
    // DNS rebinding: the page's own host name in Host.
    let rebound = http.post(&url).header("host", "attacker.example:8080").json(&chat()).send().await.expect("POST");
    assert_eq!(rebound.status(), 403);
    // The configured origin works, with CORS headers and a preflight.
    let allowed = http.post(&url).header("origin", "https://chat.example.com").json(&chat()).send().await;
    let allowed = allowed.expect("POST");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://chat.example.com");
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://chat.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(preflight.status(), 204);
    let text = metrics(&daemon).await;
    for (reason, count) in [("origin_not_allowed", 2), ("host_not_allowed", 1), ("unsupported_media_type", 1)] {
        let line = format!("llmops_http_refused_total{{reason=\"{reason}\"}} {count}\n");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    still_serves(&daemon).await;
}

#[tokio::test]
async fn unauthenticated_requests_are_counted_not_stored() {
    let (_dir, _upstream, daemon) = start("").await;
    still_serves(&daemon).await;
    let mut keys = KeyServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let request = pb::CreateKeyRequest { tenant: "acme".into(), name: "ci".into() };
    let secret = keys.create_key(request).await.expect("CreateKey").into_inner().secret;
    assert!(wait_until(WAIT, || async { trace_count(&daemon).await == 1 }).await, "the first request's trace");

    let http = reqwest::Client::new();
    for _ in 0..300 {
        let response = http.post(daemon.url("/v1/chat/completions")).json(&chat()).send().await.expect("POST");
        assert_eq!(response.status(), 401);
    }
    let with_key = http.post(daemon.url("/v1/chat/completions")).bearer_auth(&secret).json(&chat()).send().await;
    assert_eq!(with_key.expect("POST").status(), 200);
    assert!(wait_until(WAIT, || async { trace_count(&daemon).await == 2 }).await, "the keyed request's trace");
    assert_eq!(trace_count(&daemon).await, 2, "no trace for the 300 refused requests");
    let text = metrics(&daemon).await;
    assert!(text.contains("llmops_http_refused_total{reason=\"unauthenticated\"} 300\n"), "{text}");
}

#[tokio::test]
async fn client_labels_and_tags_are_bounded() {
    let (_dir, _upstream, daemon) = start("").await;
    let http = reqwest::Client::new();
    let long = "v".repeat(257);
    let header = http.post(daemon.url("/v1/chat/completions")).header("x-llmops-prompt-version", &long);
    assert_eq!(header.json(&chat()).send().await.expect("POST").status(), 400);
    let mut body = chat();
    body["metadata"] = Value::Object((0..40).map(|i| (format!("t{i}"), json!("x"))).collect());
    let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("json");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("more than 32 tags")), "{error}");
    still_serves(&daemon).await;
}
