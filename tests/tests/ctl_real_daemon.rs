//! `llmopsctl keys`, `budgets`, `budgets --watch` and `watch` against the real daemon binary (the tests in tui/
//! run them against fake gRPC services): what they print comes from what the daemon actually did.
use std::process::Stdio;
use std::time::Duration;

use llmops_e2e::daemon::{binary, wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const WAIT: Duration = Duration::from_secs(15);

/// A tokens budget over every request: its spend is the requests' tokens, whatever prices are configured.
const TOKENS_BUDGET: &str =
    "[[budgets]]\nname = \"tokens-day\"\nwindow = \"day\"\nlimit_tokens = 1000\naction = \"alert\"\n";

async fn start(extra: &str) -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n{extra}",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

/// One chat request, with `key` as its bearer key if given: its HTTP status and request id.
async fn chat(daemon: &Daemon, content: &str, key: Option<&str>) -> (u16, String) {
    let body = json!({"model": "fake-model", "max_tokens": 10, "messages": [{"role": "user", "content": content}]});
    let mut request = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("POST /v1/chat/completions");
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (response.status().as_u16(), id)
}

/// A finished llmopsctl run's stdout; it must have succeeded.
async fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "llmopsctl {args:?} failed: {stderr}\n{}", daemon.log_tail(20));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn ctl_json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = ctl(daemon, &args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("llmopsctl {args:?} printed no JSON ({e}): {stdout}"))
}

/// An llmopsctl that keeps running (a watch), read line by line as it prints; killed when dropped.
struct Watching {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    read: Vec<String>,
}

impl Watching {
    fn start(daemon: &Daemon, args: &[&str]) -> Watching {
        let mut child = tokio::process::Command::new(binary("llmopsctl").expect("llmopsctl is built"))
            .arg("--connect")
            .arg(format!("unix:{}", daemon.grpc_socket.display()))
            .args(args)
            .env_remove("LLMOPS_TOKEN")
            .env_remove("LLMOPS_CONNECT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start llmopsctl");
        let stdout = child.stdout.take().expect("piped stdout");
        Watching { child, lines: BufReader::new(stdout).lines(), read: Vec::new() }
    }

    /// The next line printed that `wanted` accepts, waiting at most `WAIT` for it; fails with everything
    /// read so far if none comes or llmopsctl ends first.
    async fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                self.read.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => {
                panic!("llmopsctl ended before {what}: {}\nit printed:\n{}", self.stderr().await, self.read.join("\n"))
            }
            Err(_) => panic!("no {what} within {WAIT:?}; llmopsctl printed:\n{}", self.read.join("\n")),
        }
    }

    async fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = tokio::time::timeout(WAIT, stderr.read_to_string(&mut text)).await;
        }
        text
    }
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let (_dir, _upstream, daemon) = start("").await;
    let listed = ctl(&daemon, &["keys", "list"]).await;
    assert!(listed.contains("(no API keys") && listed.contains("Keys are not required now"), "{listed}");

    let created = ctl_json(&daemon, &["keys", "create", "--tenant", "acme", "--name", "notebooks"]).await;
    let (id, secret) =
        (created["key"]["id"].as_str().unwrap_or_default(), created["secret"].as_str().unwrap_or_default());
    assert!(!id.is_empty() && secret.starts_with("sk-"), "{created}");
    assert_eq!((created["key"]["tenant"].as_str(), created["key"]["name"].as_str()), (Some("acme"), Some("notebooks")));
    let text = ctl(&daemon, &["keys", "create", "--tenant", "beta"]).await;
    assert!(text.contains("for tenant beta") && text.contains("Authorization: Bearer sk-"), "{text}");

    let listed = ctl(&daemon, &["keys", "list"]).await;
    let row = listed.lines().find(|line| line.starts_with(id)).unwrap_or_else(|| panic!("no row for {id}:\n{listed}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells[1], cells[2], cells.last().copied()), ("acme", "notebooks", Some("no")), "{row}");
    assert!(listed.lines().any(|line| line.contains(" beta ")), "the second key is listed:\n{listed}");
    assert!(listed.contains("Keys are required now"), "{listed}");
    assert_eq!(chat(&daemon, "hi", Some(secret)).await.0, 200, "the new key is accepted");
    assert_eq!(chat(&daemon, "hi", None).await.0, 401, "keys exist, so requests need one");

    let revoked = ctl(&daemon, &["keys", "revoke", id]).await;
    assert!(revoked.starts_with(&format!("Revoked API key {id} (tenant acme, name notebooks)")), "{revoked}");
    assert_eq!(chat(&daemon, "hi", Some(secret)).await.0, 401, "a revoked key is refused");
    let keys = ctl_json(&daemon, &["keys", "list"]).await;
    let record = keys["keys"].as_array().and_then(|keys| keys.iter().find(|key| key["id"] == id)).cloned();
    assert_eq!(record.map(|key| key["revoked"].clone()), Some(json!(true)), "{keys}");

    let output = daemon.llmopsctl_async(&["keys", "revoke", "no-such-key"]).await.expect("llmopsctl runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no API key with id no-such-key"), "{output:?}");
}

/// The tokens one request used, from its trace.
async fn tokens_of(daemon: &Daemon, id: &str) -> u64 {
    let trace = daemon.wait_for_trace(id).await.expect("the request's trace");
    assert!(trace.input_tokens + trace.output_tokens > 0, "{trace:?}");
    trace.input_tokens + trace.output_tokens
}

#[tokio::test]
async fn budgets_show_the_spend_of_a_request() {
    let (_dir, _upstream, daemon) = start(TOKENS_BUDGET).await;
    let before = ctl(&daemon, &["budgets"]).await;
    let row = before.lines().find(|line| line.starts_with("tokens-day")).unwrap_or_else(|| panic!("{before}"));
    assert!(row.contains("global") && row.contains(" day ") && row.contains("0 / 1k tokens"), "{row}");

    let (status, id) = chat(&daemon, "hello budgets", None).await;
    assert_eq!(status, 200);
    let tokens = tokens_of(&daemon, &id).await;
    // The spend is settled once the request is done; nothing is left reserved.
    let settled = wait_until(WAIT, || async {
        let budgets = ctl_json(&daemon, &["budgets"]).await;
        let budget = &budgets["budgets"][0];
        budget["used_tokens"] == json!(tokens) && budget["requests"] == json!(1) && budget["in_flight"] == json!(0)
    })
    .await;
    assert!(settled, "{}", ctl_json(&daemon, &["budgets"]).await);
    let after = ctl(&daemon, &["budgets"]).await;
    let row = after.lines().find(|line| line.starts_with("tokens-day")).unwrap_or_else(|| panic!("{after}"));
    assert!(row.contains(&format!(" {tokens} / 1k tokens")), "{tokens} tokens spent: {row}");
}

#[tokio::test]
async fn budgets_watch_prints_every_budget_then_the_spend_of_a_request() {
    let (_dir, _upstream, daemon) = start(TOKENS_BUDGET).await;
    let mut watch = Watching::start(&daemon, &["budgets", "--watch"]);
    watch.line_where("the header", |line| line.starts_with("TIME") && line.contains("USED / LIMIT")).await;
    let first = watch.line_where("the budget's first line", |line| line.contains("tokens-day")).await;
    assert!(first.contains("0 / 1k tokens"), "nothing spent yet: {first}");

    let (status, id) = chat(&daemon, "hello budgets", None).await;
    assert_eq!(status, 200);
    let tokens = tokens_of(&daemon, &id).await;
    let spent = format!(" {tokens} / 1k tokens");
    let line = watch.line_where("the spend of the request", |line| line.contains(&spent)).await;
    assert!(line.contains("tokens-day"), "{line}");
}

#[tokio::test]
async fn watch_prints_the_trace_of_a_request() {
    let (_dir, _upstream, daemon) = start("").await;
    let mut watch = Watching::start(&daemon, &["watch"]);
    // The header is printed once llmopsd answered the call, so the watch sees every request from here on.
    watch.line_where("the header", |line| line.starts_with("EVENT") && line.contains("ROUTE")).await;
    let (status, id) = chat(&daemon, "watch this", None).await;
    assert_eq!(status, 200);
    let started = watch.line_where("the request's start", |line| line.contains(&id)).await;
    assert!(started.starts_with("STARTED") && started.contains("fake-model"), "{started}");
    let finished = watch.line_where("the request's end", |line| line.contains(&id)).await;
    let cells: Vec<&str> = finished.split_whitespace().collect();
    assert_eq!(cells.first(), Some(&"FINISHED"), "{finished}");
    assert!(cells.contains(&"ok") && cells.contains(&"200") && cells.contains(&"fake-model"), "{finished}");
}
