//! The feedback service over a real recorder and store: scores on stored, unwritten and running traces, the
//! tenant check, the per-trace limit, privacy mode and the metrics they feed.
use super::*;
use crate::alerts::AlertManager;
use crate::drift::DriftConfig;
use crate::telemetry::LocalPrices;
use crate::trace::{RecorderSettings, ScoreSource, Trace, TraceStatus, WriterHandle, MAX_SCORES_PER_TRACE};

struct Fixture {
    _dir: tempfile::TempDir,
    recorder: Recorder,
    writer: Option<WriterHandle>,
    telemetry: Arc<Telemetry>,
    feedback: Feedback,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.shutdown();
        }
    }
}

fn fixture(hash_content: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traces.db");
    let settings =
        RecorderSettings { queue_capacity: 1000, batch_size: 64, hash_content, retention_days: 0, max_traces: 0 };
    let (recorder, writer) = Recorder::start(Store::open(&path).expect("open"), settings).expect("recorder");
    let reader = Arc::new(Mutex::new(Store::open(&path).expect("reader")));
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(1), Duration::from_secs(60), LocalPrices::default()));
    let alerts = AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("alerts");
    let drift = DriftMonitor::start(DriftConfig { enabled: false, ..DriftConfig::default() }, alerts);
    let feedback = Feedback::new(recorder.clone(), reader, telemetry.clone(), drift, hash_content);
    Fixture { _dir: dir, recorder, writer: Some(writer), telemetry, feedback }
}

fn trace(tenant: &str) -> Trace {
    Trace {
        id: uuid::Uuid::now_v7().to_string(),
        route: "chat".into(),
        model_served: "m".into(),
        prompt_id: "support".into(),
        prompt_version: "3".into(),
        tenant: tenant.into(),
        status: TraceStatus::Ok,
        ..Trace::default()
    }
}

fn thumbs(trace_id: &str, passed: bool) -> NewScore {
    NewScore {
        trace_id: trace_id.into(),
        name: "thumbs".into(),
        value: ScoreValue::Passed(passed),
        comment: "the answer quoted the prompt".into(),
        source: ScoreSource::Human,
    }
}

/// Waits until the writer has stored `id` (it writes within its gather window).
async fn stored(fixture: &Fixture, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !matches!(fixture.recorder.locate(id), Located::Elsewhere) {
        assert!(tokio::time::Instant::now() < deadline, "trace {id} not written within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_score_on_a_stored_trace_is_listed_and_counted() {
    let f = fixture(false);
    let t = trace("acme");
    f.recorder.finished(t.clone());
    stored(&f, &t.id).await;
    let score = f.feedback.add(thumbs(&t.id, true), Some("acme")).await.expect("added");
    assert_eq!((score.trace_id.as_str(), score.comment.as_str()), (t.id.as_str(), "the answer quoted the prompt"));
    let number = NewScore { name: "quality".into(), value: ScoreValue::Number(0.5), ..thumbs(&t.id, true) };
    f.feedback.add(number, None).await.expect("the operator scores any tenant's trace");
    let listed = f.feedback.list(&t.id).await.expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], score);
    let metrics = f.telemetry.scores.snapshot();
    let thumbs_row = metrics.iter().find(|r| r.name == "thumbs").expect("counted");
    assert_eq!(
        (thumbs_row.route.as_str(), thumbs_row.prompt_id.as_str(), thumbs_row.prompt_version.as_str()),
        ("chat", "support", "3")
    );
    assert_eq!(thumbs_row.pass_rate(), Some(1.0));
}

#[tokio::test]
async fn unknown_traces_and_other_tenants_traces_are_not_found() {
    let f = fixture(false);
    let missing = uuid::Uuid::now_v7().to_string();
    for id in [missing.as_str(), "not-a-uuid"] {
        assert_eq!(f.feedback.add(thumbs(id, true), None).await, Err(FeedbackError::UnknownTrace(id.into())));
        assert_eq!(f.feedback.list(id).await, Err(FeedbackError::UnknownTrace(id.into())));
    }
    let t = trace("acme");
    f.recorder.finished(t.clone());
    let other = f.feedback.add(thumbs(&t.id, true), Some("globex")).await;
    assert_eq!(other, Err(FeedbackError::UnknownTrace(t.id.clone())), "another tenant's trace reads as unknown");
    assert_eq!(f.feedback.list(&t.id).await, Ok(Vec::new()), "a known trace without scores lists none");
}

#[tokio::test]
async fn a_score_for_a_running_request_waits_for_it_to_end() {
    let f = fixture(false);
    let mut t = trace("acme");
    f.recorder.started(&t);
    let recorder = f.recorder.clone();
    let id = t.id.clone();
    let finisher = tokio::spawn(async move {
        // Ends once the score is waiting on it (it subscribed), or after a while regardless.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while recorder.viewers() == 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        t.route = "chat-late".into();
        recorder.finished(t);
    });
    let score = f.feedback.add(thumbs(&id, false), Some("acme")).await.expect("added once the request ended");
    finisher.await.expect("finisher");
    assert_eq!(score.trace_id, id);
    assert!(f.telemetry.scores.snapshot().iter().any(|r| r.route == "chat-late"), "counted under its final route");
}

#[tokio::test]
async fn a_trace_takes_at_most_the_limit_and_privacy_mode_drops_comments() {
    let f = fixture(true);
    let t = trace("acme");
    f.recorder.finished(t.clone());
    for _ in 0..MAX_SCORES_PER_TRACE {
        let score = f.feedback.add(thumbs(&t.id, true), None).await.expect("under the limit");
        assert_eq!(score.comment, "", "privacy mode keeps no comment");
    }
    let over = f.feedback.add(thumbs(&t.id, true), None).await;
    assert!(matches!(&over, Err(FeedbackError::TooMany(message)) if message.contains("100 scores")), "{over:?}");
    assert_eq!(f.feedback.list(&t.id).await.expect("listed").len() as u64, MAX_SCORES_PER_TRACE);
}

#[tokio::test]
async fn a_malformed_score_is_refused_before_anything_is_looked_up() {
    let f = fixture(false);
    let bad = NewScore { name: String::new(), ..thumbs("whatever", true) };
    assert!(
        matches!(f.feedback.add(bad, None).await, Err(FeedbackError::Invalid(Invalid { param: Some(p), .. })) if p == "name")
    );
}

#[test]
fn score_json_has_the_kind_and_a_typed_value() {
    let score = Score {
        id: "s".into(),
        trace_id: "t".into(),
        name: "quality".into(),
        value: ScoreValue::Number(0.5),
        comment: String::new(),
        source: ScoreSource::Llm,
        created_at_unix_ms: 7,
    };
    let json = score_json(&score);
    assert_eq!(
        (json["kind"].as_str(), json["value"].as_f64(), json["source"].as_str()),
        (Some("number"), Some(0.5), Some("llm"))
    );
    let passed = score_json(&Score { value: ScoreValue::Passed(true), ..score });
    assert_eq!((passed["kind"].as_str(), passed["value"].as_bool()), (Some("boolean"), Some(true)));
}
