//! The fake upstream over real HTTP: the exact texts, counts and failure modes the end-to-end tests rely on.
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use super::reply::split_tokens;
use super::{Behavior, FakeUpstream, Stats};
use crate::daemon::wait_until;

const WAIT: Duration = Duration::from_secs(5);

async fn start(behavior: Behavior) -> FakeUpstream {
    FakeUpstream::start(behavior).await.expect("fake upstream starts")
}

fn chat_request(content: &str, stream: bool) -> Value {
    json!({
        "model": "m1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": content},
        ],
        "stream": stream,
    })
}

async fn post(upstream: &FakeUpstream, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", upstream.base_url()))
        .json(body)
        .send()
        .await
        .expect("request is answered")
}

/// The JSON payloads of an SSE body, `[DONE]` included as the string "[DONE]".
fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| if data == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(data).expect("chunk is JSON") })
        .collect()
}

fn chat_deltas(events: &[Value]) -> String {
    events.iter().filter_map(|e| e.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect()
}

async fn stats_until(upstream: &FakeUpstream, condition: impl Fn(&Stats) -> bool) -> Stats {
    let reached = wait_until(WAIT, || {
        let stats = upstream.stats();
        let holds = condition(&stats);
        async move { holds }
    })
    .await;
    assert!(reached, "stats never reached the expected state: {:?}", upstream.stats());
    upstream.stats()
}

#[test]
fn tokens_concatenate_to_the_reply() {
    assert_eq!(split_tokens("echo: a  b"), vec!["echo:", " a", " ", " b"]);
    assert_eq!(split_tokens("echo: a  b").concat(), "echo: a  b");
    assert!(split_tokens("").is_empty());
}

#[tokio::test]
async fn chat_non_stream_echoes_with_usage() {
    let upstream = start(Behavior::default()).await;
    let answer: Value = post(&upstream, "/chat/completions", &chat_request("hello there world", false))
        .await
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "m1");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hello there world");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"], json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}));
    let stats = upstream.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.last_request["messages"][1]["content"], "hello there world");
    assert!(stats.last_headers.contains_key("content-type"));
}

#[tokio::test]
async fn chat_stream_chunks_concatenate_and_carry_usage() {
    let upstream = start(Behavior::default()).await;
    let mut request = chat_request("one two three", true);
    request["stream_options"] = json!({"include_usage": true});
    let response = post(&upstream, "/chat/completions", &request).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.expect("whole stream"));
    assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chat_deltas(&events), "echo: one two three");
    // role, 4 words, finish, usage, [DONE]
    assert_eq!(events.len(), 8);
    assert_eq!(events[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[6]["choices"], json!([]));
    assert_eq!(events[6]["usage"], json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}));
    assert_eq!(events[7], "[DONE]");
    let stats = stats_until(&upstream, |s| s.streams_completed == 1).await;
    assert_eq!((stats.streams_started, stats.streams_cancelled), (1, 0));
}

#[tokio::test]
async fn usage_only_when_asked_and_not_omitted() {
    let upstream = start(Behavior::default()).await;
    let events =
        sse_events(&post(&upstream, "/chat/completions", &chat_request("hi", true)).await.text().await.expect("body"));
    assert!(events.iter().all(|e| e.get("usage").is_none()));

    upstream.set_behavior(Behavior { omit_usage: true, ..Behavior::default() });
    let mut request = chat_request("hi", true);
    request["stream_options"] = json!({"include_usage": true});
    let events = sse_events(&post(&upstream, "/chat/completions", &request).await.text().await.expect("body"));
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    let answer: Value =
        post(&upstream, "/chat/completions", &chat_request("hi", false)).await.json().await.expect("JSON");
    assert!(answer.get("usage").is_none());
}

#[tokio::test]
async fn max_tokens_caps_words_with_length() {
    let upstream = start(Behavior { reply_words: Some(10), ..Behavior::default() }).await;
    let mut request = chat_request("ignored", false);
    request["max_tokens"] = json!(3);
    let answer: Value = post(&upstream, "/chat/completions", &request).await.json().await.expect("JSON");
    assert_eq!(answer["choices"][0]["message"]["content"], "w1 w2 w3");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 3);

    let mut request = chat_request("ignored", true);
    request["max_completion_tokens"] = json!(2);
    let events = sse_events(&post(&upstream, "/chat/completions", &request).await.text().await.expect("body"));
    assert_eq!(chat_deltas(&events), "w1 w2");
    assert!(events.iter().any(|e| e["choices"][0]["finish_reason"] == "length"));
}

#[tokio::test]
async fn completions_stream_and_non_stream() {
    let upstream = start(Behavior::default()).await;
    let request = json!({"model": "m2", "prompt": ["first prompt", "say this"], "max_tokens": 50});
    let answer: Value = post(&upstream, "/completions", &request).await.json().await.expect("JSON");
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["text"], "echo: say this");
    assert_eq!(answer["usage"], json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}));

    let request = json!({"model": "m2", "prompt": "say this", "stream": true});
    let events = sse_events(&post(&upstream, "/completions", &request).await.text().await.expect("body"));
    let text: String = events.iter().filter_map(|e| e.pointer("/choices/0/text").and_then(Value::as_str)).collect();
    assert_eq!(text, "echo: say this");
    assert_eq!(events.last(), Some(&json!("[DONE]")));
}

#[tokio::test]
async fn embeddings_are_deterministic() {
    let upstream = start(Behavior::default()).await;
    let request = json!({"model": "e", "input": ["a b", "c", "a b"]});
    let answer: Value = post(&upstream, "/embeddings", &request).await.json().await.expect("JSON");
    let data = answer["data"].as_array().expect("data array");
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"].as_array().map(Vec::len), Some(8));
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(answer["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
}

#[tokio::test]
async fn fail_status_answers_openai_error() {
    let upstream = start(Behavior { fail_status: Some(503), ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("hi", true)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body, json!({"error": {"message": "fake failure", "type": "server_error", "code": null}}));
    assert_eq!(upstream.stats().requests, 1);
}

#[tokio::test]
async fn control_and_models_over_http() {
    let upstream = start(Behavior::default()).await;
    let client = reqwest::Client::new();
    let root = format!("http://{}", upstream.addr);
    let models: Value =
        client.get(format!("{root}/v1/models")).send().await.expect("models").json().await.expect("JSON");
    assert_eq!(models["data"][0]["id"], "fake-model");

    let put = client
        .put(format!("{root}/control"))
        .json(&json!({"models": ["a", "b"], "reply_words": 2}))
        .send()
        .await
        .expect("control");
    assert!(put.status().is_success());
    assert_eq!(upstream.behavior().models, vec!["a", "b"]);
    assert_eq!(upstream.behavior().reply_words, Some(2));
    let typo = client.put(format!("{root}/control")).json(&json!({"reply_wrds": 2})).send().await.expect("control");
    assert!(typo.status().is_client_error(), "unknown knobs are refused, not ignored");

    post(&upstream, "/chat/completions", &chat_request("x", false)).await;
    let stats: Value = client.get(format!("{root}/stats")).send().await.expect("stats").json().await.expect("JSON");
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["last_request"]["model"], "m1");
}

#[tokio::test]
async fn cut_after_chunks_breaks_the_stream() {
    let upstream = start(Behavior { cut_after_chunks: Some(2), reply_words: Some(6), ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("x", true)).await;
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    let mut broken = false;
    while let Some(frame) = body.next().await {
        match frame {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert!(broken, "the client must see a broken stream, got {}", String::from_utf8_lossy(&received));
    let events = sse_events(&String::from_utf8_lossy(&received));
    assert_eq!(chat_deltas(&events), "w1 w2");
    assert!(!events.contains(&json!("[DONE]")));
    let stats = stats_until(&upstream, |s| s.streams_cut == 1).await;
    assert_eq!((stats.streams_completed, stats.streams_cancelled), (0, 0));
}

#[tokio::test]
async fn client_drop_counts_as_cancelled() {
    let upstream = start(Behavior { token_delay_ms: 50, reply_words: Some(100), ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("x", true)).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("readable");
    assert!(!first.is_empty());
    drop(body);
    let stats = stats_until(&upstream, |s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams_started, stats.streams_completed), (1, 0));
}

#[tokio::test]
async fn delays_pace_the_stream() {
    let upstream =
        start(Behavior { first_token_delay_ms: 100, token_delay_ms: 20, reply_words: Some(5), ..Behavior::default() })
            .await;
    let started = std::time::Instant::now();
    let response = post(&upstream, "/chat/completions", &chat_request("x", true)).await;
    let mut body = response.bytes_stream();
    body.next().await.expect("first chunk").expect("readable");
    assert!(started.elapsed() >= Duration::from_millis(100));
    while body.next().await.is_some() {}
    // 100 ms first, then 4 gaps of 20 ms between the 5 words.
    assert!(started.elapsed() >= Duration::from_millis(180));
}

/// Reads the body until the chat deltas read so far are `expected`; panics on an error, an end or a timeout.
async fn read_deltas_until(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    expected: &str,
) -> Vec<u8> {
    let mut received = Vec::new();
    while chat_deltas(&sse_events(&String::from_utf8_lossy(&received))) != expected {
        let frame = tokio::time::timeout(WAIT, body.next()).await.expect("a frame in time");
        received.extend_from_slice(&frame.expect("the stream goes on").expect("readable"));
    }
    received
}

#[tokio::test]
async fn retry_after_comes_with_fail_status() {
    let upstream = start(Behavior { fail_status: Some(429), retry_after_secs: Some(7), ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("hi", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"]["type"], "server_error");

    // No header without a failure, nor on a failure without the knob.
    upstream.set_behavior(Behavior { retry_after_secs: Some(7), ..Behavior::default() });
    let response = post(&upstream, "/chat/completions", &chat_request("hi", false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("retry-after").is_none());
    upstream.set_behavior(Behavior { fail_status: Some(429), ..Behavior::default() });
    let response = post(&upstream, "/chat/completions", &chat_request("hi", false)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(upstream.stats().requests_failed, 2);
}

#[tokio::test]
async fn fail_first_requests_fails_then_answers() {
    let upstream =
        start(Behavior { fail_status: Some(503), fail_first_requests: Some(2), ..Behavior::default() }).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post(&upstream, "/chat/completions", &chat_request("hi", false)).await.status().as_u16());
    }
    assert_eq!(statuses, vec![503, 503, 200]);
    let events =
        sse_events(&post(&upstream, "/chat/completions", &chat_request("hi", true)).await.text().await.expect("body"));
    assert_eq!(chat_deltas(&events), "echo: hi");
    let stats = upstream.stats();
    assert_eq!((stats.requests, stats.requests_failed), (4, 2));

    // The count restarts with the stats, and covers every endpoint the failure covers.
    upstream.reset_stats();
    let response = post(&upstream, "/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert_eq!(response.status(), 503);
    let response = post(&upstream, "/completions", &json!({"model": "m", "prompt": "x"})).await;
    assert_eq!(response.status(), 503);
    let response = post(&upstream, "/completions", &json!({"model": "m", "prompt": "x"})).await;
    assert_eq!(response.status(), 200);

    // Without fail_status the knob does nothing.
    upstream.set_behavior(Behavior { fail_first_requests: Some(5), ..Behavior::default() });
    upstream.reset_stats();
    assert_eq!(post(&upstream, "/chat/completions", &chat_request("hi", false)).await.status(), 200);
    assert_eq!(upstream.stats().requests_failed, 0);
}

#[tokio::test]
async fn stall_after_chunks_goes_silent_until_the_client_leaves() {
    let upstream = start(Behavior { stall_after_chunks: Some(2), reply_words: Some(6), ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("x", true)).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let received = read_deltas_until(&mut body, "w1 w2").await;
    let silent = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(silent.is_err(), "a stalled stream sends nothing more and stays open: {:?}", silent);
    assert!(!sse_events(&String::from_utf8_lossy(&received)).contains(&json!("[DONE]")));
    let stats = stats_until(&upstream, |s| s.streams_stalled == 1).await;
    assert_eq!(
        (stats.streams_started, stats.streams_completed, stats.streams_cancelled, stats.streams_cut),
        (1, 0, 0, 0)
    );

    drop(body);
    let stats = stats_until(&upstream, |s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams_stalled, stats.streams_completed), (1, 0));
}

#[tokio::test]
async fn stall_past_the_reply_and_cut_before_the_stall() {
    // A stall count past the reply stalls after the last word, before the finish chunk.
    let upstream = start(Behavior { stall_after_chunks: Some(9), reply_words: Some(2), ..Behavior::default() }).await;
    let mut body = post(&upstream, "/chat/completions", &chat_request("x", true)).await.bytes_stream();
    let received = read_deltas_until(&mut body, "w1 w2").await;
    assert!(tokio::time::timeout(Duration::from_millis(200), body.next()).await.is_err());
    let events = sse_events(&String::from_utf8_lossy(&received));
    assert!(events.iter().all(|e| e["choices"][0]["finish_reason"].is_null()));
    drop(body);

    // With both knobs the smaller count wins: here the cut.
    upstream.set_behavior(Behavior {
        cut_after_chunks: Some(1),
        stall_after_chunks: Some(3),
        reply_words: Some(6),
        ..Behavior::default()
    });
    let mut body = post(&upstream, "/chat/completions", &chat_request("x", true)).await.bytes_stream();
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, body.next()).await.expect("the cut comes in time") {
            Some(Ok(bytes)) => received.extend_from_slice(&bytes),
            Some(Err(_)) => break,
            None => panic!("the stream must break, not end"),
        }
    }
    assert_eq!(chat_deltas(&sse_events(&String::from_utf8_lossy(&received))), "w1");
    let stats = stats_until(&upstream, |s| s.streams_cut == 1 && s.streams_cancelled == 1).await;
    assert_eq!(stats.streams_stalled, 1);
}

#[tokio::test]
async fn garbage_stream_sends_non_json_events_then_done() {
    let upstream = start(Behavior { garbage_stream: true, ..Behavior::default() }).await;
    let response = post(&upstream, "/chat/completions", &chat_request("x", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.expect("whole stream");
    assert!(text.starts_with("data: this is not json\n\n"), "{text}");
    let data: Vec<&str> = text.split("\n\n").filter_map(|event| event.strip_prefix("data: ")).collect();
    assert!(data.len() >= 3, "{text}");
    assert_eq!(data.last(), Some(&"[DONE]"));
    for garbage in &data[..data.len() - 1] {
        assert!(serde_json::from_str::<Value>(garbage).is_err(), "{garbage:?} must not be JSON");
    }
    stats_until(&upstream, |s| s.streams_completed == 1).await;

    // Non-streaming answers stay as they are.
    let answer: Value =
        post(&upstream, "/chat/completions", &chat_request("hi", false)).await.json().await.expect("JSON answer");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hi");
}

#[tokio::test]
async fn invalid_json_answers_a_truncated_body() {
    let upstream = start(Behavior { invalid_json: true, ..Behavior::default() }).await;
    for (path, request) in [
        ("/chat/completions", chat_request("hi", false)),
        ("/completions", json!({"model": "m", "prompt": "hi"})),
        ("/embeddings", json!({"model": "e", "input": "hi"})),
    ] {
        let response = post(&upstream, path, &request).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        let text = response.text().await.expect("body");
        assert!(text.starts_with('{'), "{path}: {text}");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{path}: {text} must not be JSON");
    }

    // Streams stay as they are.
    let events =
        sse_events(&post(&upstream, "/chat/completions", &chat_request("hi", true)).await.text().await.expect("body"));
    assert_eq!(chat_deltas(&events), "echo: hi");
}

#[tokio::test]
async fn fault_knobs_over_control() {
    let upstream = start(Behavior::default()).await;
    let knobs = json!({
        "fail_status": 429,
        "retry_after_secs": 3,
        "fail_first_requests": 1,
        "stall_after_chunks": 2,
        "garbage_stream": true,
        "invalid_json": true,
    });
    let put = reqwest::Client::new()
        .put(format!("http://{}/control", upstream.addr))
        .json(&knobs)
        .send()
        .await
        .expect("control");
    assert!(put.status().is_success());
    let expected = Behavior {
        fail_status: Some(429),
        retry_after_secs: Some(3),
        fail_first_requests: Some(1),
        stall_after_chunks: Some(2),
        garbage_stream: true,
        invalid_json: true,
        ..Behavior::default()
    };
    assert_eq!(upstream.behavior(), expected);
    let response = post(&upstream, "/chat/completions", &chat_request("hi", false)).await;
    assert_eq!((response.status().as_u16(), response.headers()["retry-after"].to_str().ok()), (429, Some("3")));
    let response = post(&upstream, "/chat/completions", &chat_request("hi", false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err(), "invalid_json applies once the failures are over");
}
