//! Runs the real `llmopsctl` binary against a fake llmopsd on a Unix socket: JSON shapes, paging,
//! the token header, exit statuses and the watch stream's error ending.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llmops_proto::v1::status_service_server::{StatusService, StatusServiceServer};
use llmops_proto::v1::trace_event::Kind;
use llmops_proto::v1::trace_service_server::{TraceService, TraceServiceServer};
use llmops_proto::v1::{
    EngineHealth, EngineLogs, EngineStatus, GetEngineLogsRequest, GetStatusRequest, GetTraceRequest, ListTracesRequest,
    ListTracesResponse, RouteStatus, Status, StoreStatus, Trace, TraceEvent, TraceStatus, WatchTracesRequest,
};
use serde_json::Value;
use support::{llmopsctl, stdout_json};
use tonic::{Request, Response};

mod support;

const TOKEN: &str = "t0ken";
/// The fake answers at most this many traces per page, so `--limit 3` needs two pages.
const FAKE_PAGE_MAX: usize = 2;

fn sample_trace(index: usize) -> Trace {
    Trace {
        id: format!("trace-{index}"),
        started_at_unix_ms: 1_717_000_000_000 - index as i64 * 1000,
        route: "small".into(),
        model_requested: "small".into(),
        model_served: "tiny-1b".into(),
        status: TraceStatus::Ok as i32,
        http_status: 200,
        input_tokens: 10,
        output_tokens: 20,
        tokens_estimated: true,
        latency_ms: 123.0,
        prompt_text: format!("user: question {index}"),
        response_text: "answer".into(),
        ..Trace::default()
    }
}

#[derive(Clone, Default)]
struct FakeDaemon {
    list_requests: Arc<Mutex<Vec<ListTracesRequest>>>,
}

/// The fake's answer to a call without the right `authorization` header.
fn token_error<T>(request: &Request<T>) -> Option<tonic::Status> {
    let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
    let expected = format!("Bearer {TOKEN}");
    (header != Some(expected.as_str())).then(|| tonic::Status::unauthenticated("missing or wrong token"))
}

#[tonic::async_trait]
impl TraceService for FakeDaemon {
    async fn list_traces(
        &self,
        request: Request<ListTracesRequest>,
    ) -> Result<Response<ListTracesResponse>, tonic::Status> {
        if let Some(err) = token_error(&request) {
            return Err(err);
        }
        let request = request.into_inner();
        let start: usize = request.page_token.parse().unwrap_or(0);
        let end = (start + (request.limit as usize).min(FAKE_PAGE_MAX)).min(5);
        self.list_requests.lock().expect("lock").push(request);
        let next_page_token = if end < 5 { end.to_string() } else { String::new() };
        let traces = (start..end).map(sample_trace).collect();
        Ok(Response::new(ListTracesResponse { traces, next_page_token }))
    }

    async fn get_trace(&self, request: Request<GetTraceRequest>) -> Result<Response<Trace>, tonic::Status> {
        if let Some(err) = token_error(&request) {
            return Err(err);
        }
        match request.into_inner().id.as_str() {
            "trace-1" => Ok(Response::new(sample_trace(1))),
            _ => Err(tonic::Status::not_found("no such trace")),
        }
    }

    type WatchTracesStream = tokio_stream::Iter<std::vec::IntoIter<Result<TraceEvent, tonic::Status>>>;

    async fn watch_traces(
        &self,
        request: Request<WatchTracesRequest>,
    ) -> Result<Response<Self::WatchTracesStream>, tonic::Status> {
        if let Some(err) = token_error(&request) {
            return Err(err);
        }
        let started = Trace { status: TraceStatus::InFlight as i32, ..sample_trace(0) };
        let mut events = vec![
            Ok(TraceEvent { kind: Kind::Started as i32, trace: Some(started), missed: 0 }),
            Ok(TraceEvent { kind: Kind::Finished as i32, trace: Some(sample_trace(0)), missed: 0 }),
        ];
        // `watch --json` (bodies) meets an llmopsd from before `TraceEvent.missed`, which only ends the stream;
        // `watch` a current one, which says so in an event first.
        if !request.into_inner().include_bodies {
            events.push(Ok(TraceEvent { missed: 7, ..TraceEvent::default() }));
        }
        events.push(Err(tonic::Status::resource_exhausted("viewer too slow: missed 7 events")));
        Ok(Response::new(tokio_stream::iter(events)))
    }

    type ReplayStream = tokio_stream::Iter<std::vec::IntoIter<Result<llmops_proto::v1::ReplayEvent, tonic::Status>>>;

    async fn replay(
        &self,
        _request: Request<llmops_proto::v1::ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("replay is tested against the real daemon (tests/tests/replay.rs)"))
    }
}

#[tonic::async_trait]
impl StatusService for FakeDaemon {
    async fn get_status(&self, request: Request<GetStatusRequest>) -> Result<Response<Status>, tonic::Status> {
        if let Some(err) = token_error(&request) {
            return Err(err);
        }
        Ok(Response::new(Status {
            version: "9.9.9".into(),
            uptime_seconds: 61.0,
            engines: vec![EngineStatus {
                name: "local".into(),
                health: EngineHealth::Healthy as i32,
                ..EngineStatus::default()
            }],
            routes: vec![RouteStatus { name: "small".into(), targets: vec!["local/tiny-1b".into()] }],
            store: Some(StoreStatus { trace_count: 5, ..StoreStatus::default() }),
            ..Status::default()
        }))
    }

    // The fake launches nothing, like a daemon without `launch = [...]` engines.
    async fn get_engine_logs(
        &self,
        request: Request<GetEngineLogsRequest>,
    ) -> Result<Response<EngineLogs>, tonic::Status> {
        Err(tonic::Status::failed_precondition(format!("engine {:?} has no logs", request.get_ref().engine)))
    }
}

/// Serves the fake on a fresh socket for the rest of the test.
async fn start_fake(name: &str) -> (PathBuf, FakeDaemon) {
    let fake = FakeDaemon::default();
    let socket = support::serve(name, |server| {
        server.add_service(TraceServiceServer::new(fake.clone())).add_service(StatusServiceServer::new(fake.clone()))
    })
    .await;
    (socket, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_traces_as_json() {
    let (socket, fake) = start_fake("json").await;

    let status = stdout_json(&llmopsctl(&socket, &["status", "--json", "--token", TOKEN]).await);
    assert_eq!(status["version"], "9.9.9");
    assert_eq!(status["engines"][0]["health"], "healthy");
    assert_eq!(status["store"]["trace_count"], 5);

    let traces = stdout_json(&llmopsctl(&socket, &["traces", "--json", "--limit", "3", "--token", TOKEN]).await);
    let ids: Vec<&str> = traces.as_array().expect("array").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, ["trace-0", "trace-1", "trace-2"]);
    assert_eq!(traces[1]["status"], "ok");
    assert_eq!(traces[1]["prompt_text"], "user: question 1");
    assert_eq!(traces[1]["ttft_ms"], Value::Null);
    let requests = fake.list_requests.lock().expect("lock").clone();
    assert_eq!(requests.iter().map(|r| r.limit).collect::<Vec<_>>(), [3, 1], "second page asks for the rest");
    assert_eq!(requests[1].page_token, "2");
    assert!(requests.iter().all(|r| r.include_bodies), "JSON output includes bodies");

    let trace = stdout_json(&llmopsctl(&socket, &["trace", "trace-1", "--json", "--token", TOKEN]).await);
    assert_eq!(trace["id"], "trace-1");
    assert_eq!(trace["tokens_estimated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_error_exits() {
    let (socket, _fake) = start_fake("text").await;

    let table = llmopsctl(&socket, &["traces", "--token", TOKEN]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("TIME"), "{text}");
    assert!(text.contains("trace-4  small  tiny-1b  ok"), "{text}");
    assert!(text.contains("10~"), "{text}");
    assert_eq!(text.lines().count(), 6, "header and all five traces: {text}");

    let missing = llmopsctl(&socket, &["trace", "nope", "--token", TOKEN]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&missing.stderr), "llmopsctl: no trace with id nope\n");

    let no_token = llmopsctl(&socket, &["status"]).await;
    assert_eq!(no_token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("Unauthenticated"));

    let watch = llmopsctl(&socket, &["watch", "--json", "--token", TOKEN]).await;
    assert_eq!(watch.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((&lines[0]["kind"], &lines[0]["trace"]["status"]), (&"started".into(), &"in_flight".into()));
    assert_eq!(lines[1]["kind"], "finished");
    assert!(String::from_utf8_lossy(&watch.stderr).contains("viewer too slow: missed 7 events"));

    let text_watch = llmopsctl(&socket, &["watch", "--token", TOKEN]).await;
    assert_eq!(text_watch.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&text_watch.stdout).lines().count(), 3, "header and two events");
    assert_eq!(
        String::from_utf8_lossy(&text_watch.stderr),
        "llmopsctl: watch stream ended by llmopsd: this viewer read too slowly and missed 7 updates\n"
    );
}

#[tokio::test]
async fn unreachable_daemon_exits_2_with_one_line() {
    let socket = PathBuf::from("/nonexistent/llmopsd.sock");
    let output = llmopsctl(&socket, &["status"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("llmopsctl: cannot reach llmopsd at unix:/nonexistent/llmopsd.sock: "), "{stderr}");
    assert!(stderr.ends_with("(is llmopsd running? use --connect)\n"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
}
