//! Upstreams that misbehave, against the release binary: a stream that stalls mid-way ends within the idle
//! timeout with an error event, and one that sends an endless event without a blank line is cut at the event
//! bound, not buffered; a client that asked for usage gets it even when the engine sends none.
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use serde_json::json;
use std::time::{Duration, Instant};

/// Far above the configured 300 ms idle timeout, far below the 60 s request timeout.
const ENDS_WITHIN: Duration = Duration::from_secs(20);

fn config(base_url: &str) -> String {
    format!(
        "[engines.up]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodels = [\"m\"]\n\
         request_timeout_ms = 60000\nstream_idle_timeout_ms = 300\n"
    )
}

/// The streamed answer's text, and how long it took to end.
async fn stream_answer(daemon: &Daemon) -> (String, Duration) {
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a b c d e"}]});
    let started = Instant::now();
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await;
    let response = response.expect("POST");
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let mut chunks = response.bytes_stream();
    let read = tokio::time::timeout(ENDS_WITHIN, async {
        while let Some(Ok(chunk)) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end within {ENDS_WITHIN:?}: {text}");
    (text, started.elapsed())
}

#[tokio::test]
async fn a_stream_that_stalls_mid_way_ends_with_an_error_after_the_idle_timeout() {
    let upstream = FakeUpstream::start(Behavior { stall_after_chunks: Some(2), ..Behavior::default() }).await;
    let upstream = upstream.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config(&upstream.base_url()), dir.path()).await.expect("llmopsd starts");
    let (text, took) = stream_answer(&daemon).await;
    assert!(text.contains("stream_idle_timeout_ms"), "the error event names the bound: {text}");
    assert!(took < ENDS_WITHIN, "{took:?}");
}

#[tokio::test]
async fn an_endless_event_is_cut_at_the_event_bound() {
    // An "engine" that answers 200 and then streams 4 MiB without ever ending an event.
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let chunks =
                futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 65536]))));
            let prefix = futures::stream::once(async { Ok(Bytes::from_static(b"data: ")) });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(prefix.chain(chunks)))
                .expect("response")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config(&base), dir.path()).await.expect("llmopsd starts");
    let (text, _) = stream_answer(&daemon).await;
    assert!(text.contains("stream_interrupted") && text.contains("without a blank line"), "{text}");
    assert!(text.len() < 4096, "nothing of the endless event reached the client: {} bytes", text.len());
}

#[tokio::test]
async fn usage_asked_for_is_sent_even_when_the_engine_sends_none() {
    let upstream = FakeUpstream::start(Behavior { omit_usage: true, ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config(&upstream.base_url()), dir.path()).await.expect("llmopsd starts");
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "one two three"}]});
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await;
    let text = response.expect("POST").text().await.expect("body");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last().copied(), Some("data: [DONE]"), "{text}");
    let usage: serde_json::Value =
        serde_json::from_str(events[events.len() - 2].trim_start_matches("data: ")).expect("usage chunk");
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert!(usage["usage"]["completion_tokens"].as_u64().is_some_and(|n| n >= 3), "{usage}");
    assert!(usage["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 0), "{usage}");
}
