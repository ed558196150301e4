//! End to end: `[[guardrails]]` in front of fake upstreams, through the real llmopsd. A secret the engine
//! streams in 3-character pieces never reaches the client (the stream ends with the `guardrail_blocked` error
//! event); an e-mail address is masked before the engine sees it (asserted on what the fake received) and,
//! on another route, in a streamed answer split across chunks; a flag rule passes and records; a classifier
//! route that takes too long is passed under `fail_open` and refused under `fail_closed`, and its "unsafe"
//! verdict blocks. Every verdict is on the trace and in /metrics, never the matched text.
use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use serde_json::{json, Value};

const SECRET: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123";

struct Setup {
    _dir: tempfile::TempDir,
    upstream: FakeUpstream,
    _slow: FakeUpstream,
    daemon: Daemon,
}

async fn start() -> Setup {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    // The classifier for the timeout cases answers after 30 s; the rules give it 200 ms.
    let slow = FakeUpstream::start(Behavior { first_token_delay_ms: 30_000, ..Behavior::default() })
        .await
        .expect("slow fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let route = |name: &str, engine: &str| {
        format!("[routes.{name}]\ntargets = [{{ engine = \"{engine}\", model = \"fake-model\" }}]\n")
    };
    let config = format!(
        r#"
[engines.fake]
kind = "openai"
base_url = "{fast}"
models = ["fake-model"]

[engines.slow]
kind = "openai"
base_url = "{slow}"
models = ["fake-model"]

{chat}{masked}{open}{closed}{verdict}{slow_route}{judge}
[[guardrails]]
name = "no-keys-out"
kind = "pii"
detectors = ["api_key"]
apply_to = "output"
action = "block"
routes = ["chat"]

[[guardrails]]
name = "mask-emails-in"
kind = "pii"
detectors = ["email"]
apply_to = "input"
action = "mask"
routes = ["chat"]

[[guardrails]]
name = "refund-words"
kind = "keywords"
keywords = ["refund", "chargeback"]
action = "flag"
routes = ["chat"]

[[guardrails]]
name = "mask-emails-out"
kind = "pii"
detectors = ["email"]
apply_to = "output"
action = "mask"
routes = ["masked"]

[[guardrails]]
name = "slow-open"
kind = "classifier"
route = "slow-judge"
apply_to = "input"
timeout_ms = 200
on_error = "fail_open"
routes = ["open"]

[[guardrails]]
name = "slow-closed"
kind = "classifier"
route = "slow-judge"
apply_to = "input"
timeout_ms = 200
on_error = "fail_closed"
routes = ["closed"]

[[guardrails]]
name = "judge"
kind = "classifier"
route = "judge"
apply_to = "input"
unsafe_pattern = "(?i)\\bunsafe\\b"
routes = ["verdict"]
"#,
        fast = upstream.base_url(),
        slow = slow.base_url(),
        chat = route("chat", "fake"),
        masked = route("masked", "fake"),
        open = route("open", "fake"),
        closed = route("closed", "fake"),
        verdict = route("verdict", "fake"),
        slow_route = route("slow-judge", "slow"),
        judge = route("judge", "fake"),
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    Setup { _dir: dir, upstream, _slow: slow, daemon }
}

fn ask(route: &str, text: &str, stream: bool) -> Value {
    json!({"model": route, "messages": [{"role": "user", "content": text}], "stream": stream})
}

/// Status, trace id and the raw body.
async fn post(daemon: &Daemon, body: &Value) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("POST /v1/chat/completions");
    let status = response.status().as_u16();
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, id, response.text().await.expect("body"))
}

/// The content deltas of an SSE body, joined, and the error event's body if it ended with one.
fn stream_text(body: &str) -> (String, Option<Value>) {
    let mut text = String::new();
    let mut error = None;
    for data in body.split("\n\n").filter_map(|event| event.strip_prefix("data: ")) {
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        if chunk.get("error").is_some() {
            error = Some(chunk);
        } else if let Some(piece) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str) {
            text.push_str(piece);
        }
    }
    (text, error)
}

async fn trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

fn verdicts(trace: &pb::Trace) -> Vec<(String, String, String, u32)> {
    trace.guardrails.iter().map(|v| (v.rule.clone(), v.action.clone(), v.stage.clone(), v.matches)).collect()
}

#[tokio::test]
async fn a_secret_split_across_stream_chunks_never_reaches_the_client() {
    let setup = start().await;
    setup.upstream.set_behavior(Behavior { chunk_chars: Some(3), ..Behavior::default() });
    let (status, id, body) = post(&setup.daemon, &ask("chat", &format!("my key is {SECRET} ok"), true)).await;
    assert_eq!(status, 200, "{body}");
    let (text, error) = stream_text(&body);
    assert!(!body.contains("sk-") && !body.contains("AbCd") && !body.contains("0123"), "secret leaked: {body}");
    let error = error.unwrap_or_else(|| panic!("the stream ends with an error event: {body}"));
    assert_eq!(error["error"]["code"], "guardrail_blocked", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no-keys-out") && message.contains("output"), "{message}");
    assert!(!text.contains("sk"), "{text}");
    let recorded = trace(&setup.daemon, &id).await;
    assert!(verdicts(&recorded).contains(&("no-keys-out".into(), "block".into(), "output".into(), 1)), "{recorded:?}");
    assert!(!recorded.response_text.contains(SECRET), "the trace keeps the token: {}", recorded.response_text);
    assert_eq!(recorded.error_type, "invalid_request_error");

    // A stream of several choices would pass all but the first unchecked: refused before any engine runs.
    let mut several = ask("chat", "hello", true);
    several["n"] = json!(2);
    let (status, _, body) = post(&setup.daemon, &several).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"param\":\"n\""), "{body}");

    // The same answer whole: a 400 naming the rule, never the secret.
    let (status, _, body) = post(&setup.daemon, &ask("chat", &format!("my key is {SECRET} ok"), false)).await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["error"]["code"], "guardrail_blocked");
    assert!(!body.to_string().contains(SECRET));
}

#[tokio::test]
async fn mask_on_input_changes_what_the_engine_receives_and_flag_passes_and_records() {
    let setup = start().await;
    let (status, id, body) =
        post(&setup.daemon, &ask("chat", "I want a refund, write to jane.doe@example.com please", false)).await;
    assert_eq!(status, 200, "{body}");
    let sent = setup.upstream.stats().last_request;
    let content = sent["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
    assert_eq!(content, "I want a refund, write to [EMAIL] please", "what the engine got");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: I want a refund, write to [EMAIL] please");
    let recorded = trace(&setup.daemon, &id).await;
    let found = verdicts(&recorded);
    assert!(found.contains(&("mask-emails-in".into(), "mask".into(), "input".into(), 1)), "{found:?}");
    assert!(found.contains(&("refund-words".into(), "flag".into(), "input".into(), 1)), "{found:?}");
    let mask = recorded.guardrails.iter().find(|v| v.rule == "mask-emails-in").expect("mask verdict");
    assert_eq!(mask.detail, "EMAIL");
    assert!(!recorded.prompt_text.contains("jane.doe") && !recorded.request_json.contains("jane.doe"));

    let metrics = reqwest::get(setup.daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    for line in [
        "llmops_guardrail_verdicts_total{rule=\"refund-words\",stage=\"input\",action=\"flag\"} 1",
        "llmops_guardrail_verdicts_total{rule=\"mask-emails-in\",stage=\"input\",action=\"mask\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in /metrics:\n{metrics}");
    }
}

#[tokio::test]
async fn mask_on_a_stream_replaces_an_address_split_across_chunks() {
    let setup = start().await;
    setup.upstream.set_behavior(Behavior { chunk_chars: Some(2), ..Behavior::default() });
    let (status, id, body) = post(&setup.daemon, &ask("masked", "write to bob.smith@mail.example.org now", true)).await;
    assert_eq!(status, 200, "{body}");
    let (text, error) = stream_text(&body);
    assert!(error.is_none(), "{body}");
    assert_eq!(text, "echo: write to [EMAIL] now");
    assert!(!body.contains("bob.") && !body.contains("example"), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let recorded = trace(&setup.daemon, &id).await;
    assert!(verdicts(&recorded).contains(&("mask-emails-out".into(), "mask".into(), "output".into(), 1)));
    assert_eq!(recorded.response_text, "echo: write to [EMAIL] now");
}

#[tokio::test]
async fn a_classifier_timeout_honours_fail_open_and_fail_closed_and_unsafe_blocks() {
    let setup = start().await;
    let (status, id, body) = post(&setup.daemon, &ask("open", "hello", false)).await;
    assert_eq!(status, 200, "fail_open passes: {body}");
    let recorded = trace(&setup.daemon, &id).await;
    let verdict = recorded.guardrails.iter().find(|v| v.rule == "slow-open").expect("verdict recorded");
    assert!(verdict.detail.contains("timed out after 200 ms") && verdict.detail.ends_with("fail_open"), "{verdict:?}");

    let (status, id, body) = post(&setup.daemon, &ask("closed", "hello", false)).await;
    assert_eq!(status, 400, "fail_closed refuses: {body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["error"]["code"], "guardrail_blocked");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("slow-closed")), "{body}");
    let recorded = trace(&setup.daemon, &id).await;
    assert!(recorded.attempts.is_empty(), "no engine was asked: {recorded:?}");
    assert_eq!(recorded.status, pb::TraceStatus::Rejected as i32);

    // The judge echoes what it is given: "unsafe" in the request makes its answer match the unsafe pattern.
    let (status, _, body) = post(&setup.daemon, &ask("verdict", "this is unsafe content", false)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("judge"), "{body}");
    let (status, _, body) = post(&setup.daemon, &ask("verdict", "a friendly question", false)).await;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::get(setup.daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("llmops_guardrail_classifier_failures_total{rule=\"slow-closed\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_config_with_a_bad_guardrail_is_refused_with_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[[guardrails]]\nname = \"broken\"\nkind = \"regex\"\npatterns = [\"(unclosed\"]\n";
    let error = match Daemon::start(config, dir.path()).await {
        Ok(_) => panic!("llmopsd started with an invalid pattern"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("guardrails[0]") && error.contains("broken"), "{error}");
}
