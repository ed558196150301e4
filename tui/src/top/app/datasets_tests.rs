//! `a` in a trace's detail: the dataset prompt, the name check, the add effect and the notice for its answer.
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

use super::datasets::check_dataset_name;
use super::*;
use crate::top::input;
use crate::top::state::Look;

const NO_HITS: Hitmap = Hitmap { list: None };

fn trace(id: &str) -> pb::Trace {
    pb::Trace { id: id.into(), route: "chat".into(), ..pb::Trace::default() }
}

fn press(app: &mut App, intents: &[Intent]) -> Vec<Effect> {
    intents.iter().flat_map(|intent| app.apply(*intent, &NO_HITS)).collect()
}

fn type_text(app: &mut App, text: &str) {
    let keys: Vec<Intent> = text.chars().map(Intent::Type).collect();
    press(app, &keys);
}

fn key(app: &App, code: KeyCode) -> Option<Intent> {
    input::intent(app, &Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

/// One host with traces c, b, a (newest first), on the traces view.
fn traces_app() -> App {
    let mut app = App::new(&["unix:/tmp/a.sock".to_owned()], Look::default());
    app.apply_update(0, HostUpdate::Traces(vec![trace("c"), trace("b"), trace("a")]));
    press(&mut app, &[Intent::Show(View::Traces)]);
    app
}

/// The detail of trace `b` open.
fn detail_app() -> App {
    let mut app = traces_app();
    press(&mut app, &[Intent::Down, Intent::Select]);
    assert_eq!(app.view, View::Detail);
    app
}

fn dataset_prompt(app: &App) -> Option<(&str, &str)> {
    match &app.prompt {
        Some(Prompt::Dataset { input, trace_id }) => Some((input.as_str(), trace_id.as_str())),
        _ => None,
    }
}

fn added(dataset: &str, items: u32) -> pb::AddDatasetItemsResponse {
    let dataset = pb::Dataset { name: dataset.into(), items, ..pb::Dataset::default() };
    pb::AddDatasetItemsResponse { dataset: Some(dataset), added: 1, skipped: 0, skipped_reasons: Vec::new() }
}

fn skipped(dataset: &str, reason: &str) -> pb::AddDatasetItemsResponse {
    let dataset = pb::Dataset { name: dataset.into(), items: 4, ..pb::Dataset::default() };
    pb::AddDatasetItemsResponse { dataset: Some(dataset), added: 0, skipped: 1, skipped_reasons: vec![reason.into()] }
}

fn answer(
    app: &mut App,
    trace_id: &str,
    dataset: &str,
    result: Result<pb::AddDatasetItemsResponse, String>,
) -> Option<Notice> {
    let update = HostUpdate::DatasetItemsAdded { trace_id: trace_id.into(), dataset: dataset.into(), result };
    assert!(app.shows(0, &update), "the notice is in every footer");
    app.apply_update(0, update);
    app.notice.clone()
}

#[test]
fn a_opens_the_dataset_prompt_only_in_a_trace_detail() {
    let mut app = traces_app();
    assert_eq!(key(&app, KeyCode::Char('a')), None, "a means nothing in the traces view");
    assert!(press(&mut app, &[Intent::OpenAddToDataset]).is_empty());
    assert!(app.prompt.is_none());
    assert!(app.notice.as_ref().is_some_and(|n| n.error && n.text.contains("open a trace first")));

    let mut app = detail_app();
    assert_eq!(key(&app, KeyCode::Char('a')), Some(Intent::OpenAddToDataset));
    assert!(press(&mut app, &[Intent::OpenAddToDataset]).is_empty(), "nothing is sent before Enter");
    assert_eq!(dataset_prompt(&app), Some(("", "b")), "empty the first time, for the open trace");
    assert_eq!(key(&app, KeyCode::Char('a')), Some(Intent::Type('a')), "in the prompt, a is text");
    assert_eq!(key(&app, KeyCode::Char('q')), Some(Intent::Type('q')), "and q does not quit");

    type_text(&mut app, "golden");
    assert_eq!(key(&app, KeyCode::Esc), Some(Intent::Back));
    assert!(press(&mut app, &[Intent::Back]).is_empty(), "Esc cancels: nothing is sent");
    assert!(app.prompt.is_none());
    assert_eq!(app.view, View::Detail, "Esc closes only the prompt");
    assert_eq!(app.last_dataset, "", "a cancelled name is not remembered");
}

#[test]
fn enter_adds_the_open_trace_and_the_next_prompt_starts_with_the_same_dataset() {
    let mut app = detail_app();
    press(&mut app, &[Intent::OpenAddToDataset]);
    type_text(&mut app, "golden-v1.2_x");
    assert_eq!(key(&app, KeyCode::Enter), Some(Intent::Submit));
    let effects = press(&mut app, &[Intent::Submit]);
    assert_eq!(effects, [Effect::AddToDataset { host: 0, trace_id: "b".into(), dataset: "golden-v1.2_x".into() }]);
    assert!(app.prompt.is_none());
    assert_eq!(app.last_dataset, "golden-v1.2_x");

    press(&mut app, &[Intent::OpenAddToDataset]);
    assert_eq!(dataset_prompt(&app), Some(("golden-v1.2_x", "b")), "prefilled with the last dataset");
    press(&mut app, &[Intent::Erase]);
    type_text(&mut app, "y ");
    let effects = press(&mut app, &[Intent::Submit]);
    let expected = Effect::AddToDataset { host: 0, trace_id: "b".into(), dataset: "golden-v1.2_y".into() };
    assert_eq!(effects, [expected], "surrounding spaces are dropped");

    // Another trace: the prompt remembers the name, and the effect names the trace open now.
    press(&mut app, &[Intent::Back, Intent::Up, Intent::Select, Intent::OpenAddToDataset]);
    assert_eq!(dataset_prompt(&app), Some(("golden-v1.2_y", "c")));
    let effects = press(&mut app, &[Intent::Submit]);
    assert_eq!(effects, [Effect::AddToDataset { host: 0, trace_id: "c".into(), dataset: "golden-v1.2_y".into() }]);
}

#[test]
fn an_invalid_name_is_refused_with_a_message() {
    let mut app = detail_app();
    for bad in ["", "   ", "my set", "golden/v1", "café", &"x".repeat(65)] {
        press(&mut app, &[Intent::OpenAddToDataset]);
        type_text(&mut app, bad);
        assert!(press(&mut app, &[Intent::Submit]).is_empty(), "{bad:?} is not sent");
        assert!(app.prompt.is_none(), "the prompt closes so the message shows");
        let notice = app.notice.clone().expect("a notice");
        assert!(notice.error, "{bad:?}");
        if bad.trim().is_empty() {
            assert_eq!(notice.text, "type a dataset name (Esc cancels)");
        } else {
            assert!(notice.text.contains("must be 1 to 64 bytes of letters, digits"), "{}", notice.text);
        }
    }
    assert_eq!(app.last_dataset, "", "a refused name is not remembered");
    press(&mut app, &[Intent::OpenAddToDataset]);
    assert!(app.notice.is_none(), "the next key clears the message");
}

#[test]
fn names_are_checked_as_the_daemon_checks_them() {
    assert_eq!(check_dataset_name("golden"), Ok(()));
    assert_eq!(check_dataset_name("A-z_0.9"), Ok(()));
    assert_eq!(check_dataset_name(&"x".repeat(64)), Ok(()));
    assert!(check_dataset_name(&"x".repeat(65)).is_err(), "over 64 bytes");
    assert!(check_dataset_name("").is_err());
    assert!(check_dataset_name("a b").is_err());
    assert!(check_dataset_name("ünïcode").is_err(), "ASCII only");
    let why = check_dataset_name("bad\u{1b}[2Jname").expect_err("a control character");
    assert!(why.contains(r#""bad\u{1b}[2Jname""#), "control characters are shown escaped: {why}");
}

#[test]
fn the_answer_is_worded_in_the_footer() {
    let mut app = detail_app();
    let notice = answer(&mut app, "b", "golden", Ok(added("golden", 3)));
    assert_eq!(notice, Some(Notice { text: "added trace b to golden (3 items)".into(), error: false }));
    let notice = answer(&mut app, "b", "fresh", Ok(added("fresh", 1)));
    assert_eq!(notice, Some(Notice { text: "added trace b to fresh (1 item)".into(), error: false }));

    let reasons = [
        "trace b is already in the dataset",
        "trace b is a embeddings request, not a chat completion",
        "trace b kept no request body (privacy mode)",
    ];
    for reason in reasons {
        let notice = answer(&mut app, "b", "golden", Ok(skipped("golden", reason)));
        assert_eq!(notice, Some(Notice { text: format!("not added to golden: {reason}"), error: true }));
    }

    let notice = answer(&mut app, "b", "golden", Err("evaluation store is read-only".into()));
    let text = "cannot add trace b to golden: evaluation store is read-only";
    assert_eq!(notice, Some(Notice { text: text.into(), error: true }));
}

#[test]
fn daemon_text_in_the_answer_is_escaped_and_kept_on_one_line() {
    let mut app = detail_app();
    let hostile = "trace b \u{1b}]0;pwned\u{7}is\nalready\r in it";
    let notice = answer(&mut app, "b", "golden", Ok(skipped("golden", hostile))).expect("a notice");
    assert_eq!(notice.text, r"not added to golden: trace b \x1b]0;pwned\x07is already\r in it");
    let notice = answer(&mut app, "b", "golden", Err("denied\u{1b}[2J".into())).expect("a notice");
    assert_eq!(notice.text, r"cannot add trace b to golden: denied\x1b[2J");
}

#[test]
fn with_several_hosts_the_answer_names_its_host() {
    let mut app = App::new(&["a:1".to_owned(), "b:2".to_owned()], Look::default());
    let update = HostUpdate::DatasetItemsAdded {
        trace_id: "t".into(),
        dataset: "golden".into(),
        result: Ok(added("golden", 2)),
    };
    app.apply_update(1, update);
    assert_eq!(app.notice.map(|n| n.text).as_deref(), Some("b:2: added trace t to golden (2 items)"));
}
