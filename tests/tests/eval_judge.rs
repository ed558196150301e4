//! End to end: LLM judges on the real embedded model (the default SmolLM2 from the PyPI wheel), judging fake
//! upstreams' answers through the real llmopsd: a verdict per item (reasoning, pass, score) from constrained
//! JSON at temperature 0 with a fixed seed, a pairwise judgement in both orders against a second route, the
//! judge's tokens counted and its requests recorded as traces tagged `eval_role=judge`. A 135M model is no
//! judge of quality, so the tests hold it to the contract (well-formed verdicts, consistent exit status),
//! not to its opinions.
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_embedded_model_judges_each_answer_and_compares_two_routes_in_both_orders() {
    let echo = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let words = FakeUpstream::start(Behavior { reply_words: Some(3), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.local]\nkind = \"embedded\"\nmodel = \"smollm2-135m-instruct\"\nthreads = 2\n\n\
         [engines.echo]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"echo-model\"]\n\n\
         [engines.words]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"words-model\"]\n",
        echo.base_url(),
        words.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let ready = wait_until(READY, || async {
        http.get(daemon.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "the embedded engine did not become ready\n{}", daemon.log_tail(40));

    let items = [("What is the capital of France?", "Paris"), ("What is 2 + 2?", "4")]
        .iter()
        .map(|(q, a)| json!({"messages": [{"role": "user", "content": q}], "reference": a}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.path().join("items.jsonl");
    std::fs::write(&file, items).expect("write items");
    let evaluators = dir.path().join("judges.json");
    let judges = json!([
        {"type": "judge", "rubric": "Does the answer give the reference answer?", "threshold": 0},
        {"type": "pairwise", "rubric": "Which answer answers the question better?"}
    ]);
    std::fs::write(&evaluators, judges.to_string()).expect("write evaluators");
    let jsonl = dir.path().join("results.jsonl");
    let path = |p: &std::path::Path| p.to_str().expect("path").to_owned();
    let import = daemon.llmopsctl_async(&["dataset", "import", "qa", "--file", &path(&file)]).await.expect("runs");
    assert!(import.status.success(), "{import:?}");
    let args = [
        "eval",
        "run",
        "qa",
        "--route",
        "echo-model",
        "--against",
        "words-model",
        "--evaluators",
        &path(&evaluators),
        "--jsonl",
        &path(&jsonl),
        "--concurrency",
        "1",
    ];
    let output = daemon.llmopsctl_async(&args).await.expect("llmopsctl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict = stdout.trim_end().lines().last().unwrap_or_default().to_owned();
    // The printed verdict and the exit status agree, whatever the judge preferred.
    match output.status.code() {
        Some(0) => assert!(verdict.starts_with("PASS"), "{stdout}"),
        Some(100) => assert!(verdict.starts_with("FAIL"), "{stdout}"),
        other => {
            panic!("exit {other:?}: {stdout}\n{}\n{}", String::from_utf8_lossy(&output.stderr), daemon.log_tail(30))
        }
    }
    assert!(stdout.contains("compared with route:words-model: 2 paired"), "{stdout}");

    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let (items, run) = lines.split_at(lines.len() - 1);
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["error"], "", "{item}");
        assert_eq!(item["against_output"], "w1 w2 w3", "{item}");
        let judged = &item["results"][0];
        assert_eq!(judged["name"], "judge", "{item}");
        let score = judged["score"].as_f64().expect("score");
        assert!((0.0..=1.0).contains(&score), "{item}");
        assert!(judged["reasoning"].as_str().is_some_and(|r| !r.trim().is_empty()), "a verdict with reasoning: {item}");
        assert!(["win", "tie", "loss"].contains(&item["pairwise"].as_str().unwrap_or_default()), "{item}");
        assert!(item["pairwise_reasoning"].as_str().is_some_and(|r| r.contains("shown second")), "{item}");
    }
    let run = &run[0];
    assert!(run["judge_input_tokens"].as_u64().unwrap_or(0) > 100, "{run}");
    assert!(run["judge_output_tokens"].as_u64().unwrap_or(0) > 10, "{run}");

    // The judge's requests are traces of the embedded route, tagged with the run and their role: per item one
    // verdict on each answer (the candidate's and the against route's) and the pairwise judgement twice.
    let channel = daemon.grpc_channel().await.expect("grpc");
    let judged = || async {
        let mut traces = pb::trace_service_client::TraceServiceClient::new(channel.clone());
        let request = pb::ListTracesRequest { route: "smollm2-135m-instruct".into(), limit: 100, ..Default::default() };
        let listed = traces.list_traces(request).await.expect("list").into_inner().traces;
        listed.into_iter().filter(|t| t.tags.get("eval_role").map(String::as_str) == Some("judge")).collect::<Vec<_>>()
    };
    // The last of them may still be on its way to the store.
    wait_until(Duration::from_secs(10), || async { judged().await.len() >= 8 }).await;
    let judged = judged().await;
    assert_eq!(judged.len(), 8, "{:?}", judged.iter().map(|t| &t.tags).collect::<Vec<_>>());
    assert!(judged.iter().all(|t| t.tags.get("eval_run").map(String::as_str) == run["id"].as_str()));
}
