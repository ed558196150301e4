//! API keys and tenants end to end: open on loopback until a key exists, then 401s (OpenAI-shaped, counted but
//! not stored as traces) for a missing, wrong or revoked key; a valid key's tenant on the trace; the key in no
//! trace or log; keys kept across a restart.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::key_service_client::KeyServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;

async fn chat(daemon: &Daemon, key: Option<&str>) -> (u16, Value, String) {
    let mut request = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, response.json().await.expect("JSON body"), id)
}

async fn trace(daemon: &Daemon, id: &str) -> pb::Trace {
    let mut client = TraceServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    for _ in 0..200 {
        if let Ok(trace) = client.get_trace(pb::GetTraceRequest { id: id.to_string() }).await {
            return trace.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("trace {id} never recorded\n{}", daemon.log_tail(30));
}

#[tokio::test]
async fn keys_select_tenants_and_wrong_missing_or_revoked_keys_get_401() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");

    // Loopback and no keys: any placeholder works (the quick start), as tenant `default`.
    let (status, _, id) = chat(&daemon, Some("unused")).await;
    assert_eq!(status, 200);
    assert_eq!(trace(&daemon, &id).await.tenant, "default");

    let mut keys = KeyServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let created = keys
        .create_key(pb::CreateKeyRequest { tenant: "acme".into(), name: "ci".into() })
        .await
        .expect("CreateKey")
        .into_inner();
    let secret = created.secret.clone();
    let key_id = created.key.expect("key record").id;

    for (key, code) in [(None, "missing_api_key"), (Some("unused"), "invalid_api_key")] {
        let (status, body, id) = chat(&daemon, key).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], code, "{body}");
        // Refused before the body is read: counted, not stored (an unauthenticated loop cannot fill the store).
        let mut traces = TraceServiceClient::new(daemon.grpc_channel().await.expect("channel"));
        let stored = traces.get_trace(pb::GetTraceRequest { id: id.clone() }).await;
        assert_eq!(stored.expect_err("no trace").code(), tonic::Code::NotFound);
    }
    let metrics = reqwest::get(daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("llmops_http_refused_total{reason=\"unauthenticated\"} 2\n"), "{metrics}");
    let (status, _, id) = chat(&daemon, Some(&secret)).await;
    assert_eq!(status, 200);
    let recorded = trace(&daemon, &id).await;
    assert_eq!(recorded.tenant, "acme");
    assert!(!format!("{recorded:?}").contains(&secret), "the key is in no trace");

    // Kept across a restart (only its hash is stored).
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(20)).await.expect("clean exit");
    assert!(!daemon.log_tail(500).contains(&secret), "the key is in no log");
    let state = std::fs::read(dir.path().join("state.db")).expect("state database");
    assert!(!String::from_utf8_lossy(&state).contains(&secret), "only the hash is stored");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd restarts");
    assert_eq!(chat(&daemon, Some(&secret)).await.0, 200);

    let mut keys = KeyServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let listed = keys.list_keys(pb::ListKeysRequest {}).await.expect("ListKeys").into_inner();
    assert!(listed.key_required);
    assert_eq!(listed.keys.iter().map(|k| (k.tenant.as_str(), k.revoked)).collect::<Vec<_>>(), [("acme", false)]);
    keys.revoke_key(pb::RevokeKeyRequest { id: key_id }).await.expect("RevokeKey");
    let (status, body, _) = chat(&daemon, Some(&secret)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("revoked_api_key")), "{body}");
    let missing = keys.revoke_key(pb::RevokeKeyRequest { id: "key-nope".into() }).await.expect_err("unknown id");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
