//! Slow and stalling clients against the release binary: connections that send half a header, or a body that
//! never completes, are closed within the configured bounds, and the daemon keeps answering others.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the configured 300 ms bounds: only a daemon that never closes the connection misses it.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

async fn start() -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[server]\nheader_read_timeout_ms = 300\nbody_read_timeout_ms = 300\nmax_connections = 8\n\
         [engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

fn address(daemon: &Daemon) -> String {
    daemon.http_base.trim_start_matches("http://").to_string()
}

/// Reads until the daemon closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

async fn still_serves(daemon: &Daemon) {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await;
    assert_eq!(response.expect("POST").status(), 200, "{}", daemon.log_tail(20));
}

#[tokio::test]
async fn half_sent_headers_are_dropped_and_the_connection_cap_holds() {
    let (_dir, _upstream, daemon) = start().await;
    // More than max_connections (8): the rest wait in the accept queue and are served as the first close.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(address(&daemon)).await.expect("connect");
        stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-").await.expect("write");
        slow.push(stream);
    }
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(read_until_closed(stream).await.is_some(), "slow connection {i} still open after {CLOSED_WITHIN:?}");
    }
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(address(&daemon)).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let answered = read_until_closed(&mut idle).await.expect("idle connection closed");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    still_serves(&daemon).await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_a_408() {
    let (_dir, _upstream, daemon) = start().await;
    let mut stream = TcpStream::connect(address(&daemon)).await.expect("connect");
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"model\":";
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout_ms"), "{answer}");
    still_serves(&daemon).await;
}
