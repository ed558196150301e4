//! End to end: the real llmopsd binary in front of the fake upstream. Bad input, upstream failures, client
//! disconnects and cut streams each get their documented answer, the daemon keeps serving, and a trace says
//! what happened.
use futures::StreamExt;
use llmops_e2e::daemon::{wait_until, Daemon, StartOptions};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn engine_config(base_url: &str, extra: &str) -> String {
    format!(
        "[server]\nmax_body_bytes = 2048\n\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodels = [\"fake-model\"]\n{extra}"
    )
}

async fn start(upstream_url: &str, extra: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&engine_config(upstream_url, extra), dir.path()).await.expect("llmopsd starts");
    (dir, daemon)
}

fn chat(content: &str) -> Value {
    json!({"model": "fake-model", "messages": [{"role": "user", "content": content}]})
}

/// Waits for the trace to be written, then returns it.
async fn fetch_trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

/// POSTs a chat request body to the daemon.
async fn post_chat(http: &reqwest::Client, daemon: &Daemon, body: &Value) -> reqwest::Response {
    http.post(daemon.url("/v1/chat/completions")).json(body).send().await.expect("request")
}

/// A paced fake upstream (`token_delay_ms` per word, `words` words) with a daemon in front.
async fn paced(token_delay_ms: u64, words: usize) -> (FakeUpstream, tempfile::TempDir, Daemon) {
    let behavior = Behavior { token_delay_ms, reply_words: Some(words), ..Behavior::default() };
    let upstream = FakeUpstream::start(behavior).await.expect("fake");
    let (dir, daemon) = start(&upstream.base_url(), "").await;
    (upstream, dir, daemon)
}

/// A streaming chat request, answered (headers received).
async fn stream_chat(daemon: &Daemon, content: &str) -> reqwest::Response {
    let mut body = chat(content);
    body["stream"] = json!(true);
    post_chat(&reqwest::Client::new(), daemon, &body).await
}

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every response carries x-request-id")
        .to_string()
}

#[tokio::test]
async fn bad_input_gets_its_status_an_openai_error_and_a_trace() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let (_dir, daemon) = start(&upstream.base_url(), "").await;
    let http = reqwest::Client::new();
    let chat_url = daemon.url("/v1/chat/completions");
    let oversize = serde_json::to_vec(&chat(&"x".repeat(4096))).expect("json");
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", "/v1/chat/completions", b"{\"model\": ".to_vec(), 400, "invalid JSON body"),
        (
            "wrong type",
            "/v1/chat/completions",
            br#"{"model":"fake-model","temperature":"hot","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "`temperature`",
        ),
        ("missing messages", "/v1/chat/completions", br#"{"model":"fake-model"}"#.to_vec(), 400, "messages"),
        (
            "unknown model",
            "/v1/chat/completions",
            serde_json::to_vec(&json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}))
                .expect("json"),
            404,
            "fake-model",
        ),
        ("over-size body", "/v1/chat/completions", oversize, 413, "2048 bytes"),
        (
            "invalid UTF-8",
            "/v1/completions",
            b"{\"model\":\"fake-model\",\"prompt\":\"\xff\xfe\"}".to_vec(),
            400,
            "invalid JSON body",
        ),
        ("embeddings without input", "/v1/embeddings", br#"{"model":"fake-model"}"#.to_vec(), 400, "input"),
    ];
    let mut traced = Vec::new();
    for (name, path, body, status, message) in cases {
        let response = http
            .post(daemon.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: request failed: {e}"));
        assert_eq!(response.status().as_u16(), status, "{name}");
        let id = request_id(&response);
        let error: Value = response.json().await.unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        let text = error["error"]["message"].as_str().unwrap_or_else(|| panic!("{name}: no error.message in {error}"));
        assert!(text.contains(message), "{name}: {text:?} should mention {message:?}");
        assert!(error["error"]["type"].is_string(), "{name}: {error}");
        assert!(error["error"].get("code").is_some(), "{name}: {error}");
        traced.push((name, id, status));
    }
    let unknown_path = http.get(daemon.url("/v1/nope")).send().await.expect("request");
    assert_eq!(unknown_path.status().as_u16(), 404);
    request_id(&unknown_path);
    let models = http.get(daemon.url("/v1/models")).send().await.expect("request");
    request_id(&models);
    let models: Value = models.json().await.expect("json");
    assert_eq!(models["data"][0]["id"], "fake-model");
    // Still serving after all of that.
    let ok = http.post(&chat_url).json(&chat("still here")).send().await.expect("request");
    assert_eq!(ok.status().as_u16(), 200);
    let ok_body: Value = ok.json().await.expect("json");
    assert_eq!(ok_body["choices"][0]["message"]["content"], "echo: still here");
    for (name, id, status) in traced {
        let trace = fetch_trace(&daemon, &id).await;
        assert_eq!(trace.status(), pb::TraceStatus::Rejected, "{name}");
        assert_eq!(trace.http_status, u32::from(status), "{name}");
        assert!(!trace.error_message.is_empty(), "{name}");
        if name == "wrong type" || name == "missing messages" {
            assert_eq!(trace.model_requested, "fake-model", "{name}: a refused body still names its model");
        }
    }
    assert_eq!(upstream.stats().requests, 1, "rejected requests never reach the engine");
}

#[tokio::test]
async fn upstream_down_is_502_and_timeout_is_504() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (_dir, daemon) = start(&format!("http://127.0.0.1:{port}/v1"), "").await;
    let http = reqwest::Client::new();
    let response = post_chat(&http, &daemon, &chat("hi")).await;
    assert_eq!(response.status().as_u16(), 502);
    let id = request_id(&response);
    let body: Value = response.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("cannot reach engine fake")), "{body}");
    let trace = fetch_trace(&daemon, &id).await;
    assert_eq!(trace.status(), pb::TraceStatus::Error);
    assert_eq!(trace.attempts.len(), 1);
    assert!(trace.attempts[0].error.contains("cannot reach"), "{:?}", trace.attempts[0]);

    let slow =
        FakeUpstream::start(Behavior { first_token_delay_ms: 3_000, ..Behavior::default() }).await.expect("fake");
    let (_dir2, daemon) = start(&slow.base_url(), "first_token_timeout_ms = 300\n").await;
    let response = post_chat(&http, &daemon, &chat("hi")).await;
    assert_eq!(response.status().as_u16(), 504);
    let trace = fetch_trace(&daemon, &request_id(&response)).await;
    assert_eq!(trace.status(), pb::TraceStatus::Error);
    assert_eq!(trace.http_status, 504);
}

#[tokio::test]
async fn upstream_errors_map_to_502_or_pass_through() {
    let upstream = FakeUpstream::start(Behavior { fail_status: Some(503), ..Behavior::default() }).await.expect("fake");
    let (_dir, daemon) = start(&upstream.base_url(), "").await;
    let http = reqwest::Client::new();
    let response = post_chat(&http, &daemon, &chat("hi")).await;
    assert_eq!(response.status().as_u16(), 502);
    let trace = fetch_trace(&daemon, &request_id(&response)).await;
    assert_eq!(trace.attempts[0].upstream_status, 503);

    upstream.set_behavior(Behavior { fail_status: Some(400), ..Behavior::default() });
    let response = post_chat(&http, &daemon, &chat("hi")).await;
    assert_eq!(response.status().as_u16(), 400, "an engine's own refusal keeps its status");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["message"], "fake failure");
}

#[tokio::test]
async fn chunks_are_forwarded_as_they_arrive() {
    let (upstream, _dir, daemon) = paced(100, 20).await;
    let response = stream_chat(&daemon, "hi").await;
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    while !received.contains("\"w1\"") {
        let chunk = stream.next().await.expect("stream open").expect("chunk");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The first word reached the client while the engine still had ~19 words (~1.9 s) to send.
    assert_eq!(upstream.stats().streams_completed, 0, "the answer was not buffered until the end");
    while stream.next().await.is_some() {}
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_and_the_trace_says_cancelled() {
    let (upstream, _dir, daemon) = paced(50, 400).await;
    let response = stream_chat(&daemon, "hi").await;
    let id = request_id(&response);
    let mut stream = response.bytes_stream();
    for _ in 0..3 {
        stream.next().await.expect("stream open").expect("chunk");
    }
    drop(stream);
    let cancelled = wait_until(WAIT, || async { upstream.stats().streams_cancelled == 1 }).await;
    assert!(cancelled, "the upstream stream was not cancelled: {:?}", upstream.stats());
    let trace = fetch_trace(&daemon, &id).await;
    assert_eq!(trace.status(), pb::TraceStatus::Cancelled);
    assert_eq!(trace.http_status, 499);
    assert!(trace.output_tokens < 400);
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    let upstream =
        FakeUpstream::start(Behavior { cut_after_chunks: Some(3), reply_words: Some(10), ..Behavior::default() })
            .await
            .expect("fake");
    let (_dir, daemon) = start(&upstream.base_url(), "").await;
    let response = stream_chat(&daemon, "hi").await;
    let id = request_id(&response);
    let text = response.text().await.expect("the daemon ends its stream cleanly");
    let last_event = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(last_event.starts_with("data: {\"error\""), "last event: {last_event:?}");
    assert!(!text.contains("[DONE]"));
    let trace = fetch_trace(&daemon, &id).await;
    assert_eq!(trace.status(), pb::TraceStatus::Error);
    assert_eq!(trace.finish_reason, "error");
    assert_eq!(trace.output_tokens, 3, "{trace:?}");
}

#[tokio::test]
async fn watch_sends_started_and_finished_events() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let (_dir, daemon) = start(&upstream.base_url(), "").await;
    let mut client = TraceServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    let mut events = client
        .watch_traces(pb::WatchTracesRequest { include_bodies: true, ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&chat("live"))
        .send()
        .await
        .expect("request");
    let id = request_id(&response);
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = tokio::time::timeout(WAIT, events.message())
            .await
            .expect("event in time")
            .expect("stream ok")
            .expect("stream open");
        let trace = event.trace.clone().expect("event has a trace");
        if trace.id == id {
            kinds.push(event.kind());
            if event.kind() == pb::trace_event::Kind::Finished {
                assert_eq!(trace.response_text, "echo: live");
            }
        }
    }
    assert_eq!(kinds, [pb::trace_event::Kind::Started, pb::trace_event::Kind::Finished]);
}

#[tokio::test]
async fn traces_survive_a_restart() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(&upstream.base_url(), "");
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("start");
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..50 {
        let response = post_chat(&http, &daemon, &chat(&format!("n{i}"))).await;
        assert_eq!(response.status().as_u16(), 200);
        ids.push(request_id(&response));
    }
    // SIGTERM right away: whatever is still queued must be flushed on the way out.
    daemon.terminate();
    let status = daemon.wait_exit(WAIT).await.expect("exits");
    assert!(status.success(), "llmopsd exit: {status}\n{}", daemon.log_tail(30));
    let daemon = Daemon::start(&config, dir.path()).await.expect("restart");
    let mut client = TraceServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    let listed = client
        .list_traces(pb::ListTracesRequest { limit: 1000, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    let mut found: Vec<String> = listed.traces.into_iter().map(|t| t.id).collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
}

#[tokio::test]
async fn grpc_over_tcp_requires_the_bearer_token() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StartOptions {
        grpc_listen: Some("127.0.0.1:0".into()),
        env: vec![("LLMOPS_TOKEN".into(), "s3cret-token".into())],
        ..StartOptions::default()
    };
    // Plain TCP, asked for by name (TLS is in grpc_tls.rs).
    let config = engine_config(&upstream.base_url(), "").replace("[server]\n", "[server]\ngrpc_insecure = true\n");
    let daemon = Daemon::start_with(&config, dir.path(), &options).await.expect("start");
    assert!(!daemon.grpc_listen.starts_with("unix:"), "{}", daemon.grpc_listen);
    let ctl = |args: &[&str]| {
        let mut command = std::process::Command::new(llmops_e2e::daemon::binary("llmopsctl").expect("llmopsctl"));
        command.env_remove("LLMOPS_TOKEN").args(["--connect", &daemon.grpc_listen]).args(args);
        command.output().expect("llmopsctl runs")
    };
    let refused = ctl(&["status"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    let wrong = ctl(&["--token", "guess", "status"]);
    assert!(!wrong.status.success());
    let allowed = ctl(&["--token", "s3cret-token", "--json", "status"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    let status: Value = serde_json::from_slice(&allowed.stdout).expect("status JSON");
    assert_eq!(status["engines"][0]["name"], "fake");
}

#[tokio::test]
async fn grpc_over_tcp_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StartOptions { grpc_listen: Some("127.0.0.1:0".into()), ..StartOptions::default() };
    let error = match Daemon::start_with("[server]\ngrpc_insecure = true\n", dir.path(), &options).await {
        Ok(_) => panic!("llmopsd started on TCP without a token"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("LLMOPS_TOKEN"), "{error}");
}

#[tokio::test]
async fn a_bad_config_stops_startup_naming_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = match Daemon::start("[server]\nhttp_listen = \"127.0.0.1:0\"\nmax_body = 5\n", dir.path()).await {
        Ok(_) => panic!("llmopsd started with an unknown key"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("max_body") && error.contains("line 3"), "{error}");
    assert!(!error.contains("panicked"), "{error}");
}

#[tokio::test]
async fn a_client_gone_before_a_non_streamed_answer_is_recorded_as_cancelled() {
    // 400 words at 50 ms: a 20 s answer the client will not wait for.
    let (_upstream, _dir, daemon) = paced(50, 400).await;
    let gave_up = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .timeout(Duration::from_millis(300))
        .json(&chat("hi"))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    let mut client = TraceServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    let request = || pb::ListTracesRequest { status: pb::TraceStatus::Cancelled as i32, ..Default::default() };
    let recorded = wait_until(WAIT, || {
        let mut client = client.clone();
        async move { client.list_traces(request()).await.is_ok_and(|r| r.into_inner().traces.len() == 1) }
    })
    .await;
    assert!(recorded, "no cancelled trace within {WAIT:?}\n{}", daemon.log_tail(20));
    let listed = client.list_traces(request()).await.expect("list").into_inner();
    assert_eq!(listed.traces[0].http_status, 499);
}

#[tokio::test]
async fn privacy_mode_keeps_hashes_and_lengths_only() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let (_dir, daemon) = start(&upstream.base_url(), "\n[privacy]\nhash_content = true\n").await;
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&chat("my secret"))
        .send()
        .await
        .expect("request");
    let request_id = request_id(&response);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: my secret", "the client still gets its answer");
    let trace = fetch_trace(&daemon, &request_id).await;
    assert!(trace.prompt_text.is_empty() && trace.response_text.is_empty() && trace.request_json.is_empty());
    assert_eq!(trace.prompt_chars, "user: my secret".len() as u64);
    assert_eq!(trace.response_chars, "echo: my secret".len() as u64);
    assert_eq!(trace.prompt_sha256.len(), 64);
    let stored = std::fs::read(daemon.data_dir.join("traces.db")).expect("db");
    let wal = std::fs::read(daemon.data_dir.join("traces.db-wal")).unwrap_or_default();
    let needle = b"my secret";
    let leaked = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!leaked(&stored) && !leaked(&wal), "the prompt text reached the database file");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_and_keeps_its_trace() {
    // 20 words at 50 ms: the stream is still running when SIGTERM arrives.
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 50, reply_words: Some(20), ..Behavior::default() })
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(&upstream.base_url(), "");
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("start");
    let response = stream_chat(&daemon, "hi").await;
    let id = request_id(&response);
    let mut stream = response.bytes_stream();
    stream.next().await.expect("stream open").expect("first chunk");
    daemon.terminate();
    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.expect("the stream is not cut by shutdown")));
    }
    assert!(rest.contains("[DONE]"), "the in-flight answer completed: {rest}");
    let status = daemon.wait_exit(WAIT).await.expect("exits");
    assert!(status.success(), "{status}");
    let daemon = Daemon::start(&config, dir.path()).await.expect("restart");
    let trace = fetch_trace(&daemon, &id).await;
    assert_eq!(trace.status(), pb::TraceStatus::Ok);
    assert_eq!(trace.output_tokens, 20);
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_dropped_and_told_what_it_missed() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let (_dir, daemon) = start(&upstream.base_url(), "").await;
    // A small HTTP/2 window, so the transport cannot soak up the backlog the daemon must refuse to keep.
    let small_window = |endpoint: tonic::transport::Endpoint| {
        endpoint.initial_stream_window_size(16 * 1024).initial_connection_window_size(16 * 1024)
    };
    let mut client = TraceServiceClient::new(daemon.grpc_channel_with(small_window).await.expect("grpc"));
    let mut stalled = client
        .watch_traces(pb::WatchTracesRequest { include_bodies: true, ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    // Far more events (two per request) than the viewer buffer and the HTTP/2 window hold, while it reads nothing.
    let http = reqwest::Client::new();
    for _ in 0..1500 {
        let response = post_chat(&http, &daemon, &chat("x")).await;
        assert_eq!(response.status().as_u16(), 200, "the daemon never waits for a slow viewer");
    }
    let mut received = 0;
    let mut last_missed = 0;
    let status = loop {
        match tokio::time::timeout(WAIT, stalled.message()).await.expect("the stream ends in time") {
            Ok(Some(event)) => {
                received += 1;
                last_missed = event.missed;
            }
            Ok(None) => panic!("the stream ended without saying why after {received} events"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("missing"), "{}", status.message());
    assert!(received < 3000, "the viewer was dropped before getting everything ({received} events)");
    // The last event says how many it missed, as on every watch stream; the status is for older clients.
    assert!(last_missed > 0, "the last event before the end says how many were missed");
    assert!(status.message().contains(&format!("missing {last_missed} ")), "{}", status.message());
}

/// A route over two engines: `first`, then `second`.
fn two_engine_route(first_url: &str, second_url: &str) -> String {
    format!(
        "[engines.first]\nkind = \"openai\"\nbase_url = \"{first_url}\"\nmodels = [\"fake-model\"]\n\
         [engines.second]\nkind = \"openai\"\nbase_url = \"{second_url}\"\nmodels = [\"fake-model\"]\n\
         [routes.chat]\ntargets = [{{ engine = \"first\", model = \"fake-model\" }}, {{ engine = \"second\", model = \"fake-model\" }}]\n"
    )
}

#[tokio::test]
async fn a_route_falls_back_to_its_next_target_on_failure_but_not_on_refusal() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let second = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = two_engine_route(&format!("http://127.0.0.1:{closed_port}/v1"), &second.base_url());
    let daemon = Daemon::start(&config, dir.path()).await.expect("start");
    let http = reqwest::Client::new();
    let mut request = chat("hi");
    request["model"] = json!("chat");

    // First engine unreachable: the second answers, and both attempts are on the trace.
    let response = post_chat(&http, &daemon, &request).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("x-llmops-served-by").and_then(|v| v.to_str().ok()), Some("second/fake-model"));
    let trace = fetch_trace(&daemon, &request_id(&response)).await;
    assert_eq!(trace.status(), pb::TraceStatus::Ok);
    assert_eq!(trace.engine, "second");
    let chain: Vec<(&str, u32, bool)> =
        trace.attempts.iter().map(|a| (a.engine.as_str(), a.upstream_status, a.error.is_empty())).collect();
    assert_eq!(chain, [("first", 0, false), ("second", 200, true)]);

    // A stream falls back the same way (nothing reached the client before the second engine answered).
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let response = post_chat(&http, &daemon, &streamed).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().await.expect("body").contains("[DONE]"));

    // The second engine refuses the request itself: that refusal is the answer, with nothing left to try.
    second.set_behavior(Behavior { fail_status: Some(400), ..Behavior::default() });
    let response = post_chat(&http, &daemon, &request).await;
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn a_failing_first_target_is_skipped_and_all_failing_is_502() {
    let first = FakeUpstream::start(Behavior { fail_status: Some(503), ..Behavior::default() }).await.expect("fake");
    let second = FakeUpstream::start(Behavior::default()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon =
        Daemon::start(&two_engine_route(&first.base_url(), &second.base_url()), dir.path()).await.expect("start");
    let http = reqwest::Client::new();
    let mut request = chat("hi");
    request["model"] = json!("chat");
    let response = post_chat(&http, &daemon, &request).await;
    assert_eq!(response.status().as_u16(), 200, "503 from the first engine falls back");
    assert_eq!(first.stats().requests, 1);

    // A 400 from the first engine is not retried elsewhere.
    first.set_behavior(Behavior { fail_status: Some(400), ..Behavior::default() });
    let response = post_chat(&http, &daemon, &request).await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(second.stats().requests, 1, "the second engine was not asked after a refusal");

    first.set_behavior(Behavior { fail_status: Some(429), ..Behavior::default() });
    second.set_behavior(Behavior { fail_status: Some(500), ..Behavior::default() });
    let response = post_chat(&http, &daemon, &request).await;
    assert_eq!(response.status().as_u16(), 502);
    let trace = fetch_trace(&daemon, &request_id(&response)).await;
    let statuses: Vec<u32> = trace.attempts.iter().map(|a| a.upstream_status).collect();
    assert_eq!(statuses, [429, 500]);
    assert_eq!(trace.status(), pb::TraceStatus::Error);
}

#[tokio::test]
async fn a_stream_outliving_the_shutdown_grace_is_ended_and_still_traced() {
    // 400 words at 50 ms (20 s) against a 1 s grace.
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 50, reply_words: Some(400), ..Behavior::default() })
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(&upstream.base_url(), "").replace("[server]\n", "[server]\nshutdown_grace_secs = 1\n");
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("start");
    let response = stream_chat(&daemon, "hi").await;
    let id = request_id(&response);
    let mut stream = response.bytes_stream();
    stream.next().await.expect("stream open").expect("first chunk");
    daemon.terminate();
    let mut rest = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("shutting down"), "the stream ended with an error event: {rest:?}");
    let status = daemon.wait_exit(WAIT).await.expect("exits");
    assert!(status.success(), "{status}");
    let daemon = Daemon::start(&config, dir.path()).await.expect("restart");
    let trace = fetch_trace(&daemon, &id).await;
    assert_eq!(trace.status(), pb::TraceStatus::Error);
    assert!(trace.error_message.contains("shutting down"), "{}", trace.error_message);
}
