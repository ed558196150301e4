//! Snapshots of the `llmops-top` evals view (5): the runs, one run's verdict, evaluators and items, and one
//! item's answer side by side with its reference or the against route's. As in `top_snapshots`, the snapshots
//! are the assertions; wall times are drawn in UTC. Daemon text with terminal escape sequences is shown escaped.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use llmops_proto::v1 as pb;
use llmops_tui::top::state::{App, EvalRunUi, Look, View};
use llmops_tui::top::ui::{draw_in, Hitmap, Zone};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

#[allow(dead_code)]
mod top_fixtures;

use top_fixtures::NOW;

const MINUTE: i64 = 60_000;

fn render(app: &App, width: u16, height: u16) -> (TestBackend, Hitmap) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    let mut hit = Hitmap::default();
    terminal.draw(|frame| hit = draw_in(frame, app, Zone::Utc)).expect("draw");
    (terminal.backend().clone(), hit)
}

fn screen(app: &App, width: u16, height: u16) -> TestBackend {
    render(app, width, height).0
}

fn evaluator(name: &str, kind: &str, passed: u32, scored: u32, threshold: f64) -> pb::EvaluatorSummary {
    let pass_rate = f64::from(passed) / f64::from(scored);
    let ok = pass_rate >= threshold;
    let (name, kind) = (name.into(), kind.into());
    pb::EvaluatorSummary { name, kind, passed, scored, pass_rate, mean_score: pass_rate - 0.04, threshold, ok }
}

fn eval_run(id: &str, status: pb::EvalStatus, minutes_ago: i64) -> pb::EvalRun {
    let started_at_unix_ms = NOW - minutes_ago * MINUTE;
    let finished = !matches!(status, pb::EvalStatus::Running);
    pb::EvalRun {
        id: id.into(),
        dataset: "support-qa".into(),
        route: "chat".into(),
        status: status as i32,
        verdict: "every threshold met".into(),
        items_total: 20,
        items_done: 20,
        items_passed: 18,
        evaluators: vec![evaluator("contains", "contains", 19, 20, 0.9), evaluator("judge", "judge", 18, 20, 0.8)],
        started_at_unix_ms,
        finished_at_unix_ms: if finished { started_at_unix_ms + 125_000 } else { 0 },
        by: "alice".into(),
        ..Default::default()
    }
}

/// Newest first: one running, one failed against a second route, one errored, one cancelled, one passed.
fn runs() -> Vec<pb::EvalRun> {
    let mut running = eval_run("run-12", pb::EvalStatus::Running, 1);
    (running.items_done, running.items_passed, running.verdict) = (7, 6, String::new());
    let mut failed = eval_run("run-11", pb::EvalStatus::Failed, 42);
    failed.prompt = "support@3".into();
    failed.against_route = "chat-70b".into();
    failed.items_passed = 12;
    failed.verdict = "judge: pass rate 60% under its threshold 80%; worse than route:chat-70b (mean -0.250)".into();
    failed.evaluators[1] = evaluator("judge", "judge", 12, 20, 0.8);
    failed.cost_usd = 0.0123;
    failed.comparison = Some(pb::EvalComparison {
        baseline: "route:chat-70b".into(),
        paired: 20,
        wins: 3,
        ties: 9,
        losses: 8,
        mean_difference: -0.25,
        ci_low: -0.46,
        ci_high: -0.04,
        ..Default::default()
    });
    let mut errored = eval_run("run-10", pb::EvalStatus::Error, 3 * 60);
    (errored.route, errored.items_passed, errored.items_errored) = ("gone".into(), 0, 20);
    errored.verdict = "20 items failed: no route \"gone\"".into();
    let mut cancelled = eval_run("run-9", pb::EvalStatus::Cancelled, 26 * 60);
    (cancelled.items_done, cancelled.items_passed) = (4, 4);
    let passed = eval_run("run-8", pb::EvalStatus::Passed, 3 * 24 * 60);
    vec![running, failed, errored, cancelled, passed]
}

fn result(name: &str, passed: bool, score: f64, reasoning: &str) -> pb::EvaluatorResult {
    pb::EvaluatorResult { name: name.into(), passed, score, reasoning: reasoning.into() }
}

fn items() -> Vec<pb::EvalItemResult> {
    let ok = |id: &str, input: &str| pb::EvalItemResult {
        item_id: id.into(),
        trace_id: format!("0190b5a8-0000-7000-8000-0000000001{id:0>2}"),
        output: "Paris.".into(),
        reference: "Paris.".into(),
        latency_ms: 640.0,
        cost_usd: 0.0004,
        passed: true,
        input_preview: input.into(),
        results: vec![result("contains", true, 1.0, ""), result("judge", true, 0.9, "Correct and concise.")],
        pairwise: pb::PairOutcome::Tie as i32,
        ..Default::default()
    };
    let mut worse = ok("2", "How do I reset my password?");
    worse.passed = false;
    worse.output = "Open Settings, then choose Reset password.\nA link is emailed to you.".into();
    worse.reference = "Open Settings, then Security, then choose Reset password.\nA link is emailed to you.".into();
    worse.against_trace_id = "0190b5a8-0000-7000-8000-000000000299".into();
    worse.against_output =
        "Open Settings, then Security, then choose Reset password.\nA reset link is emailed to you within a minute."
            .into();
    worse.results[1] =
        result("judge", false, 0.4, "The answer skips the Security step, so a user would not find the button.");
    worse.pairwise = pb::PairOutcome::Loss as i32;
    worse.pairwise_reasoning = "B names the Security step; A leaves it out. Both orders agree.".into();
    let mut error = ok("3", "Summarise this contract in one line");
    (error.passed, error.output, error.results) = (false, String::new(), Vec::new());
    error.error = "upstream timeout after 30 s".into();
    error.pairwise = 0;
    vec![ok("1", "What is the capital of France?"), worse, error, ok("4", "Translate 'good morning' into German")]
}

fn detail(run: pb::EvalRun) -> pb::EvalRunDetail {
    pb::EvalRunDetail { run: Some(run), items: items(), next_item_offset: 0 }
}

fn evals_app() -> App {
    let mut app = top_fixtures::app();
    app.view = View::Evals;
    app.evals.runs = Some(runs());
    app
}

/// The evals view with run-11 (the failed one) open, and item `item` open when given.
fn run_app(item: Option<usize>, scroll: u16) -> App {
    let mut app = evals_app();
    app.evals.selected = 1;
    let detail = Some(Ok(detail(runs()[1].clone())));
    app.evals.open = Some(EvalRunUi { run_id: "run-11".into(), detail, selected: item.unwrap_or(1), item, scroll });
    app
}

#[test]
fn evals_runs_view() {
    let (screen, hit) = render(&evals_app(), 120, 30);
    assert_eq!(hit.list.map(|l| (l.first_index, l.area.y)), Some((0, 3)), "clicks pick runs");
    insta::assert_snapshot!(screen);
}

#[test]
fn evals_runs_narrow() {
    let mut app = evals_app();
    app.evals.selected = 4;
    app.evals.error = Some("DEADLINE_EXCEEDED: the eval store is busy".into());
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn evals_waiting_empty_and_not_served() {
    let mut app = evals_app();
    app.evals.runs = None;
    insta::assert_snapshot!("evals_waiting", screen(&app, 80, 24));
    app.evals.runs = Some(Vec::new());
    insta::assert_snapshot!("evals_empty", screen(&app, 80, 24));
    app.evals.runs = None;
    app.hosts[0].unavailable.insert("evals", "UNIMPLEMENTED: unknown service llmops.v1.EvalService".into());
    insta::assert_snapshot!("evals_not_served", screen(&app, 80, 24));
}

#[test]
fn eval_run_detail() {
    let (screen, hit) = render(&run_app(None, 0), 100, 30);
    assert!(hit.list.is_some(), "clicks pick items");
    insta::assert_snapshot!(screen);
}

#[test]
fn eval_run_loading_and_failed() {
    let mut app = run_app(None, 0);
    if let Some(open) = app.evals.open.as_mut() {
        open.detail = None;
    }
    insta::assert_snapshot!("eval_run_loading", screen(&app, 80, 24));
    if let Some(open) = app.evals.open.as_mut() {
        open.detail = Some(Err("no eval run run-11".into()));
    }
    insta::assert_snapshot!("eval_run_failed", screen(&app, 80, 24));
}

#[test]
fn eval_item_against_route() {
    insta::assert_snapshot!(screen(&run_app(Some(1), 0), 100, 30));
}

#[test]
fn eval_item_against_reference_without_colour() {
    let mut app = run_app(Some(1), 0);
    app.look = Look { no_color: true, ascii: true };
    if let Some(Ok(detail)) = app.evals.open.as_mut().and_then(|o| o.detail.as_mut()) {
        detail.items[1].against_output.clear();
        detail.items[1].pairwise = 0;
    }
    let screen = screen(&app, 100, 30);
    for cell in screen.buffer().content() {
        assert!(cell.symbol().is_ascii(), "non-ASCII {:?} in\n{screen}", cell.symbol());
    }
    insta::assert_snapshot!(screen);
}

#[test]
fn eval_item_that_errored() {
    insta::assert_snapshot!(screen(&run_app(Some(2), 0), 80, 24));
}

/// Daemon text carrying a title change (OSC 0) and a clear screen (CSI 2J) reaches the screen only escaped.
#[test]
fn escape_sequences_from_the_daemon_are_shown_escaped() {
    const EVIL: &str = "ok \x1b]0;evil\x07 then \x1b[2J done";
    let mut app = run_app(None, 0);
    if let Some(run) = app.evals.runs.as_mut().and_then(|runs| runs.get_mut(1)) {
        (run.dataset, run.verdict) = (EVIL.into(), EVIL.into());
    }
    if let Some(Ok(detail)) = app.evals.open.as_mut().and_then(|o| o.detail.as_mut()) {
        if let Some(run) = detail.run.as_mut() {
            run.verdict = EVIL.into();
        }
        let item = &mut detail.items[1];
        (item.output, item.input_preview, item.pairwise_reasoning) = (EVIL.into(), EVIL.into(), EVIL.into());
        item.results[1].reasoning = EVIL.into();
    }
    let mut screens = Vec::new();
    for item in [None, Some(1)] {
        if let Some(open) = app.evals.open.as_mut() {
            open.item = item;
        }
        screens.push(screen(&app, 120, 30));
    }
    app.evals.open = None;
    screens.push(screen(&app, 120, 30));
    for screen in &screens {
        for cell in screen.buffer().content() {
            let symbol = cell.symbol();
            assert!(!symbol.chars().any(char::is_control), "control character {symbol:?} in\n{screen}");
        }
        let text = screen.to_string();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(text.contains(r"\x1b]0;evil\x07") || text.contains(r"\x1b]0;e"), "shown escaped:\n{text}");
    }
    let item_view = screens[1].to_string();
    assert!(item_view.contains(r"\x1b[2J"), "the answer shows the sequence as text:\n{item_view}");
}
