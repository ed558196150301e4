//! End to end: prompts pushed, labelled, shown and diffed with the real llmopsctl against the real llmopsd,
//! resolved by its gateway in front of the fake upstream (which keeps the body it received, so the rendered
//! messages can be checked where they arrive). A label move applies to the very next request, and each trace
//! names the prompt, version and content hash it was rendered from; bad refs and missing variables are 400s
//! that say which.
use std::path::PathBuf;

use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use serde_json::{json, Value};

const V1: &str = r#"
[[messages]]
role = "system"
content = "You are the support assistant of {{ company }}."

[[messages]]
role = "user"
content = "Question: {{ question }}"
"#;

const V2: &str = r#"{
  "model": "fake-model",
  "parameters": {"temperature": 0.25, "max_tokens": 12},
  "messages": [
    {"role": "system", "content": "You answer for {{ company | upper }}, briefly."},
    {"role": "user", "content": "Question: {{ question }}"}
  ]
}"#;

async fn start() -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write prompt file");
    path
}

/// llmopsctl's stdout; it must have succeeded.
async fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "llmopsctl {args:?} failed: {stderr}\n{}", daemon.log_tail(20));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// llmopsctl's stderr; it must have exited 1.
async fn ctl_refused(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    assert_eq!(output.status.code(), Some(1), "llmopsctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A chat request: status, trace id and body.
async fn chat(daemon: &Daemon, body: &Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut request = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /v1/chat/completions");
    let status = response.status().as_u16();
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, id, response.json().await.expect("JSON body"))
}

fn asking(prompt: &str, variables: Value) -> Value {
    json!({
        "model": "fake-model",
        "messages": [{"role": "user", "content": "Where is my order?"}],
        "metadata": {"prompt": prompt, "variables": variables, "team": "web"},
    })
}

async fn trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The content hash of a version, as `prompts show --json` reports it.
async fn sha_of(daemon: &Daemon, reference: &str) -> String {
    let shown: Value =
        serde_json::from_str(&ctl(daemon, &["prompts", "show", reference, "--json"]).await).expect("JSON");
    shown["version"]["sha256"].as_str().expect("sha256").to_owned()
}

#[tokio::test]
async fn a_label_move_applies_to_the_next_request_and_each_trace_names_its_version() {
    let (dir, upstream, daemon) = start().await;
    let (v1, v2) = (write(&dir, "v1.toml", V1), write(&dir, "v2.json", V2));
    let pushed =
        ctl(&daemon, &["prompts", "push", "support", "--file", v1.to_str().expect("path"), "--by", "tester"]).await;
    assert!(pushed.starts_with("pushed support@1 (sha256 "), "{pushed}");
    let pushed =
        ctl(&daemon, &["prompts", "push", "support", "--file", v2.to_str().expect("path"), "--by", "tester"]).await;
    assert!(pushed.starts_with("pushed support@2"), "{pushed}");
    let again = ctl(&daemon, &["prompts", "push", "support", "--file", v2.to_str().expect("path")]).await;
    assert!(again.starts_with("unchanged: support@2"), "{again}");
    let labelled = ctl(&daemon, &["prompts", "label", "support", "1", "production", "--by", "tester"]).await;
    assert_eq!(labelled, "support: production -> 1 (new label)\n");
    let (sha1, sha2) = (sha_of(&daemon, "support@1").await, sha_of(&daemon, "support@2").await);
    assert_ne!(sha1, sha2);

    // production -> 1: version 1 is rendered before the client's message and reaches the engine.
    let variables = json!({"company": "Acme", "question": "refunds?"});
    let (status, id, _) = chat(&daemon, &asking("support@production", variables.clone()), &[]).await;
    assert_eq!(status, 200);
    let sent = upstream.stats().last_request;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are the support assistant of Acme."},
            {"role": "user", "content": "Question: refunds?"},
            {"role": "user", "content": "Where is my order?"},
        ])
    );
    assert_eq!(sent["metadata"], json!({"team": "web"}), "the prompt's metadata is the gateway's, not forwarded");
    let first = trace(&daemon, &id).await;
    assert_eq!((first.prompt_id.as_str(), first.prompt_version.as_str()), ("support", "1"));
    assert_eq!(first.prompt_hash, sha1);
    assert!(first.prompt_text.starts_with("system: You are the support assistant of Acme."), "{}", first.prompt_text);

    // The label moves; the very next request renders version 2, with its default parameters.
    let moved = ctl(&daemon, &["prompts", "label", "support", "2", "production", "--by", "tester"]).await;
    assert_eq!(moved, "support: production 1 -> 2\n");
    let (status, id, _) = chat(&daemon, &asking("support@production", variables.clone()), &[]).await;
    assert_eq!(status, 200);
    let sent = upstream.stats().last_request;
    assert_eq!(sent["messages"][0]["content"], "You answer for ACME, briefly.");
    assert_eq!((sent["temperature"].clone(), sent["max_tokens"].clone()), (json!(0.25), json!(12)));
    let second = trace(&daemon, &id).await;
    assert_eq!((second.prompt_version.as_str(), second.prompt_hash.as_str()), ("2", sha2.as_str()));

    // Headers name a prompt too (variables as JSON); a bare name is `production`, and version 2 brings its model.
    let headers =
        [("x-llmops-prompt", "support@1"), ("x-llmops-prompt-variables", r#"{"company":"Hdr","question":"q"}"#)];
    let (status, id, _) = chat(&daemon, &json!({"model": "fake-model", "messages": []}), &headers).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.stats().last_request["messages"][0]["content"], "You are the support assistant of Hdr.");
    assert_eq!(trace(&daemon, &id).await.prompt_version, "1");
    let no_model = json!({"messages": [], "metadata": {"prompt": "support", "variables": variables.to_string()}});
    let (status, id, _) = chat(&daemon, &no_model, &[]).await;
    assert_eq!(status, 200, "variables as a JSON string, the model from version 2");
    assert_eq!(trace(&daemon, &id).await.route, "fake-model");

    // What it cannot render is a 400 that says which; the trace still names the prompt.
    let requests_before = upstream.stats().requests;
    let (status, id, error) = chat(&daemon, &asking("support@production", json!({"company": "Acme"})), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "metadata.variables");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("missing variable `question`"), "{message}");
    let refused = trace(&daemon, &id).await;
    assert_eq!((refused.status, refused.prompt_id.as_str()), (pb::TraceStatus::Rejected as i32, "support"));
    for (prompt, expected) in [
        ("nope@production", "no prompt named `nope`"),
        ("support@staging", "no label `staging`"),
        ("support@7", "no version 7"),
        ("support@", "not a version number"),
    ] {
        let (status, _, error) = chat(&daemon, &asking(prompt, variables.clone()), &[]).await;
        assert_eq!(status, 400, "{prompt}");
        assert_eq!(error["error"]["param"], "metadata.prompt", "{prompt}");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{prompt}: {message}");
    }
    assert_eq!(upstream.stats().requests, requests_before, "no refused request reached the engine");

    // diff, show (with the audit) and list.
    let diff = ctl(&daemon, &["prompts", "diff", "support", "1", "production"]).await;
    assert!(diff.starts_with("--- support@1\n+++ support@2\n@@"), "{diff}");
    assert!(diff.contains("\n-You are the support assistant of {{ company }}.\n"), "{diff}");
    assert!(diff.contains("\n+You answer for {{ company | upper }}, briefly.\n"), "{diff}");
    assert!(diff.contains("\n+model = \"fake-model\"\n"), "{diff}");
    let identical = ctl(&daemon, &["prompts", "diff", "support", "2", "latest"]).await;
    assert_eq!(identical, "support@2 and support@2 are identical\n");
    let shown = ctl(&daemon, &["prompts", "show", "support@production"]).await;
    assert!(shown.starts_with("prompt      support@2\nlabels      production\n"), "{shown}");
    assert!(shown.contains("variables   company, question\n"), "{shown}");
    assert!(shown.contains("[1 system]\nYou answer for {{ company | upper }}, briefly.\n"), "{shown}");
    let history: Vec<&str> = shown.split("HISTORY (newest first)\n").nth(1).expect("history").lines().collect();
    assert_eq!(history.len(), 5, "a header and four entries (the identical push added none): {history:?}");
    assert!(history[1].contains("label   production     1   2  tester (uid "), "{}", history[1]);
    assert!(history[2].contains("label   production     -   1  tester (uid "), "{}", history[2]);
    assert!(history[3].contains("push    -              1   2  tester (uid "), "{}", history[3]);
    assert!(history[4].contains("push    -              -   1  tester (uid "), "{}", history[4]);
    let listed = ctl(&daemon, &["prompts", "list"]).await;
    assert!(listed.contains("support") && listed.contains("production=2"), "{listed}");
    let as_json: Value = serde_json::from_str(&ctl(&daemon, &["prompts", "list", "--json"]).await).expect("JSON");
    assert_eq!(as_json["prompts"][0]["labels"], json!({"production": 2}));
}

#[tokio::test]
async fn hostile_pushes_and_labels_are_refused_by_name() {
    let (dir, _upstream, daemon) = start().await;
    let good = write(&dir, "good.toml", V1);
    let good = good.to_str().expect("path");
    let daemon = &daemon;
    let refused = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_refused(daemon, &args).await
    };
    let push = |name: &str, file: &str| {
        vec!["prompts".into(), "push".into(), name.to_owned(), "--file".into(), file.to_owned()]
    };

    let message = refused(push("bad name", good)).await;
    assert!(message.contains("prompt name \"bad name\" must be 1 to 64 bytes"), "{message}");
    let message = refused(push(&"n".repeat(65), good)).await;
    assert!(message.contains("1 to 64 bytes"), "{message}");
    let syntax = write(&dir, "syntax.toml", "[[messages]]\nrole = \"user\"\ncontent = \"{% if x %}open\"\n");
    let message = refused(push("support", syntax.to_str().expect("path"))).await;
    assert!(message.contains("message 1 (user): template error"), "{message}");
    let many = "[[messages]]\nrole = \"user\"\ncontent = \"x\"\n".repeat(33);
    let message = refused(push("support", write(&dir, "many.toml", &many).to_str().expect("path"))).await;
    assert!(message.contains("1 to 32 messages; this one has 33"), "{message}");
    let big = format!("[[messages]]\nrole = \"user\"\ncontent = \"{}\"\n", "x".repeat(70_000));
    let message = refused(push("support", write(&dir, "big.toml", &big).to_str().expect("path"))).await;
    assert!(message.contains("at most 65536 bytes"), "{message}");
    let reserved = "[parameters]\nstream = true\n[[messages]]\nrole = \"user\"\ncontent = \"x\"\n";
    let message = refused(push("support", write(&dir, "reserved.toml", reserved).to_str().expect("path"))).await;
    assert!(message.contains("parameter `stream` cannot be a prompt default"), "{message}");
    let typo = write(&dir, "typo.toml", "mesages = []\n");
    let message = refused(push("support", typo.to_str().expect("path"))).await;
    assert!(message.contains("unknown key `mesages`"), "{message}");

    ctl(daemon, &["prompts", "push", "support", "--file", good]).await;
    let label = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>();
    let message = refused(label(&["prompts", "label", "support", "1", "latest"])).await;
    assert!(message.contains("reserved"), "{message}");
    let message = refused(label(&["prompts", "label", "support", "3", "production"])).await;
    assert!(message.contains("no version 3 (its versions: 1 to 1)"), "{message}");
    let message = refused(label(&["prompts", "label", "nope", "1", "production"])).await;
    assert!(message.contains("no prompt named `nope`"), "{message}");
    let message = refused(label(&["prompts", "show", "support@staging"])).await;
    assert!(message.contains("no label `staging`"), "{message}");
    let message = refused(label(&["prompts", "diff", "support", "1", "9"])).await;
    assert!(message.contains("no version 9"), "{message}");
}
