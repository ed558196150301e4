//! Fault matrix, end to end: a route of two engines, `a` (faulty, one fault per row) then `b` (healthy), and
//! for each fault what the client saw, which target served and what the trace says. Then the circuit breaker's
//! lifecycle, retries of one target, and a 429's `Retry-After`, each checked against the fake's request counts.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use pb::TraceStatus::{Error as TraceError, Ok as TraceOk};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A closed port: bound, noted, released.
    Refused,
    Http500,
    /// 429 with `Retry-After: 1`.
    Http429,
    /// Answer (headers for a plain request, first chunk for a stream) after 4 s; `a` waits 400 ms.
    SlowFirstToken,
    /// Two words, then silence; `a`'s request timeout is 800 ms.
    StallMidStream,
    /// Two words, then the connection breaks.
    CutMidStream,
    /// `data:` events that are not JSON, then `[DONE]`.
    GarbageSse,
    /// A 200 whose JSON body stops half-way.
    InvalidJson,
}

/// The fake behind `a` (none: a closed port) and the extra keys of `[engines.a]`.
fn fault_setup(fault: Fault) -> (Option<Behavior>, &'static str) {
    let fail =
        |status, retry_after_secs| Behavior { fail_status: Some(status), retry_after_secs, ..Behavior::default() };
    let broken = |b: Behavior| Behavior { reply_words: Some(6), ..b };
    match fault {
        Fault::Refused => (None, ""),
        Fault::Http500 => (Some(fail(500, None)), ""),
        Fault::Http429 => (Some(fail(429, Some(1))), ""),
        Fault::SlowFirstToken => {
            (Some(Behavior { first_token_delay_ms: 4_000, ..Behavior::default() }), "first_token_timeout_ms = 400\n")
        }
        Fault::StallMidStream => (
            Some(broken(Behavior { stall_after_chunks: Some(2), ..Behavior::default() })),
            "request_timeout_ms = 800\n",
        ),
        Fault::CutMidStream => (Some(broken(Behavior { cut_after_chunks: Some(2), ..Behavior::default() })), ""),
        Fault::GarbageSse => (Some(Behavior { garbage_stream: true, ..Behavior::default() }), ""),
        Fault::InvalidJson => (Some(Behavior { invalid_json: true, ..Behavior::default() }), ""),
    }
}

/// What the client got besides the status.
#[derive(Debug, Clone, Copy)]
enum Saw {
    /// The whole answer with this text (a stream ends with `[DONE]`).
    Answer(&'static str),
    /// A stream with this text, then an error event with this `code` (any code: None), and no `[DONE]`.
    ErrorEvent(Option<&'static str>, &'static str),
    /// An OpenAI error body whose message contains this.
    ErrorBody(&'static str),
}

/// One attempt on the trace: engine, upstream status, and its error (None: empty; Some: non-empty, containing it).
type Attempt = (&'static str, u32, Option<&'static str>);

struct Row {
    fault: Fault,
    stream: bool,
    served_by: &'static str,
    status: u16,
    saw: Saw,
    trace: pb::TraceStatus,
    attempts: &'static [Attempt],
}

#[allow(clippy::too_many_arguments)]
const fn row(
    fault: Fault,
    stream: bool,
    served_by: &'static str,
    status: u16,
    saw: Saw,
    trace: pb::TraceStatus,
    attempts: &'static [Attempt],
) -> Row {
    Row { fault, stream, served_by, status, saw, trace, attempts }
}

const ECHO: Saw = Saw::Answer("echo: ping");
const TIMEOUT_EVENT: Saw = Saw::ErrorEvent(Some("upstream_timeout"), "w1 w2");
const CUT_EVENT: Saw = Saw::ErrorEvent(Some("stream_interrupted"), "w1 w2");
const ANY_ERROR_EVENT: Saw = Saw::ErrorEvent(None, "");
const BAD_JSON_BODY: Saw = Saw::ErrorBody("engine a sent invalid JSON");

const REFUSED: &[Attempt] = &[("a", 0, Some("cannot reach engine a")), ("b", 200, None)];
const HTTP_500: &[Attempt] = &[("a", 500, Some("engine a answered HTTP 500: fake failure")), ("b", 200, None)];
const HTTP_429: &[Attempt] = &[("a", 429, Some("engine a answered HTTP 429")), ("b", 200, None)];
const SLOW: &[Attempt] = &[("a", 0, Some("engine a sent no answer within 400 ms")), ("b", 200, None)];
const STALL: &[Attempt] = &[("a", 200, Some("engine a did not finish within the request timeout"))];
const CUT: &[Attempt] = &[("a", 200, Some("engine a: the engine's stream broke off"))];
const GARBAGE: &[Attempt] = &[("a", 200, Some("the engine sent an event that is not JSON"))];
const INVALID_JSON: &[Attempt] = &[("a", 200, Some("engine a sent invalid JSON"))];

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //  fault                  stream  served status client saw        trace       attempts on the trace
    row(Fault::Refused,        false,  "b",   200,   ECHO,             TraceOk,    REFUSED),
    row(Fault::Refused,        true,   "b",   200,   ECHO,             TraceOk,    REFUSED),
    row(Fault::Http500,        false,  "b",   200,   ECHO,             TraceOk,    HTTP_500),
    row(Fault::Http500,        true,   "b",   200,   ECHO,             TraceOk,    HTTP_500),
    row(Fault::Http429,        false,  "b",   200,   ECHO,             TraceOk,    HTTP_429),
    row(Fault::Http429,        true,   "b",   200,   ECHO,             TraceOk,    HTTP_429),
    row(Fault::SlowFirstToken, false,  "b",   200,   ECHO,             TraceOk,    SLOW),
    // Headers at once, first token after 4 s: nothing reached the client before the timeout, so `b` should serve.
    row(Fault::SlowFirstToken, true,   "b",   200,   ECHO,             TraceOk,    SLOW),
    row(Fault::StallMidStream, true,   "a",   200,   TIMEOUT_EVENT,    TraceError, STALL),
    row(Fault::CutMidStream,   true,   "a",   200,   CUT_EVENT,        TraceError, CUT),
    // Only unparseable events: must not pass for a successful, empty answer.
    row(Fault::GarbageSse,     true,   "a",   200,   ANY_ERROR_EVENT,  TraceError, GARBAGE),
    row(Fault::InvalidJson,    false,  "a",   502,   BAD_JSON_BODY,    TraceError, INVALID_JSON),
];

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

/// Route `chat`: `a` then `b`; `a_extra` goes into `[engines.a]`, `resilience` after everything.
async fn start(a_url: &str, a_extra: &str, b_url: &str, resilience: &str) -> (tempfile::TempDir, Daemon) {
    let config = format!(
        "[engines.a]\nkind = \"openai\"\nbase_url = \"{a_url}\"\nmodels = [\"fake-model\"]\n{a_extra}\
         [engines.b]\nkind = \"openai\"\nbase_url = \"{b_url}\"\nmodels = [\"fake-model\"]\n\
         [routes.chat]\ntargets = [{{ engine = \"a\", model = \"fake-model\" }}, {{ engine = \"b\", model = \"fake-model\" }}]\n\
         {resilience}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, daemon)
}

/// A whole answer as the client saw it.
struct Reply {
    status: u16,
    /// The engine part of `x-llmops-served-by` (`a/fake-model` → `a`), empty without the header.
    served_by: String,
    id: String,
    body: String,
}

async fn send(daemon: &Daemon, stream: bool) -> Reply {
    let body = json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "ping"}]});
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("request");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let served_by = header("x-llmops-served-by");
    let served_by = served_by.strip_suffix("/fake-model").unwrap_or(&served_by).to_string();
    let (status, id) = (response.status().as_u16(), header("x-request-id"));
    assert!(!id.is_empty(), "every response carries x-request-id");
    Reply { status, served_by, id, body: response.text().await.expect("the body ends cleanly") }
}

/// Waits for the trace to be written, then returns it.
async fn fetch_trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<&str> {
    body.split("\n\n").filter_map(|event| event.trim().strip_prefix("data:")).map(str::trim).collect()
}

/// The text of a streamed chat answer: its chunks' `delta.content`, joined.
fn sse_text(body: &str) -> String {
    let chunks = sse_data(body).into_iter().filter_map(|data| serde_json::from_str::<Value>(data).ok());
    chunks.filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_string)).collect()
}

fn assert_attempts(what: &str, trace: &pb::Trace, expected: &[Attempt]) {
    let found: Vec<(&str, u32, &str)> =
        trace.attempts.iter().map(|a| (a.engine.as_str(), a.upstream_status, a.error.as_str())).collect();
    assert_eq!(found.len(), expected.len(), "{what}: attempts {found:?}");
    for (&(engine, status, error), &(want_engine, want_status, want_error)) in found.iter().zip(expected) {
        assert_eq!((engine, status), (want_engine, want_status), "{what}: attempts {found:?}");
        match want_error {
            None => assert!(error.is_empty(), "{what}: {engine} should have no error: {found:?}"),
            Some(part) => assert!(!error.is_empty() && error.contains(part), "{what}: {engine}: {error:?} ∌ {part:?}"),
        }
    }
    assert!(trace.attempts.iter().all(|a| a.model == "fake-model"), "{what}: {:?}", trace.attempts);
}

/// Runs one row against its own daemon and fakes.
async fn run_row(row: &Row) {
    let what = format!("{:?} (stream: {})", row.fault, row.stream);
    let (behavior, a_extra) = fault_setup(row.fault);
    let a = match behavior {
        Some(behavior) => Some(FakeUpstream::start(behavior).await.expect("fake a")),
        None => None,
    };
    let a_url = a.as_ref().map_or_else(closed_port_url, FakeUpstream::base_url);
    let b = FakeUpstream::start(Behavior::default()).await.expect("fake b");
    let (_dir, daemon) = start(&a_url, a_extra, &b.base_url(), "").await;
    let reply = send(&daemon, row.stream).await;
    assert_eq!(reply.status, row.status, "{what}: {}", reply.body);
    assert_eq!(reply.served_by, row.served_by, "{what}: x-llmops-served-by");
    let data = sse_data(&reply.body);
    match row.saw {
        Saw::Answer(text) if row.stream => {
            assert_eq!(sse_text(&reply.body), text, "{what}: {}", reply.body);
            assert_eq!(data.last().copied(), Some("[DONE]"), "{what}: {}", reply.body);
            assert!(!reply.body.contains("\"error\""), "{what}: {}", reply.body);
        }
        Saw::Answer(text) => {
            let body: Value = serde_json::from_str(&reply.body).expect("a JSON answer");
            assert_eq!(body["choices"][0]["message"]["content"], text, "{what}");
        }
        Saw::ErrorEvent(code, text) => {
            assert_eq!(sse_text(&reply.body), text, "{what}: {}", reply.body);
            assert!(!data.contains(&"[DONE]"), "{what}: no [DONE] after a failure: {}", reply.body);
            let last: Value = data.last().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
            assert!(
                last["error"]["message"].is_string(),
                "{what}: the stream ends with an error event: {}",
                reply.body
            );
            if let Some(code) = code {
                assert_eq!(last["error"]["code"], code, "{what}: {last}");
            }
        }
        Saw::ErrorBody(message) => {
            let body: Value = serde_json::from_str(&reply.body).expect("a JSON error");
            let found = body["error"]["message"].as_str().unwrap_or_default();
            assert!(found.contains(message), "{what}: {body}");
        }
    }
    let trace = fetch_trace(&daemon, &reply.id).await;
    assert_eq!(trace.status(), row.trace, "{what}: {trace:?}");
    assert_eq!(trace.http_status, u32::from(row.status), "{what}");
    assert_eq!(trace.engine, row.served_by, "{what}");
    if matches!(row.saw, Saw::ErrorEvent(..)) {
        assert_eq!(trace.finish_reason, "error", "{what}");
    }
    assert_attempts(&what, &trace, row.attempts);
    // Exactly the engines on the trace were contacted, once per attempt.
    let count = |engine: &str| row.attempts.iter().filter(|(e, ..)| *e == engine).count() as u64;
    if let Some(a) = &a {
        assert_eq!(a.stats().requests, count("a"), "{what}: requests to a");
    }
    assert_eq!(b.stats().requests, count("b"), "{what}: requests to b");
    if let (Fault::StallMidStream, Some(a)) = (row.fault, &a) {
        // The daemon hangs up on the stalled engine once it gives up.
        let released = llmops_e2e::daemon::wait_until(WAIT, || async { a.stats().streams_cancelled == 1 }).await;
        assert!(released, "{what}: the stalled upstream stream was not dropped: {:?}", a.stats());
    }
}

#[tokio::test]
async fn each_fault_is_answered_as_the_matrix_says() {
    for row in MATRIX {
        run_row(row).await;
    }
}

/// A request that reached `a` again, and when it was sent.
struct Contact {
    reply: Reply,
    trace: pb::Trace,
    sent_at: Instant,
}

/// Sends requests until one reaches `a` (its request count grows) and returns it; every one before it must
/// have skipped `a` (breaker or `Retry-After`: `what`, with these attempts) without contacting it, and been
/// served by `b`. How many are skipped depends on the machine's speed (none, if the first comes after the
/// wait); callers check when the contact came instead.
async fn send_until_a_is_contacted(daemon: &Daemon, a: &FakeUpstream, what: &str, skipped: &[Attempt]) -> Contact {
    let before = a.stats().requests;
    let deadline = Instant::now() + WAIT;
    loop {
        let sent_at = Instant::now();
        let reply = send(daemon, false).await;
        let trace = fetch_trace(daemon, &reply.id).await;
        if a.stats().requests > before {
            return Contact { reply, trace, sent_at };
        }
        assert_eq!(reply.served_by, "b", "{what}");
        assert_attempts(what, &trace, skipped);
        assert_eq!(a.stats().requests, before, "{what}: a is not contacted");
        assert!(Instant::now() < deadline, "a was never contacted again within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const BREAKER_SKIP: &str = "skipped: circuit breaker open; retry in";

#[tokio::test]
async fn the_breaker_opens_probes_after_its_cooldown_and_closes_or_reopens() {
    let failing = Behavior { fail_status: Some(500), ..Behavior::default() };
    let a = FakeUpstream::start(failing).await.expect("fake a");
    let b = FakeUpstream::start(Behavior::default()).await.expect("fake b");
    let cooldown = Duration::from_millis(1000);
    let breaker = format!("[resilience.breaker]\nconsecutive_failures = 2\ncooldown_ms = {}\n", cooldown.as_millis());
    let (_dir, daemon) = start(&a.base_url(), "", &b.base_url(), &breaker).await;
    let skipped: &[Attempt] = &[("a", 0, Some(BREAKER_SKIP)), ("b", 200, None)];

    // No request here has to land inside a cooldown (that would assume a fast machine): every request until
    // `a` is contacted again must skip it, and that contact must come no sooner than the cooldown after the
    // breaker opened, which it did no sooner than the failing request was sent.
    let mut sent_at = Vec::new();
    for n in 1..=2 {
        sent_at.push(Instant::now());
        let reply = send(&daemon, false).await;
        assert_eq!((reply.status, reply.served_by.as_str()), (200, "b"), "failure {n}");
        assert_attempts(&format!("failure {n}"), &fetch_trace(&daemon, &reply.id).await, HTTP_500);
    }
    // Open: `a` is skipped without being contacted until the cooldown is over.
    let opened_after = sent_at[1];
    assert_eq!(a.stats().requests, 2, "an open breaker does not contact a");
    let probe = send_until_a_is_contacted(&daemon, &a, "open", skipped).await;
    assert!(opened_after.elapsed() >= cooldown, "a was probed before the {cooldown:?} cooldown was over");

    // After the cooldown one probe reaches `a`; it fails, so the breaker opens again at once.
    assert_eq!(probe.reply.served_by, "b");
    assert_attempts("failed probe", &probe.trace, HTTP_500);
    assert_eq!(a.stats().requests, 3, "one probe");

    // `a` recovers, but the reopened breaker does not contact it until a fresh cooldown is over; then the
    // probe succeeds and closes the breaker; `a` serves again.
    a.set_behavior(Behavior::default());
    let reopened_after = probe.sent_at;
    let Contact { reply, trace, .. } = send_until_a_is_contacted(&daemon, &a, "reopened", skipped).await;
    assert!(reopened_after.elapsed() >= cooldown, "the reopened breaker let a probe through before its cooldown");
    assert_eq!((reply.status, reply.served_by.as_str()), (200, "a"), "successful probe");
    assert_attempts("successful probe", &trace, &[("a", 200, None)]);
    for n in 0..3 {
        let reply = send(&daemon, false).await;
        assert_eq!(reply.served_by, "a", "closed breaker, request {n}");
    }
    assert_eq!((a.stats().requests, a.stats().requests_failed), (7, 3));
}

#[tokio::test]
async fn a_target_is_retried_before_the_route_moves_on() {
    let flaky = Behavior { fail_status: Some(500), fail_first_requests: Some(2), ..Behavior::default() };
    let a = FakeUpstream::start(flaky.clone()).await.expect("fake a");
    let b = FakeUpstream::start(Behavior::default()).await.expect("fake b");
    let retry = "[resilience.retry]\nmax_attempts_per_target = 3\nbase_ms = 20\nmax_ms = 100\n\
                 [resilience.breaker]\nconsecutive_failures = 10\n";
    let (_dir, daemon) = start(&a.base_url(), "", &b.base_url(), retry).await;
    let failed = ("a", 500, Some("engine a answered HTTP 500"));

    // Fails twice, then succeeds: the third try at `a` serves.
    let reply = send(&daemon, false).await;
    assert_eq!((reply.status, reply.served_by.as_str()), (200, "a"));
    let trace = fetch_trace(&daemon, &reply.id).await;
    assert_eq!(trace.status(), TraceOk);
    assert_attempts("two failures", &trace, &[failed, failed, ("a", 200, None)]);
    assert_eq!((a.stats().requests, b.stats().requests), (3, 0));

    // Fails three times: the attempts at `a` are used up and `b` serves.
    a.reset_stats();
    a.set_behavior(Behavior { fail_first_requests: Some(3), ..flaky });
    let reply = send(&daemon, false).await;
    assert_eq!((reply.status, reply.served_by.as_str()), (200, "b"));
    assert_attempts(
        "three failures",
        &fetch_trace(&daemon, &reply.id).await,
        &[failed, failed, failed, ("b", 200, None)],
    );
    assert_eq!((a.stats().requests, b.stats().requests), (3, 1));
}

#[tokio::test]
async fn retry_after_skips_the_target_for_that_long_without_tripping_the_breaker() {
    let limited = Behavior {
        fail_status: Some(429),
        retry_after_secs: Some(2),
        fail_first_requests: Some(1),
        ..Behavior::default()
    };
    let a = FakeUpstream::start(limited).await.expect("fake a");
    let b = FakeUpstream::start(Behavior::default()).await.expect("fake b");
    // One failure would open this breaker for 60 s: a 429 must not count as one.
    let breaker = "[resilience.breaker]\nconsecutive_failures = 1\ncooldown_ms = 60000\n";
    let (_dir, daemon) = start(&a.base_url(), "", &b.base_url(), breaker).await;

    let started = Instant::now();
    let reply = send(&daemon, false).await;
    assert_eq!((reply.status, reply.served_by.as_str()), (200, "b"));
    assert_attempts("429", &fetch_trace(&daemon, &reply.id).await, HTTP_429);
    assert_eq!(a.stats().requests, 1);

    // Within the 2 s `a` is skipped without being contacted (how many requests fall within them depends on
    // the machine's speed; that none reaches `a` sooner does not).
    let skip = "skipped: engine asked to wait (Retry-After); retry in";
    let within: &[Attempt] = &[("a", 0, Some(skip)), ("b", 200, None)];
    let Contact { reply, trace, .. } = send_until_a_is_contacted(&daemon, &a, "within Retry-After", within).await;
    // Once the 2 s are over `a` serves again: the 429 did not open the breaker.
    assert!(started.elapsed() >= Duration::from_secs(2), "a was contacted before its Retry-After passed");
    assert_eq!((reply.status, reply.served_by.as_str()), (200, "a"));
    assert_attempts("after Retry-After", &trace, &[("a", 200, None)]);
}
