//! The evals view's state: opening it, the polled runs, a run's detail, an item, and `Esc` one level at a time.
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

use super::evals::MAX_RUNS;
use super::*;
use crate::top::input;
use crate::top::state::Look;

const NO_HITS: Hitmap = Hitmap { list: None };

fn run(id: &str) -> pb::EvalRun {
    pb::EvalRun { id: id.into(), dataset: "qa".into(), status: pb::EvalStatus::Passed as i32, ..Default::default() }
}

fn item(id: &str, passed: bool) -> pb::EvalItemResult {
    pb::EvalItemResult { item_id: id.into(), passed, output: format!("answer {id}"), ..Default::default() }
}

fn detail(id: &str, items: usize) -> pb::EvalRunDetail {
    let items = (1..=items).map(|i| item(&i.to_string(), i % 2 == 1)).collect();
    pb::EvalRunDetail { run: Some(run(id)), items, next_item_offset: 0 }
}

fn press(app: &mut App, intents: &[Intent]) -> Vec<Effect> {
    intents.iter().flat_map(|intent| app.apply(*intent, &NO_HITS)).collect()
}

/// One host, on the evals view, with runs c, b, a (newest first) listed.
fn evals_app() -> App {
    let mut app = App::new(&["unix:/tmp/a.sock".to_owned()], Look::default());
    press(&mut app, &[Intent::Show(View::Evals)]);
    app.apply_update(0, HostUpdate::EvalRuns(Ok(vec![run("c"), run("b"), run("a")])));
    app
}

#[test]
fn five_or_the_evals_command_opens_the_view_and_esc_returns() {
    let mut app = App::new(&["a".to_owned()], Look::default());
    let five = Event::Key(KeyEvent::new(KeyCode::Char('5'), KeyModifiers::NONE));
    assert_eq!(input::intent(&app, &five), Some(Intent::Show(View::Evals)));
    press(&mut app, &[Intent::Show(View::Evals)]);
    assert_eq!(app.view, View::Evals);
    let enter = Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(input::intent(&app, &enter), Some(Intent::Select));
    assert!(press(&mut app, &[Intent::Select]).is_empty(), "no runs listed yet: nothing to open");
    press(&mut app, &[Intent::Back]);
    assert_eq!(app.view, View::Overview);
    app.prompt = Some(Prompt::Command { input: "evals".into(), completions: Vec::new(), pick: 0 });
    press(&mut app, &[Intent::Submit]);
    assert_eq!(app.view, View::Evals);
    press(&mut app, &[Intent::NextView]);
    assert_eq!(app.view, View::Overview, "Tab goes round from evals, the last view");
}

#[test]
fn listings_are_bounded_and_keep_the_selected_run() {
    let mut app = evals_app();
    press(&mut app, &[Intent::Down]);
    assert_eq!(app.evals.selected, 1);
    app.apply_update(0, HostUpdate::EvalRuns(Ok(vec![run("d"), run("c"), run("b"), run("a")])));
    assert_eq!(app.evals.selected, 2, "still on b");
    app.apply_update(0, HostUpdate::EvalRuns(Err("store busy".into())));
    assert_eq!(app.evals.runs().len(), 4, "a failed poll keeps the runs");
    assert_eq!(app.evals.error.as_deref(), Some("store busy"));
    let many: Vec<pb::EvalRun> = (0..MAX_RUNS + 50).map(|i| run(&format!("run-{i}"))).collect();
    app.apply_update(0, HostUpdate::EvalRuns(Ok(many)));
    assert_eq!((app.evals.runs().len(), app.evals.error.as_ref()), (MAX_RUNS, None));
    press(&mut app, &[Intent::Last]);
    assert_eq!(app.evals.selected, MAX_RUNS - 1);
    app.apply_update(0, HostUpdate::EvalRuns(Ok(vec![run("x")])));
    assert_eq!(app.evals.selected, 0, "clamped to the shorter list");
}

#[test]
fn enter_on_a_run_fetches_its_detail_and_only_that_answer_fills_it() {
    let mut app = evals_app();
    let effects = press(&mut app, &[Intent::Down, Intent::Select]);
    assert_eq!(effects, [Effect::FetchEvalRun { host: 0, id: "b".into() }]);
    let open = |app: &App| app.evals.open.clone().expect("a run is open");
    assert_eq!((open(&app).run_id.as_str(), open(&app).detail.is_none()), ("b", true));
    assert!(app.shows(0, &HostUpdate::EvalRunDetail { id: "b".into(), result: Err("x".into()) }));
    app.apply_update(0, HostUpdate::EvalRunDetail { id: "c".into(), result: Ok(detail("c", 3)) });
    assert!(open(&app).detail.is_none(), "another run's answer is ignored");
    app.apply_update(0, HostUpdate::EvalRunDetail { id: "b".into(), result: Ok(detail("b", 3)) });
    assert_eq!(open(&app).items().len(), 3);
    press(&mut app, &[Intent::Down, Intent::Down, Intent::Down]);
    assert_eq!(open(&app).selected, 2, "Down stops at the last item");
    press(&mut app, &[Intent::PageUp]);
    assert_eq!(open(&app).selected, 0);
    assert_eq!(app.evals.selected, 1, "the runs list keeps its selection underneath");
}

#[test]
fn a_run_that_cannot_be_fetched_says_why() {
    let mut app = evals_app();
    press(&mut app, &[Intent::Select]);
    app.apply_update(0, HostUpdate::EvalRunDetail { id: "c".into(), result: Err("no eval run c".into()) });
    let open = app.evals.open.as_ref().expect("open");
    assert_eq!(open.detail, Some(Err("no eval run c".into())));
    assert!(press(&mut app, &[Intent::Select]).is_empty(), "no items to open");
    assert!(app.evals.open.as_ref().is_some_and(|o| o.item.is_none()));
}

#[test]
fn enter_on_an_item_opens_it_and_esc_goes_back_one_level_at_a_time() {
    let mut app = evals_app();
    press(&mut app, &[Intent::Select]);
    app.apply_update(0, HostUpdate::EvalRunDetail { id: "c".into(), result: Ok(detail("c", 3)) });
    assert!(press(&mut app, &[Intent::Down, Intent::Select]).is_empty(), "the item is already loaded");
    let open = |app: &App| app.evals.open.clone().expect("a run is open");
    assert_eq!(open(&app).open_item().map(|i| i.item_id.as_str()), Some("2"));
    press(&mut app, &[Intent::Down, Intent::Down]);
    assert_eq!((open(&app).scroll, open(&app).selected), (2, 1), "Down scrolls the item, not the list");
    press(&mut app, &[Intent::Select]);
    assert_eq!(open(&app).item, Some(1), "Enter in an item does nothing more");
    press(&mut app, &[Intent::Back]);
    assert_eq!((open(&app).item, open(&app).scroll), (None, 0));
    assert_eq!(app.view, View::Evals);
    press(&mut app, &[Intent::Back]);
    assert!(app.evals.open.is_none());
    assert_eq!(app.view, View::Evals);
    press(&mut app, &[Intent::Back]);
    assert_eq!(app.view, View::Overview);
}

#[test]
fn eval_updates_redraw_only_the_evals_view_of_the_focused_host() {
    let mut app = App::new(&["a:1".to_owned(), "b:2".to_owned()], Look::default());
    press(&mut app, &[Intent::Select, Intent::Show(View::Evals)]);
    let update = HostUpdate::EvalRuns(Ok(vec![run("r")]));
    assert!(app.shows(0, &update) && !app.shows(1, &update));
    app.apply_update(1, update.clone());
    assert!(app.evals.runs.is_none(), "another host's runs are not this view's");
    app.apply_update(0, update.clone());
    assert_eq!(app.evals.runs().len(), 1);
    press(&mut app, &[Intent::Show(View::Overview)]);
    assert!(!app.shows(0, &update));
    app.apply(Intent::Show(View::Fleet), &NO_HITS);
    assert!(!app.shows(0, &update), "the fleet shows no runs");
}

#[test]
fn focusing_another_host_forgets_the_runs() {
    let mut app = App::new(&["a:1".to_owned(), "b:2".to_owned()], Look::default());
    press(&mut app, &[Intent::Select, Intent::Show(View::Evals)]);
    app.apply_update(0, HostUpdate::EvalRuns(Ok(vec![run("r")])));
    press(&mut app, &[Intent::Select]);
    assert!(app.evals.open.is_some());
    app.prompt = Some(Prompt::Command { input: "host 2".into(), completions: Vec::new(), pick: 0 });
    press(&mut app, &[Intent::Submit]);
    assert_eq!(app.focus, 1);
    assert_eq!(app.evals, super::evals::EvalsUi::default());
}
