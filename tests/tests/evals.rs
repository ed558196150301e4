//! End to end: datasets and evaluation runs with the real llmopsctl against the real llmopsd, candidates
//! answered by fake upstreams (which echo the last message, so what a prompt version renders is what comes
//! back). A prompt change that breaks answers exits 100 naming the regressed items, an unchanged one exits 0, a
//! dead route exits 1; a gated label move is refused on failure (or forced, audited) and visible on the next
//! trace. The judge tests (`judge.rs` beside this) use the embedded model.
use std::path::{Path, PathBuf};

use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use serde_json::{json, Value};

/// Asks the customer's topic; the fake upstream echoes it, so the topic (each item's reference) comes back.
const GOOD: &str = r#"{"messages": [{"role": "user", "content": "Tell {{ customer }} about {{ topic }}."}]}"#;
/// A regression: the topic is no longer in the answer.
const BROKEN: &str = r#"{"messages": [{"role": "user", "content": "Tell {{ customer }} we cannot help."}]}"#;
/// Worded differently, still answers the topic.
const REWORDED: &str = r#"{"messages": [{"role": "user", "content": "Explain {{ topic }} to {{ customer }}."}]}"#;

const EVALUATORS: &str = r#"[{"type": "contains"}, {"type": "max_latency_ms", "value": 30000}]"#;

async fn start() -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    // `dead-model` is served by an engine nothing listens for.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\n\
         [engines.dead]\nkind = \"openai\"\nbase_url = \"http://{dead}/v1\"\nmodels = [\"dead-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// llmopsctl's exit status, stdout and stderr.
async fn ctl(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

async fn ctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let (code, stdout, stderr) = ctl(daemon, args).await;
    assert_eq!(code, 0, "llmopsctl {args:?}: {stdout}\n{stderr}\n{}", daemon.log_tail(20));
    stdout
}

fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap_or("")
}

/// Four items whose reference is their topic.
fn items_jsonl() -> String {
    let topics = [("Ana", "refunds"), ("Bo", "shipping"), ("Cy", "invoices"), ("Di", "warranty")];
    topics
        .iter()
        .map(|(customer, topic)| {
            json!({"variables": {"customer": customer, "topic": topic}, "reference": topic, "metadata": {"tier": "gold"}})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn push(daemon: &Daemon, dir: &Path, name: &str, text: &str) {
    let file = write(dir, &format!("{name}.json"), text);
    ctl_ok(daemon, &["prompts", "push", "support", "--file", file.to_str().expect("path")]).await;
}

#[tokio::test]
async fn a_prompt_change_that_breaks_answers_fails_the_gate_and_an_unchanged_one_passes() {
    let (dir, _upstream, daemon) = start().await;
    let path = |p: &PathBuf| p.to_str().expect("path").to_owned();
    push(&daemon, dir.path(), "v1", GOOD).await;
    push(&daemon, dir.path(), "v2", BROKEN).await;
    push(&daemon, dir.path(), "v3", REWORDED).await;
    ctl_ok(&daemon, &["prompts", "label", "support", "1", "production"]).await;
    let evaluators = write(dir.path(), "evaluators.json", EVALUATORS);
    ctl_ok(
        &daemon,
        &["dataset", "create", "qa", "--route", "fake-model", "--empty", "--evaluators", &path(&evaluators)],
    )
    .await;
    let items = write(dir.path(), "items.jsonl", &items_jsonl());
    let imported = ctl_ok(&daemon, &["dataset", "import", "qa", "--file", &path(&items)]).await;
    assert!(imported.contains("added 4 items, now 4"), "{imported}");

    // The version in production: every answer names its topic.
    let (junit, jsonl) = (dir.path().join("junit.xml"), dir.path().join("results.jsonl"));
    let args = ["eval", "run", "qa", "--prompt", "support@1", "--junit", &path(&junit), "--jsonl", &path(&jsonl)];
    let (code, stdout, stderr) = ctl(&daemon, &args).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("run-1: dataset qa, 4 items on route fake-model, prompt support@1"), "{stdout}");
    assert!(last_line(&stdout).starts_with("PASS: 4 items; contains 4/4"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("tests=\"6\" failures=\"0\" errors=\"0\""), "{xml}");
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .expect("jsonl written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["output"], "echo: Tell Ana about refunds.");
    assert_eq!(lines[4]["type"], "run");
    assert_eq!(lines[4]["status"], "PASSED");

    // Every candidate request is a trace tagged with the run, rendered from the prompt version asked for.
    let trace_id = lines[0]["trace_id"].as_str().expect("trace id");
    let trace = daemon.wait_for_trace(trace_id).await.expect("trace");
    assert_eq!(trace.tags.get("eval_run").map(String::as_str), Some("run-1"));
    assert_eq!(trace.tags.get("eval_item").map(String::as_str), Some("1"));
    assert_eq!((trace.prompt_id.as_str(), trace.prompt_version.as_str()), ("support", "1"));

    // The broken version, against the run above: exit 100, the regressed items named, the verdict last.
    let (code, stdout, _) = ctl(&daemon, &["eval", "run", "qa", "--prompt", "support@2", "--baseline", "run-1"]).await;
    assert_eq!(code, 100, "{stdout}");
    assert!(stdout.contains("regressed items: 1, 2, 3, 4"), "{stdout}");
    let verdict = last_line(&stdout);
    assert!(verdict.starts_with("FAIL: contains 0/4 passed"), "{verdict}");
    assert!(verdict.contains("significantly worse than run-1"), "{verdict}");
    assert!(stdout.contains("fail  item 1"), "{stdout}");

    // The gate: running v2 fails, so production stays at 1; forced, it moves and the audit says so.
    let (code, stdout, stderr) =
        ctl(&daemon, &["prompts", "label", "support", "2", "production", "--gate", "qa"]).await;
    assert_eq!(code, 100, "{stdout}\n{stderr}");
    assert!(stderr.contains("production was not moved"), "{stderr}");
    assert!(stdout.contains("compared with run-1"), "the gate compares with production's last run: {stdout}");
    let shown = ctl_ok(&daemon, &["prompts", "show", "support@production", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&shown).expect("json")["version"]["version"], 1, "{shown}");
    let (code, _, stderr) =
        ctl(&daemon, &["prompts", "label", "support", "2", "production", "--gate", "qa", "--force"]).await;
    assert_eq!(code, 0, "{stderr}");
    let shown: Value =
        serde_json::from_str(&ctl_ok(&daemon, &["prompts", "show", "support@production", "--json"]).await)
            .expect("json");
    assert_eq!(shown["version"]["version"], 2);
    let moved = &shown["history"][0];
    assert_eq!(moved["forced"], true, "{shown}");
    assert!(moved["gate_run"].as_str().is_some_and(|r| r.starts_with("run-")), "{shown}");

    // An unchanged meaning (v3) passes the gate against the forced v2's run... and moves production.
    let (code, stdout, stderr) =
        ctl(&daemon, &["prompts", "label", "support", "3", "production", "--gate", "qa"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(last_line(&stdout).starts_with("moved production") || stdout.contains("PASS: 4 items"), "{stdout}");
    // ...and the next request naming support@production gets version 3.
    let answer = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&json!({"model": "fake-model", "messages": [], "metadata": {"prompt": "support", "variables": {"customer": "Ed", "topic": "tea"}}}))
        .send()
        .await
        .expect("chat");
    let id = answer.headers()["x-request-id"].to_str().expect("id").to_owned();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
    assert_eq!(daemon.wait_for_trace(&id).await.expect("trace").prompt_version, "3");

    // Listing, showing and comparing runs.
    let list: Value = serde_json::from_str(&ctl_ok(&daemon, &["eval", "list", "qa", "--json"]).await).expect("json");
    let statuses: Vec<&str> = list.as_array().expect("runs").iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses.first(), Some(&"PASSED"), "newest first: {list}");
    assert!(statuses.contains(&"FAILED"), "{list}");
    let shown = ctl_ok(&daemon, &["eval", "show", "run-2", "--failed"]).await;
    assert!(shown.contains("answer:    echo: Tell Ana we cannot help."), "{shown}");
    assert!(shown.contains("FAIL contains"), "{shown}");
    let compared: Value =
        serde_json::from_str(&ctl_ok(&daemon, &["eval", "compare", "run-1", "run-2", "--json"]).await).expect("json");
    assert_eq!((compared["losses"].as_u64(), compared["paired"].as_u64()), (Some(4), Some(4)), "{compared}");
}

#[tokio::test]
async fn datasets_come_from_traces_and_a_run_that_cannot_run_exits_1() {
    let (dir, _upstream, daemon) = start().await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for question in ["What is tea?", "What is coffee?"] {
        let body =
            json!({"model": "fake-model", "temperature": 0.2, "messages": [{"role": "user", "content": question}]});
        let answer = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("chat");
        ids.push(answer.headers()["x-request-id"].to_str().expect("id").to_owned());
    }
    // No waiting for the traces to be written: the dataset is made right after the answers came back.
    let created = ctl_ok(&daemon, &["dataset", "create", "recorded", "--route", "fake-model", "--status", "ok"]).await;
    assert!(created.contains("added 2 items, now 2"), "{created}");
    // The recorded answer is the reference; the parameters the client sent are kept.
    let exported = ctl_ok(&daemon, &["dataset", "export", "recorded"]).await;
    let items: Vec<Value> = exported.lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect();
    assert_eq!(items.len(), 2);
    assert!(items.iter().any(|i| i["reference"] == "echo: What is tea?"), "{exported}");
    assert!(items.iter().all(|i| i["parameters"]["temperature"] == 0.2), "{exported}");
    // Adding the same trace again is skipped and said so.
    let again = ctl_ok(&daemon, &["dataset", "add", "recorded", &ids[0]]).await;
    assert!(again.contains("added 0 items") && again.contains("already in the dataset"), "{again}");

    // exact against the recorded answer: unchanged, so it passes.
    let exact = write(dir.path(), "exact.json", r#"[{"type": "exact"}]"#);
    let exact = exact.to_str().expect("path");
    let (code, stdout, _) = ctl(&daemon, &["eval", "run", "recorded", "--evaluators", exact]).await;
    assert_eq!(code, 0, "{stdout}");
    // A dead route: every item's request fails, so the run could not run (exit 1), and says why.
    let (code, stdout, stderr) =
        ctl(&daemon, &["eval", "run", "recorded", "--route", "dead-model", "--evaluators", exact]).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(last_line(&stdout).starts_with("ERROR: could not run: 2 of 2 items failed"), "{stdout}");

    // Refusals name the problem and exit 1 (2 for usage errors caught before anything is sent).
    let (code, _, stderr) = ctl(&daemon, &["eval", "run", "nope"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no dataset named `nope`"), "{stderr}");
    let (code, _, stderr) =
        ctl(&daemon, &["eval", "run", "recorded", "--route", "no-such-route", "--evaluators", exact]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no route named \"no-such-route\""), "{stderr}");
    let bad = write(dir.path(), "bad.json", r#"[{"type": "regex", "pattern": "a{10000}{10000}"}]"#);
    let (code, _, stderr) =
        ctl(&daemon, &["eval", "run", "recorded", "--evaluators", bad.to_str().expect("path")]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("evaluators[0].pattern"), "{stderr}");
    let (code, _, stderr) =
        ctl(&daemon, &["eval", "run", "recorded", "--baseline", "run-999", "--evaluators", exact]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("run-999"), "{stderr}");
    let (code, _, _) = ctl(&daemon, &["eval", "run", "recorded", "--concurrency", "64"]).await;
    assert_eq!(code, 2, "a usage error");
    let lines = write(dir.path(), "bad.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\nnot json\n");
    let (code, _, stderr) =
        ctl(&daemon, &["dataset", "import", "recorded", "--file", lines.to_str().expect("path")]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[tokio::test]
async fn a_run_spends_from_the_routes_budget_like_any_client() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\n\
         [[budgets]]\nname = \"two-a-day\"\nscope = \"route:fake-model\"\nwindow = \"day\"\nlimit_requests = 2\n\
         action = \"reject\"\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let items: String = ["a", "b", "c"]
        .iter()
        .map(|t| json!({"messages": [{"role": "user", "content": t}], "reference": t}).to_string() + "\n")
        .collect();
    let file = write(dir.path(), "items.jsonl", &items);
    let evaluators = write(dir.path(), "evaluators.json", EVALUATORS);
    let path = |p: &PathBuf| p.to_str().expect("path").to_owned();
    ctl_ok(&daemon, &["dataset", "import", "qa", "--file", &path(&file)]).await;
    let args = ["eval", "run", "qa", "--route", "fake-model", "--evaluators", &path(&evaluators), "--concurrency", "1"];
    let (code, stdout, _) = ctl(&daemon, &args).await;
    assert_eq!(code, 1, "the third item is refused by the budget: {stdout}");
    let verdict = last_line(&stdout);
    assert!(verdict.starts_with("ERROR: could not run: 1 of 3 items failed"), "{verdict}");
    assert!(verdict.contains("HTTP 429") && verdict.contains("two-a-day"), "{verdict}");
    assert_eq!(upstream.stats().requests, 2, "the refused item reached no engine");
}
