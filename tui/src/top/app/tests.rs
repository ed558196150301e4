use ratatui::layout::Rect;

use super::*;
use crate::top::host::ReplayUpdate;
use crate::top::state::Look;
use crate::top::ui::ListHit;

const NO_HITS: Hitmap = Hitmap { list: None };

fn trace(id: &str, route: &str) -> pb::Trace {
    pb::Trace { id: id.into(), route: route.into(), response_text: "hello".into(), ..pb::Trace::default() }
}

fn finished(id: &str) -> HostUpdate {
    let kind = pb::trace_event::Kind::Finished as i32;
    HostUpdate::TraceEvent(pb::TraceEvent { kind, trace: Some(trace(id, "chat")), missed: 0 })
}

/// One host with three traces (newest first: c, b, a), on the traces view.
fn app() -> App {
    let mut app = App::new(&["unix:/tmp/a.sock".to_owned()], Look::default());
    app.apply_update(0, HostUpdate::Traces(vec![trace("c", "chat"), trace("b", "chat"), trace("a", "chat")]));
    app.apply(Intent::Show(View::Traces), &NO_HITS);
    app
}

fn press(app: &mut App, intents: &[Intent]) -> Vec<Effect> {
    intents.iter().flat_map(|intent| app.apply(*intent, &NO_HITS)).collect()
}

#[test]
fn enter_opens_the_detail_and_fetches_the_whole_trace() {
    let mut app = app();
    let effects = press(&mut app, &[Intent::Down, Intent::Select]);
    assert_eq!(effects, [Effect::FetchTrace { host: 0, id: "b".into() }]);
    assert_eq!(app.view, View::Detail);
    assert_eq!(app.detail.as_ref().map(|d| d.trace_id.as_str()), Some("b"));
    app.apply_update(0, HostUpdate::TraceDetail { id: "b".into(), result: Ok(trace("b", "chat")) });
    assert!(app.detail.as_ref().is_some_and(|d| d.trace.is_some()));
    app.apply_update(0, HostUpdate::TraceGpu { id: "a".into(), result: Ok(vec![]) });
    assert!(app.detail.as_ref().is_some_and(|d| d.gpu.is_none()), "another trace's telemetry is ignored");
    app.apply_update(0, HostUpdate::TraceGpu { id: "b".into(), result: Ok(vec![]) });
    assert_eq!(app.detail.as_ref().and_then(|d| d.gpu.clone()), Some(Ok(vec![])));
}

#[test]
fn thumbs_in_the_detail_score_the_open_trace_and_the_answer_shows_there() {
    let mut app = app();
    assert!(press(&mut app, &[Intent::Thumbs { up: true }]).is_empty(), "no trace open");
    assert!(app.notice.as_ref().is_some_and(|n| n.error));
    press(&mut app, &[Intent::Down, Intent::Select]);
    let effects = press(&mut app, &[Intent::Thumbs { up: true }, Intent::Thumbs { up: false }]);
    assert_eq!(
        effects,
        [
            Effect::Thumbs { host: 0, trace_id: "b".into(), up: true },
            Effect::Thumbs { host: 0, trace_id: "b".into(), up: false }
        ]
    );
    let score = |trace_id: &str| pb::Score { trace_id: trace_id.into(), name: "thumbs".into(), ..pb::Score::default() };
    app.apply_update(0, HostUpdate::ScoreAdded(score("b")));
    assert!(app.detail.as_ref().is_some_and(|d| d.trace.is_none()), "the trace is still loading: nothing to add to");
    app.apply_update(0, HostUpdate::TraceDetail { id: "b".into(), result: Ok(trace("b", "chat")) });
    assert!(app.shows(0, &HostUpdate::ScoreAdded(score("b"))));
    app.apply_update(0, HostUpdate::ScoreAdded(score("b")));
    app.apply_update(0, HostUpdate::ScoreAdded(score("a")));
    let scores = app.detail.as_ref().and_then(|d| d.trace.as_ref()).map(|t| t.scores.len());
    assert_eq!(scores, Some(1), "only the open trace's score is added");
}

#[test]
fn moving_down_pauses_follow_and_keeps_the_row_as_traces_arrive() {
    let mut app = app();
    assert!(app.traces.follow);
    press(&mut app, &[Intent::Down]);
    assert!(!app.traces.follow);
    assert_eq!(app.traces.selected, 1);
    app.apply_update(0, finished("d"));
    assert_eq!(app.traces.selected, 2, "still on b");
    press(&mut app, &[Intent::ToggleFollow]);
    assert!(app.traces.follow);
    assert_eq!(app.traces.selected, 0);
    app.apply_update(0, finished("e"));
    assert_eq!(app.traces.selected, 0, "following stays on the newest row");
}

#[test]
// Alerts as an llmopsd from before the alert enums sends them: the console still reads their state.
#[allow(deprecated)]
fn acknowledging_a_firing_alert_asks_the_daemon() {
    let mut app = app();
    let alert = |id: &str, state: &str| pb::Alert { id: id.into(), state: state.into(), ..pb::Alert::default() };
    app.apply_update(0, HostUpdate::Alerts(vec![alert("f", "firing"), alert("r", "resolved")]));
    let effects = press(&mut app, &[Intent::Show(View::Alerts), Intent::Acknowledge]);
    assert_eq!(effects, [Effect::Ack { host: 0, alert_id: "f".into() }]);
    let effects = press(&mut app, &[Intent::Down, Intent::Acknowledge]);
    assert!(effects.is_empty());
    assert!(app.notice.as_ref().is_some_and(|n| n.error), "a resolved alert cannot be acknowledged");
}

/// Traces view -> detail of `c` (loaded) -> replay.
fn replaying() -> App {
    let mut app = app();
    press(&mut app, &[Intent::Select]);
    app.apply_update(0, HostUpdate::TraceDetail { id: "c".into(), result: Ok(trace("c", "chat")) });
    let routes = ["code", "chat"].map(|name| pb::RouteStatus { name: name.into(), targets: Vec::new() });
    app.apply_update(0, HostUpdate::Status(pb::Status { routes: routes.into(), ..pb::Status::default() }));
    press(&mut app, &[Intent::OpenReplay]);
    app
}

#[test]
fn route_picker_starts_a_rerun_and_streams_into_it() {
    let mut app = replaying();
    assert_eq!(app.view, View::Replay);
    assert!(app.replay.as_ref().is_some_and(|r| r.playback.text_shown().is_empty() && !r.playback.paused));
    press(&mut app, &[Intent::OpenRoutePicker]);
    let routes = app.replay.as_ref().and_then(|r| r.picker.as_ref()).map(|p| p.routes.clone());
    assert_eq!(routes, Some(vec!["chat".to_owned(), "code".to_owned()]), "the original route first");
    let effects = press(&mut app, &[Intent::Down, Intent::Select]);
    assert_eq!(effects, [Effect::Replay { host: 0, trace_id: "c".into(), route: Some("code".into()) }]);
    let started = pb::ReplayStarted { trace_id: "r1".into(), ..pb::ReplayStarted::default() };
    app.apply_update(0, HostUpdate::Replay(ReplayUpdate::Started(started)));
    let chunk = |text: &str| ReplayUpdate::Chunk(pb::ReplayChunk { text: text.into(), offset_ms: 5.0 });
    app.apply_update(0, HostUpdate::Replay(chunk("hel")));
    app.apply_update(0, HostUpdate::Replay(chunk("lo")));
    let rerun = app.replay.as_ref().and_then(|r| r.rerun.as_ref()).expect("re-run started");
    assert_eq!((rerun.route.as_str(), rerun.trace_id.as_deref(), rerun.text.as_str()), ("code", Some("r1"), "hello"));
    assert_eq!(rerun.chunks, 2);
}

#[test]
fn replay_waits_for_the_full_trace() {
    let mut app = app();
    press(&mut app, &[Intent::Select, Intent::OpenReplay]);
    assert_eq!(app.view, View::Detail);
    assert!(app.replay.is_none());
    assert!(app.notice.as_ref().is_some_and(|n| n.error));
}

#[test]
fn escape_closes_the_innermost_thing_first() {
    let mut app = replaying();
    press(&mut app, &[Intent::OpenRoutePicker, Intent::OpenCommand, Intent::ToggleHelp]);
    press(&mut app, &[Intent::Back]);
    assert!(!app.help && app.prompt.is_some());
    press(&mut app, &[Intent::Back]);
    assert!(app.prompt.is_none());
    assert!(app.replay.as_ref().is_some_and(|r| r.picker.is_some()));
    press(&mut app, &[Intent::Back]);
    assert!(app.replay.as_ref().is_some_and(|r| r.picker.is_none()));
    assert_eq!(app.view, View::Replay);
    press(&mut app, &[Intent::Back]);
    assert_eq!(app.view, View::Detail);
    press(&mut app, &[Intent::Back]);
    assert_eq!(app.view, View::Traces);
    press(&mut app, &[Intent::Back]);
    assert_eq!(app.view, View::Overview);
}

#[test]
fn filter_applies_while_typing_and_escape_clears_it() {
    let mut app = app();
    app.apply_update(0, finished("zz-unique"));
    press(&mut app, &[Intent::OpenFilter, Intent::Type('z'), Intent::Type('z')]);
    assert_eq!(app.traces.filter, "zz");
    assert_eq!(app.trace_rows().len(), 0, "no trace mentions zz in route, model or bodies");
    press(&mut app, &[Intent::Erase, Intent::Erase, Intent::Type('c'), Intent::Submit]);
    assert_eq!((app.traces.filter.as_str(), app.prompt.is_none()), ("c", true), "Enter keeps it");
    press(&mut app, &[Intent::OpenFilter, Intent::Back]);
    assert!(app.traces.filter.is_empty(), "Esc clears it");
}

#[test]
fn command_prompt_completes_and_runs() {
    let mut app = app();
    press(&mut app, &[Intent::OpenCommand, Intent::Type('a'), Intent::Type('l'), Intent::Complete]);
    assert!(matches!(&app.prompt, Some(Prompt::Command { input, .. }) if input == "alerts"));
    press(&mut app, &[Intent::Submit]);
    assert_eq!(app.view, View::Alerts);
    press(&mut app, &[Intent::OpenCommand, Intent::Type('s'), Intent::Complete, Intent::Complete]);
    assert!(matches!(&app.prompt, Some(Prompt::Command { input, .. }) if input == "sort time"));
    app.prompt = Some(Prompt::Command { input: "sort cost".into(), completions: Vec::new(), pick: 0 });
    press(&mut app, &[Intent::Submit]);
    assert_eq!(app.traces.sort, SortKey::Cost);
    app.prompt = Some(Prompt::Command { input: "bogus".into(), completions: Vec::new(), pick: 0 });
    press(&mut app, &[Intent::Submit]);
    assert!(app.notice.as_ref().is_some_and(|n| n.error && n.text.contains("bogus")));
}

#[test]
fn fleet_enter_focuses_the_host_and_budgets_fetch_engine_logs() {
    let mut app = App::new(&["a:1".to_owned(), "b:2".to_owned()], Look::default());
    assert_eq!(app.view, View::Fleet);
    press(&mut app, &[Intent::Down, Intent::Select]);
    assert_eq!((app.focus, app.view), (1, View::Overview));
    let engines = ["vllm", "llama"].map(|name| pb::EngineStatus { name: name.into(), ..Default::default() });
    app.apply_update(1, HostUpdate::Status(pb::Status { engines: engines.into(), ..pb::Status::default() }));
    let effects = press(&mut app, &[Intent::Show(View::Budgets), Intent::Down, Intent::Down]);
    let fetch = |engine: &str| Effect::FetchLogs { host: 1, engine: engine.into() };
    assert_eq!(effects, [fetch("vllm"), fetch("llama")], "the last Down is at the end already");
}

#[test]
fn click_selects_the_row_under_the_pointer() {
    let mut app = app();
    let hits = Hitmap { list: Some(ListHit { area: Rect::new(0, 5, 80, 10), first_index: 0 }) };
    app.apply(Intent::Click { column: 3, row: 7 }, &hits);
    assert_eq!((app.traces.selected, app.traces.follow), (2, false));
    app.apply(Intent::Click { column: 3, row: 2 }, &hits);
    assert_eq!(app.traces.selected, 2, "a click outside the list changes nothing");
}

#[test]
fn only_updates_the_screen_shows_ask_for_a_redraw() {
    let mut app = app();
    let telemetry = HostUpdate::Telemetry(pb::TelemetrySample::default());
    assert!(app.shows(0, &finished("d")), "the live tail shows new traces");
    assert!(!app.shows(0, &telemetry), "the traces view shows no telemetry");
    app.apply(Intent::Show(View::Overview), &NO_HITS);
    assert!(!app.shows(0, &finished("e")), "the overview shows no traces");
    assert!(app.shows(0, &telemetry));
    assert!(app.shows(0, &HostUpdate::Link(crate::top::state::Link::Up)), "the header shows the link");
    assert!(app.shows(0, &HostUpdate::Notice { text: "done".into(), error: false }));
}
