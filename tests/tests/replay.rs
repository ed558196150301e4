//! Replay, end to end: a recorded streaming request is re-run through the real daemon against its own route
//! and another one, over gRPC and with `llmopsctl replay`; the re-run is a new trace linked to the original,
//! sent with the original seed and the overrides, and the comparison says what changed.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::replay_event::Event;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(15);

struct Setup {
    upstream_a: FakeUpstream,
    upstream_b: FakeUpstream,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

/// Route `echo` answers with the prompt (as the original did); route `words` answers "w1 w2 w3".
async fn setup(extra: &str) -> Setup {
    let upstream_a = FakeUpstream::start(Behavior { token_delay_ms: 5, ..Behavior::default() }).await.expect("fake a");
    let words = Behavior { token_delay_ms: 5, reply_words: Some(3), ..Behavior::default() };
    let upstream_b = FakeUpstream::start(words).await.expect("fake b");
    let config = format!(
        "{extra}\n[engines.a]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"echo\"]\n\n\
         [engines.b]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"words\"]\n",
        upstream_a.base_url(),
        upstream_b.base_url()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    Setup { upstream_a, upstream_b, daemon, _dir: dir }
}

/// A streamed chat request with a seed and a tag; returns its trace id once the trace is recorded.
async fn original_request(daemon: &Daemon) -> String {
    let body = json!({
        "model": "echo", "stream": true, "seed": 42, "temperature": 0.7,
        "messages": [{"role": "user", "content": "tell me about the sea"}],
    });
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .header("x-llmops-tag-team", "search")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().expect("id").to_string();
    response.text().await.expect("stream read to the end");
    get_trace(daemon, &id).await;
    id
}

async fn traces(daemon: &Daemon) -> TraceServiceClient<Channel> {
    TraceServiceClient::new(daemon.grpc_channel().await.expect("grpc channel"))
}

async fn get_trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a replay to its end: (started, chunks, done).
async fn replay(
    daemon: &Daemon,
    request: pb::ReplayRequest,
) -> Result<(pb::ReplayStarted, Vec<pb::ReplayChunk>, pb::ReplayDone), tonic::Status> {
    let mut events = traces(daemon).await.replay(request).await?.into_inner();
    let (mut started, mut chunks, mut done) = (None, Vec::new(), None);
    while let Some(event) = tokio::time::timeout(WAIT, events.message()).await.expect("replay stalls")? {
        match event.event.expect("every event has a body") {
            Event::Started(s) => started = Some(s),
            Event::Chunk(c) => {
                assert!(started.is_some(), "chunks come after started");
                chunks.push(c);
            }
            Event::Done(d) => done = Some(d),
        }
    }
    Ok((started.expect("started event"), chunks, done.expect("done event")))
}

#[tokio::test]
async fn replay_reruns_with_the_original_seed_and_links_the_new_trace() {
    let s = setup("").await;
    let id = original_request(&s.daemon).await;
    let original = get_trace(&s.daemon, &id).await;
    assert_eq!(original.response_text, "echo: tell me about the sea");
    // Replay's playback splits the text by these: one count per timed chunk, adding up to the text.
    assert_eq!(original.chunk_chars.len(), original.chunk_offsets_ms.len());
    let total: u32 = original.chunk_chars.iter().sum();
    assert_eq!(total as usize, original.response_text.chars().count());

    let request = pb::ReplayRequest { trace_id: id.clone(), ..pb::ReplayRequest::default() };
    let (started, chunks, done) = replay(&s.daemon, request).await.expect("replay");
    assert_ne!(started.trace_id, id);
    assert_eq!(started.route, "echo");
    let streamed: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(streamed, original.response_text, "the re-run streams the same answer");
    assert!(chunks.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms), "offsets grow");
    let sent = s.upstream_a.stats().last_request;
    assert_eq!(sent["seed"], 42, "the original seed is sent again: {sent}");
    assert_eq!(sent["temperature"], 0.7);

    let replayed = done.replay.expect("the recorded re-run");
    assert_eq!(replayed.id, started.trace_id);
    assert_eq!(replayed.replay_of, id);
    assert_eq!(replayed.tags.get("team").map(String::as_str), Some("search"), "tags carried over");
    let comparison = done.comparison.expect("comparison");
    assert!(comparison.text_identical && comparison.same_route);
    assert_eq!(comparison.text_similarity, 1.0);
    assert_eq!(comparison.output_tokens_delta, replayed.output_tokens as i64 - original.output_tokens as i64);
    assert_eq!(comparison.latency_delta_ms, replayed.latency_ms - original.latency_ms);
    let stored = get_trace(&s.daemon, &started.trace_id).await;
    assert_eq!(stored.replay_of, id, "the link is stored");
}

#[tokio::test]
async fn replay_on_another_route_with_overrides_shows_the_difference() {
    let s = setup("").await;
    let id = original_request(&s.daemon).await;
    let request = pb::ReplayRequest {
        trace_id: id.clone(),
        route: "words".into(),
        overrides_json: r#"{"temperature": 0, "max_tokens": 8}"#.into(),
    };
    let (started, chunks, done) = replay(&s.daemon, request).await.expect("replay");
    assert_eq!(started.route, "words");
    assert_eq!(chunks.iter().map(|c| c.text.as_str()).collect::<String>(), "w1 w2 w3");
    let sent: Value = s.upstream_b.stats().last_request;
    assert_eq!(
        (sent["temperature"].clone(), sent["max_tokens"].clone(), sent["seed"].clone()),
        (json!(0), json!(8), json!(42))
    );
    let comparison = done.comparison.expect("comparison");
    assert!(!comparison.text_identical && !comparison.same_route);
    assert!(comparison.text_similarity < 0.5, "{}", comparison.text_similarity);
    let replayed = done.replay.expect("replay trace");
    assert_eq!(replayed.route, "words");
    assert_eq!(
        comparison.output_tokens_delta,
        replayed.output_tokens as i64 - get_trace(&s.daemon, &id).await.output_tokens as i64
    );

    // The same for scripts.
    let output = s
        .daemon
        .llmopsctl_async(&["--json", "replay", &id, "--route", "words", "--set", "max_tokens=8"])
        .await
        .expect("llmopsctl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(report["replay"]["replay_of"], id.as_str());
    assert_eq!(report["replay"]["response_text"], "w1 w2 w3");
    assert_eq!(report["comparison"]["text_identical"], false);
    let output = s.daemon.llmopsctl_async(&["replay", &id]).await.expect("llmopsctl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("echo: tell me about the sea") && text.contains("text:     identical"), "{text}");
}

#[tokio::test]
async fn replay_refuses_unknown_traces_routes_and_private_ones() {
    let s = setup("").await;
    let id = original_request(&s.daemon).await;
    let unknown = replay(&s.daemon, pb::ReplayRequest { trace_id: "nope".into(), ..Default::default() }).await;
    assert_eq!(unknown.expect_err("unknown id").code(), tonic::Code::NotFound);
    let bad_route = pb::ReplayRequest { trace_id: id.clone(), route: "missing".into(), ..Default::default() };
    let error = replay(&s.daemon, bad_route).await.expect_err("unknown route");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("echo") && error.message().contains("words"), "{}", error.message());
    let output = s.daemon.llmopsctl_async(&["replay", "nope"]).await.expect("llmopsctl");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no trace with id nope"));

    let private = setup("[privacy]\nhash_content = true\n").await;
    let id = original_request(&private.daemon).await;
    let error = replay(&private.daemon, pb::ReplayRequest { trace_id: id, ..Default::default() }).await;
    let error = error.expect_err("nothing kept to replay");
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.message().contains("privacy"), "{}", error.message());
    drop(s.upstream_b);
}
