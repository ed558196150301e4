//! The evaluation store and items: bounds on hostile input, items from traces, runs kept and cancelled.
use super::item::NewItem;
use super::store::{EvalStore, RunRecord, RunStatus, StoredResult};
use super::{limits, Dataset, EvalError};
use crate::trace::{Trace, TraceStatus};

fn store() -> (tempfile::TempDir, EvalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EvalStore::open(&dir.path().join("state.db")).expect("open");
    (dir, store)
}

fn dataset(name: &str) -> Dataset {
    Dataset { name: name.into(), route: "chat".into(), ..Dataset::default() }
}

fn item(text: &str) -> NewItem {
    NewItem::from_json(&format!(r#"{{"messages":[{{"role":"user","content":"{text}"}}],"reference":"ok"}}"#))
        .expect("item")
}

#[test]
fn items_round_trip_in_order_and_traces_are_not_added_twice() {
    let (_dir, mut store) = store();
    store.create_dataset(&dataset("qa"), false).expect("create");
    assert!(matches!(store.create_dataset(&dataset("qa"), false), Err(EvalError::DatasetExists(_))));
    let mut from_trace = item("c");
    from_trace.source_trace_id = "t1".into();
    let (added, skipped) = store.add_items("qa", &[item("a"), item("b"), from_trace.clone()]).expect("add");
    assert_eq!((added, skipped.len()), (3, 0));
    let (added, skipped) = store.add_items("qa", &[from_trace]).expect("again");
    assert_eq!((added, skipped), (0, vec!["t1".to_string()]));
    let items = store.items("qa", 1, 10).expect("items");
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(items[1].item.source_trace_id, "t1");
    assert_eq!(store.dataset("qa").expect("get").expect("exists").items, 3);
    assert!(matches!(store.add_items("nope", &[item("a")]), Err(EvalError::NoSuchDataset(_))));
    assert_eq!(store.delete_dataset("qa").expect("delete"), 3);
}

#[test]
fn hostile_items_are_refused_naming_the_rule() {
    let refused = |json: &str| NewItem::from_json(json).expect_err(json).to_string();
    assert!(refused(r#"{"messages":[]}"#).contains("needs messages"));
    assert!(NewItem::from_json(r#"{"variables":{"topic":"tea"}}"#).is_ok(), "a prompt brings the messages");
    assert!(refused(r#"{"messages":[{"content":"x"}]}"#).contains("messages[0]"));
    assert!(refused(r#"{"messages":[{"role":"user"}],"nope":1}"#).contains("nope"));
    assert!(refused(r#"{"messages":[{"role":"user"}],"variables":{"a":1}}"#).contains("variables.a"));
    assert!(refused(r#"{"messages":[{"role":"user"}],"parameters":{"model":"x"}}"#).contains("parameters.model"));
    assert!(refused(r#"{"messages":[{"role":"user"}],"prompt":"a b"}"#).contains("prompt"));
    let big = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(limits::MAX_ITEM_BYTES));
    assert!(refused(&big).contains("at most"));
    let many: Vec<String> = (0..=limits::MAX_MESSAGES_PER_ITEM).map(|_| r#"{"role":"user"}"#.to_string()).collect();
    assert!(refused(&format!(r#"{{"messages":[{}]}}"#, many.join(","))).contains("messages"));
}

#[test]
fn a_dataset_has_a_bounded_number_of_items() {
    let (_dir, mut store) = store();
    store.create_dataset(&dataset("big"), false).expect("create");
    let batch: Vec<NewItem> = (0..limits::MAX_ITEMS_PER_ADD).map(|i| item(&i.to_string())).collect();
    for _ in 0..limits::MAX_ITEMS_PER_DATASET / limits::MAX_ITEMS_PER_ADD {
        store.add_items("big", &batch).expect("within the bound");
    }
    let full = store.add_items("big", &[item("one more")]).expect_err("full");
    assert!(matches!(full, EvalError::Full(_)), "{full}");
}

#[test]
fn an_item_from_a_trace_keeps_prompt_variables_and_parameters_and_refuses_what_it_cannot_use() {
    let trace = Trace {
        id: "t9".into(),
        endpoint: "chat.completions".into(),
        status: TraceStatus::Ok,
        route: "chat".into(),
        request_json: r#"{"model":"chat","stream":true,"temperature":0.2,"messages":[{"role":"user","content":"hi"}],
            "metadata":{"prompt":"support@production","variables":"{\"who\":\"ana\"}","env":"prod"}}"#
            .into(),
        response_text: "Hello Ana".into(),
        ..Trace::default()
    };
    let item = NewItem::from_trace(&trace).expect("item");
    assert_eq!(item.reference, "Hello Ana");
    assert_eq!(item.prompt, "support@production");
    assert_eq!(item.variables["who"], "ana");
    assert_eq!(item.parameters.keys().collect::<Vec<_>>(), vec!["temperature"]);
    assert_eq!(item.source_trace_id, "t9");
    let mut failed = trace.clone();
    failed.status = TraceStatus::Error;
    assert!(NewItem::from_trace(&failed).expect_err("failed").contains("did not succeed"));
    let mut private = trace.clone();
    private.request_json.clear();
    assert!(NewItem::from_trace(&private).expect_err("private").contains("privacy"));
    let mut embeddings = trace;
    embeddings.endpoint = "embeddings".into();
    assert!(NewItem::from_trace(&embeddings).expect_err("embeddings").contains("not a chat completion"));
}

#[test]
fn runs_are_stored_with_results_and_a_run_left_running_is_cancelled_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let mut store = EvalStore::open(&path).expect("open");
    let mut run = RunRecord { dataset: "qa".into(), ..RunRecord::default() };
    store.insert_run(&mut run).expect("insert");
    assert_eq!(run.id, "run-1");
    let result = StoredResult { item_id: 2, output: "x".into(), passed: true, score: 1.0, ..StoredResult::default() };
    store.save_result(1, &result).expect("result");
    assert_eq!(store.results("run-1").expect("results"), vec![result]);
    assert!(matches!(store.run("run-2"), Err(EvalError::NoSuchRun(_))));
    assert!(matches!(store.run("../etc"), Err(EvalError::NoSuchRun(_))));
    drop(store);
    let store = EvalStore::open(&path).expect("reopen");
    let run = store.run("run-1").expect("run");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(run.verdict.contains("daemon stopped"), "{}", run.verdict);
    assert_eq!(store.runs("", 10).expect("runs").len(), 1);
    assert_eq!(store.runs("other", 10).expect("runs").len(), 0);
}

#[test]
fn stored_runs_keep_one_flat_comparison_and_pairwise_outcomes_as_words() {
    use super::evaluate::judge::PairOutcome;
    use super::evaluate::stats::Comparison;
    use super::store::ComparisonRecord;
    let record =
        ComparisonRecord { baseline: "run-1".into(), comparison: Comparison { wins: 2, ..Comparison::default() } };
    let json = serde_json::to_value(&record).expect("json");
    assert_eq!((json["baseline"].as_str(), json["wins"].as_u64()), (Some("run-1"), Some(2)), "{json}");
    assert_eq!(serde_json::from_value::<ComparisonRecord>(json).expect("back"), record);
    let result = StoredResult { pairwise: Some(PairOutcome::Loss), ..StoredResult::default() };
    assert_eq!(serde_json::to_value(&result).expect("json")["pairwise"], "loss");
}
