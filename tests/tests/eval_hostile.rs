//! Hostile input to the evaluation API, over gRPC as any script could send it: names, sizes and counts past
//! their bounds are refused naming the bound, pages stay bounded, at most four runs go on at once, and a run
//! whose client goes away is cancelled at once (its requests in flight dropped) and stored as cancelled.
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use pb::eval_service_client::EvalServiceClient;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

async fn start(behavior: Behavior) -> (tempfile::TempDir, FakeUpstream, Daemon, EvalServiceClient<Channel>) {
    let upstream = FakeUpstream::start(behavior).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let client = EvalServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    (dir, upstream, daemon, client)
}

fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{:?} should say {says:?}", status.message());
    assert!(status.message().len() < 1024, "refusals stay short: {} bytes", status.message().len());
}

fn item(text: &str) -> String {
    serde_json::json!({"messages": [{"role": "user", "content": text}], "reference": text}).to_string()
}

fn create(name: &str) -> pb::CreateDatasetRequest {
    pb::CreateDatasetRequest { name: name.into(), route: "fake-model".into(), ..Default::default() }
}

#[tokio::test]
async fn names_sizes_and_counts_past_their_bounds_are_refused_by_name() {
    let (_dir, _upstream, _daemon, mut evals) = start(Behavior::default()).await;
    refused(evals.create_dataset(create("../etc")).await, Code::InvalidArgument, "dataset name");
    refused(evals.create_dataset(create(&"d".repeat(65))).await, Code::InvalidArgument, "1 to 64 bytes");
    let long = pb::CreateDatasetRequest { description: "x".repeat(2000), ..create("qa") };
    refused(evals.create_dataset(long).await, Code::InvalidArgument, "description");
    let huge = format!("[{}]", vec![r#"{"type":"exact"}"#; 20_000].join(","));
    let evaluators = pb::CreateDatasetRequest { evaluators_json: huge, ..create("qa") };
    refused(evals.create_dataset(evaluators).await, Code::InvalidArgument, "evaluators");
    let route = pb::CreateDatasetRequest { route: "chat\u{1b}[2J".into(), ..create("qa") };
    refused(evals.create_dataset(route).await, Code::InvalidArgument, "route");
    let get = pb::GetDatasetRequest { name: "nope".into(), ..Default::default() };
    refused(evals.get_dataset(get).await, Code::NotFound, "no dataset named `nope`");
    refused(evals.delete_dataset(pb::DeleteDatasetRequest { name: "nope".into() }).await, Code::NotFound, "nope");
    evals.create_dataset(create("qa")).await.expect("a good one");
    refused(evals.create_dataset(create("qa")).await, Code::AlreadyExists, "already exists");

    let add = |items: Vec<String>| pb::AddDatasetItemsRequest {
        dataset: "qa".into(),
        items_jsonl: items,
        ..Default::default()
    };
    refused(evals.add_dataset_items(add(vec![item("x"); 1001])).await, Code::InvalidArgument, "at most 1000");
    refused(evals.add_dataset_items(add(vec![item(&"x".repeat(300_000))])).await, Code::InvalidArgument, "bytes");
    refused(evals.add_dataset_items(add(vec!["[1,2]".into()])).await, Code::InvalidArgument, "items_jsonl[0]");
    let ids =
        pb::AddDatasetItemsRequest { dataset: "qa".into(), trace_ids: vec!["t".repeat(200)], ..Default::default() };
    refused(evals.add_dataset_items(ids).await, Code::InvalidArgument, "trace id");
    let query = pb::ListTracesRequest { limit: 5000, ..Default::default() };
    let by_query = pb::AddDatasetItemsRequest { dataset: "qa".into(), query: Some(query), ..Default::default() };
    refused(evals.add_dataset_items(by_query).await, Code::InvalidArgument, "query.limit");

    // A page is at most 1000 items, whatever is asked.
    evals.add_dataset_items(add(vec![item("a"); 1000])).await.expect("1000 items");
    evals.add_dataset_items(add(vec![item("b")])).await.expect("one more");
    let page = pb::GetDatasetRequest { name: "qa".into(), offset: 0, limit: u32::MAX };
    let page = evals.get_dataset(page).await.expect("page").into_inner();
    assert_eq!((page.items.len(), page.next_offset), (1000, 1000));

    let run = |f: fn(&mut pb::RunEvalRequest)| {
        let mut request = pb::RunEvalRequest {
            dataset: "qa".into(),
            evaluators_json: r#"[{"type":"contains"}]"#.into(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    refused(evals.run_eval(run(|r| r.concurrency = 33)).await, Code::InvalidArgument, "at most 32");
    refused(evals.run_eval(run(|r| r.route = "nope".into())).await, Code::InvalidArgument, "no route named \"nope\"");
    refused(evals.run_eval(run(|r| r.against_route = "nope".into())).await, Code::InvalidArgument, "no route named");
    refused(evals.run_eval(run(|r| r.judge_route = "nope".into())).await, Code::InvalidArgument, "no route named");
    refused(
        evals.run_eval(run(|r| (r.against_route, r.baseline_run) = ("fake-model".into(), "run-1".into()))).await,
        Code::InvalidArgument,
        "not both",
    );
    refused(evals.run_eval(run(|r| r.parameters_json = "[1]".into())).await, Code::InvalidArgument, "JSON object");
    refused(
        evals.run_eval(run(|r| r.parameters_json = r#"{"model":"x"}"#.into())).await,
        Code::InvalidArgument,
        "model",
    );
    refused(evals.run_eval(run(|r| r.evaluators_json = "[]".into())).await, Code::InvalidArgument, "no evaluators");
    refused(evals.run_eval(run(|r| r.prompt = "a b".into())).await, Code::InvalidArgument, "prompt");
    refused(evals.run_eval(run(|r| r.by = "\u{1b}[2J".into())).await, Code::InvalidArgument, "control");
    refused(
        evals.run_eval(run(|r| r.evaluators_json = r#"[{"type":"pairwise","rubric":"r"}]"#.into())).await,
        Code::InvalidArgument,
        "--against",
    );
    for id in ["run-0", "run--1", "x", &"run-9".repeat(5000)] {
        let request = pb::GetEvalRunRequest { id: id.to_string(), ..Default::default() };
        refused(evals.get_eval_run(request).await, Code::NotFound, "no evaluation run");
    }
}

#[tokio::test]
async fn four_runs_at_most_and_a_client_that_leaves_cancels_its_run() {
    // Answers take long enough that the runs are still going when the fifth is asked for.
    let slow = Behavior { first_token_delay_ms: 60_000, ..Behavior::default() };
    let (_dir, upstream, _daemon, mut evals) = start(slow).await;
    evals.create_dataset(create("qa")).await.expect("dataset");
    let add = pb::AddDatasetItemsRequest { dataset: "qa".into(), items_jsonl: vec![item("a")], ..Default::default() };
    evals.add_dataset_items(add).await.expect("item");
    let request = pb::RunEvalRequest {
        dataset: "qa".into(),
        evaluators_json: r#"[{"type":"contains"}]"#.into(),
        ..Default::default()
    };
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = evals.run_eval(request.clone()).await.expect("a run").into_inner();
        let started = stream.message().await.expect("event").and_then(|e| e.event);
        assert!(matches!(started, Some(pb::eval_event::Event::Started(_))), "{started:?}");
        streams.push(stream);
    }
    refused(evals.run_eval(request.clone()).await, Code::FailedPrecondition, "4 evaluation runs are going on");
    let in_flight = || async { upstream.stats().requests };
    assert!(wait_until(Duration::from_secs(10), || async { in_flight().await >= 4 }).await);

    // The clients go away: every run ends as cancelled, long before its answers would have come.
    drop(streams);
    let cancelled = wait_until(Duration::from_secs(10), || {
        let mut evals = evals.clone();
        async move {
            let runs = evals.list_eval_runs(pb::ListEvalRunsRequest::default()).await.expect("list").into_inner().runs;
            // A listing (polled by the console) leaves the bulky fields to GetEvalRun.
            assert!(runs.iter().all(|r| r.evaluators_json.is_empty() && r.dataset == "qa"), "{runs:?}");
            runs.len() == 4 && runs.iter().all(|r| r.status == pb::EvalStatus::Cancelled as i32)
        }
    })
    .await;
    assert!(cancelled, "the runs were not cancelled");
    // ...which frees their places.
    let mut stream = evals.run_eval(request).await.expect("a place again").into_inner();
    assert!(stream.message().await.expect("event").is_some());
}

#[tokio::test]
async fn a_label_move_is_gated_only_by_a_finished_run_of_that_very_version() {
    let (_dir, _upstream, daemon, mut evals) = start(Behavior::default()).await;
    let mut prompts = pb::prompt_service_client::PromptServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    for text in ["Say {{ topic }}.", "Tell {{ topic }}."] {
        let message = pb::PromptMessage { role: "user".into(), content: text.into() };
        let push = pb::PushPromptRequest { name: "p".into(), messages: vec![message], ..Default::default() };
        prompts.push_prompt(push).await.expect("push");
    }
    evals.create_dataset(create("qa")).await.expect("dataset");
    let item = serde_json::json!({"variables": {"topic": "tea"}, "reference": "tea"}).to_string();
    let add = pb::AddDatasetItemsRequest { dataset: "qa".into(), items_jsonl: vec![item], ..Default::default() };
    evals.add_dataset_items(add).await.expect("item");
    let run = pb::RunEvalRequest {
        dataset: "qa".into(),
        prompt: "p@1".into(),
        evaluators_json: r#"[{"type":"contains"}]"#.into(),
        ..Default::default()
    };
    let mut stream = evals.run_eval(run).await.expect("run").into_inner();
    let mut finished = None;
    while let Some(event) = stream.message().await.expect("event") {
        if let Some(pb::eval_event::Event::Finished(run)) = event.event {
            finished = Some(run);
        }
    }
    let finished = finished.expect("finished");
    assert_eq!(finished.status, pb::EvalStatus::Passed as i32, "{finished:?}");

    let label = |version: u32, gate_run: &str, force: bool| pb::SetPromptLabelRequest {
        name: "p".into(),
        label: "production".into(),
        version,
        gate_run: gate_run.into(),
        force,
        ..Default::default()
    };
    refused(prompts.set_prompt_label(label(2, &finished.id, false)).await, Code::FailedPrecondition, "not p@2");
    refused(prompts.set_prompt_label(label(1, "run-999", false)).await, Code::FailedPrecondition, "run-999");
    refused(prompts.set_prompt_label(label(1, &"x".repeat(10_000), true)).await, Code::FailedPrecondition, "gate");
    refused(prompts.set_prompt_label(label(1, "", true)).await, Code::InvalidArgument, "force");
    let moved = prompts.set_prompt_label(label(1, &finished.id, false)).await.expect("gated by its own run");
    assert_eq!(moved.into_inner().version.map(|v| v.version), Some(1));
    let got = pb::GetPromptRequest { name: "p".into(), reference: "production".into(), history_limit: 1 };
    let history = prompts.get_prompt(got).await.expect("get").into_inner().history;
    assert_eq!((history[0].gate_run.as_str(), history[0].forced), (finished.id.as_str(), false));
}
