//! End to end: feedback scores on traces through the real llmopsd in front of the fake upstream. A request's
//! `x-request-id` is scored with `POST /v1/feedback`; the scores are on the trace over gRPC and in
//! `llmopsctl trace --json`, in `/metrics` and the request metrics, added by `llmopsctl score`, and still there
//! after a restart. Hostile bodies each get their 4xx, the per-trace limit holds under concurrent posts, and
//! the daemon keeps answering.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use pb::feedback_service_client::FeedbackServiceClient;
use pb::telemetry_service_client::TelemetryServiceClient;
use pb::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;

fn config(base_url: &str) -> String {
    format!("[engines.fake]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodels = [\"fake-model\"]\n")
}

/// One chat request; its trace id (the `x-request-id` header).
async fn chat(http: &reqwest::Client, daemon: &Daemon, content: &str) -> String {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": content}]});
    let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("chat");
    assert_eq!(response.status().as_u16(), 200);
    response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id").to_owned()
}

/// `POST /v1/feedback` with a JSON body: status and body.
async fn feedback(http: &reqwest::Client, daemon: &Daemon, body: &Value) -> (u16, Value) {
    let response = http.post(daemon.url("/v1/feedback")).json(body).send().await.expect("POST /v1/feedback");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "llmopsctl {args:?} failed: {stderr}\n{}", daemon.log_tail(20));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_scored_request_shows_its_scores_everywhere_and_after_a_restart() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(&config(&upstream.base_url()), dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let id = chat(&http, &daemon, "what is the capital of France?").await;

    // Right after the answer: the trace may not be written yet, and the score is taken all the same.
    let (status, thumbs) =
        feedback(&http, &daemon, &json!({"trace_id": id, "name": "thumbs", "bool": true, "comment": "spot on"})).await;
    assert_eq!(status, 201, "{thumbs}");
    assert_eq!(
        (thumbs["object"].as_str(), thumbs["kind"].as_str(), thumbs["value"].as_bool()),
        (Some("score"), Some("boolean"), Some(true))
    );
    assert_eq!((thumbs["trace_id"].as_str(), thumbs["source"].as_str()), (Some(id.as_str()), Some("human")));
    assert!(thumbs["id"].as_str().is_some_and(|s| !s.is_empty()), "{thumbs}");
    let (status, body) =
        feedback(&http, &daemon, &json!({"trace_id": id, "name": "quality", "value": 0.25, "source": "llm"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        feedback(&http, &daemon, &json!({"trace_id": id, "name": "tone", "label": "curt", "source": "code"})).await;
    assert_eq!(status, 201, "{body}");
    let added = ctl(&daemon, &["score", &id, "correct", "--fail", "--comment", "wrong city", "--json"]).await;
    let added: Value = serde_json::from_str(&added).expect("score --json");
    assert_eq!((added["kind"].as_str(), added["value"].as_bool()), (Some("boolean"), Some(false)));

    daemon.wait_for_trace(&id).await.expect("trace written");
    let channel = daemon.grpc_channel().await.expect("gRPC");
    let listed = FeedbackServiceClient::new(channel.clone())
        .list_scores(pb::ListScoresRequest { trace_id: id.clone() })
        .await
        .expect("ListScores")
        .into_inner()
        .scores;
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["thumbs", "quality", "tone", "correct"], "oldest first");
    assert_eq!(listed[1].value, Some(pb::score::Value::Number(0.25)));
    assert_eq!(listed[2].source, pb::ScoreSource::Code as i32);
    let trace = TraceServiceClient::new(channel.clone())
        .get_trace(pb::GetTraceRequest { id: id.clone() })
        .await
        .expect("GetTrace")
        .into_inner();
    assert_eq!(trace.scores, listed, "GetTrace carries the scores");

    let json: Value = serde_json::from_str(&ctl(&daemon, &["trace", &id, "--json"]).await).expect("trace --json");
    let scores = json["scores"].as_array().expect("scores in trace --json");
    assert_eq!(scores.len(), 4);
    assert_eq!((scores[0]["name"].as_str(), scores[0]["comment"].as_str()), (Some("thumbs"), Some("spot on")));
    assert_eq!(scores[2]["value"], "curt");
    let text = ctl(&daemon, &["trace", &id]).await;
    assert!(text.contains("\nSCORES\nNAME"), "{text}");
    assert!(text.contains("correct  fail"), "{text}");

    // Metrics: per route and prompt, bounded labels, a pass rate and a mean.
    let metrics = http.get(daemon.url("/metrics")).send().await.expect("GET /metrics").text().await.expect("text");
    let passed = metrics.lines().find(|l| l.starts_with("llmops_score_passed_total{") && l.contains("name=\"thumbs\""));
    assert!(passed.is_some_and(|l| l.contains("route=\"fake-model\"") && l.ends_with(" 1")), "{metrics}");
    assert!(metrics.contains("llmops_score_value_sum{route=\"fake-model\""), "{metrics}");
    let rates = TelemetryServiceClient::new(channel)
        .get_request_metrics(pb::GetRequestMetricsRequest {})
        .await
        .expect("GetRequestMetrics")
        .into_inner()
        .scores;
    let correct = rates.iter().find(|r| r.name == "correct").expect("a rate for `correct`");
    assert_eq!((correct.route.as_str(), correct.pass_rate), ("fake-model", Some(0.0)));

    // Scores are in the trace store: a restart keeps them.
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(30)).await.expect("clean exit");
    let daemon = Daemon::start(&config(&upstream.base_url()), dir.path()).await.expect("llmopsd restarts");
    let again = TraceServiceClient::new(daemon.grpc_channel().await.expect("gRPC"))
        .get_trace(pb::GetTraceRequest { id: id.clone() })
        .await
        .expect("GetTrace after restart")
        .into_inner();
    assert_eq!(again.scores, trace.scores);
}

#[tokio::test]
async fn hostile_feedback_gets_its_4xx_and_the_daemon_keeps_answering() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config(&upstream.base_url()), dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let id = chat(&http, &daemon, "hello").await;
    let unknown = "0190b5a8-0000-7000-8000-000000000000";
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        ("unknown trace", json!({"trace_id": unknown, "name": "thumbs", "bool": true}), 404, None),
        ("not a trace id", json!({"trace_id": "../../etc/passwd", "name": "thumbs", "bool": true}), 404, None),
        ("oversized trace id", json!({"trace_id": long(65), "name": "thumbs", "bool": true}), 400, Some("trace_id")),
        ("oversized name", json!({"trace_id": id, "name": long(65), "bool": true}), 400, Some("name")),
        ("oversized label", json!({"trace_id": id, "name": "tone", "label": long(257)}), 400, Some("label")),
        (
            "oversized comment",
            json!({"trace_id": id, "name": "t", "bool": true, "comment": long(4097)}),
            400,
            Some("comment"),
        ),
        ("number as a string", json!({"trace_id": id, "name": "quality", "value": "0.8"}), 400, Some("value")),
        ("boolean as a string", json!({"trace_id": id, "name": "thumbs", "bool": "yes"}), 400, Some("bool")),
        ("two values", json!({"trace_id": id, "name": "thumbs", "bool": true, "label": "up"}), 400, Some("label")),
        ("no value", json!({"trace_id": id, "name": "thumbs"}), 400, Some("value")),
        ("no name", json!({"trace_id": id, "bool": true}), 400, Some("name")),
        (
            "unknown source",
            json!({"trace_id": id, "name": "thumbs", "bool": true, "source": "bot"}),
            400,
            Some("source"),
        ),
        ("unknown field", json!({"trace_id": id, "name": "thumbs", "bool": true, "score": 5}), 400, Some("score")),
        ("escape sequence in the name", json!({"trace_id": id, "name": "\u{1b}[2J", "bool": true}), 400, Some("name")),
        ("an array", json!([{"trace_id": id}]), 400, None),
    ];
    for (what, body, status, param) in cases {
        let (got, error) = feedback(&http, &daemon, &body).await;
        assert_eq!(got, status, "{what}: {error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {error}");
        assert_eq!(error["error"]["param"].as_str(), param, "{what}: {error}");
    }
    let raw = |body: Vec<u8>, content_type: &str| {
        http.post(daemon.url("/v1/feedback")).header("content-type", content_type).body(body).send()
    };
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(status(raw(b"{\"trace_id\": ".to_vec(), "application/json").await.expect("send")), 400, "malformed");
    assert_eq!(
        status(raw(br#"{"trace_id":"x","name":"n","value":1e400}"#.to_vec(), "application/json").await.expect("send")),
        400
    );
    // Just past the 32 KiB bound: a body far larger could still be in flight when the 413 closes the connection.
    let huge = format!(r#"{{"trace_id":"{id}","name":"n","bool":true,"comment":"{}"}}"#, long(33 * 1024));
    assert_eq!(status(raw(huge.into_bytes(), "application/json").await.expect("send")), 413, "huge body");
    assert_eq!(status(raw(b"trace_id=x".to_vec(), "application/x-www-form-urlencoded").await.expect("send")), 415);

    // The limit holds when many scores race for the last places: the writer counts and inserts in one go.
    let limit = 100;
    let posts = (0..limit + 20).map(|i| {
        let body = json!({"trace_id": id, "name": "thumbs", "bool": i % 2 == 0});
        let (http, daemon) = (&http, &daemon);
        async move { feedback(http, daemon, &body).await }
    });
    let results = futures::future::join_all(posts).await;
    let created = results.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, limit, "exactly the limit is stored");
    for (status, body) in results.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 400, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("100 scores")), "{body}");
    }
    let listed = FeedbackServiceClient::new(daemon.grpc_channel().await.expect("gRPC"))
        .list_scores(pb::ListScoresRequest { trace_id: id.clone() })
        .await
        .expect("ListScores")
        .into_inner();
    assert_eq!(listed.scores.len(), limit);
    let refused = daemon.llmopsctl_async(&["score", &id, "thumbs", "--pass"]).await.expect("llmopsctl runs");
    assert_eq!(refused.status.code(), Some(1), "over the limit: exit 1");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("100 scores"));
    let missing = daemon.llmopsctl_async(&["score", unknown, "thumbs", "--pass"]).await.expect("llmopsctl runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no trace with id"));

    // Still serving.
    chat(&http, &daemon, "still here").await;
    let (status, body) = feedback(
        &http,
        &daemon,
        &json!({"trace_id": chat(&http, &daemon, "again").await,
        "name": "thumbs", "passed": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
