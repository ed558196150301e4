//! Keys and mouse to intents. Pure: what a key means depends only on where the user is (view, prompt, help,
//! route picker), never on time or the daemon, so every binding is testable without a terminal.
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind};

use super::state::{App, Prompt, View};

/// What the user asked for; `App::apply` carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Quit,
    ToggleHelp,
    /// `Esc`: close help, the prompt or the route picker, else go back.
    Back,
    NextView,
    PreviousView,
    Show(View),
    OpenCommand,
    OpenFilter,
    Up,
    Down,
    Left,
    Right,
    First,
    Last,
    PageUp,
    PageDown,
    /// Left click at a screen cell.
    Click {
        column: u16,
        row: u16,
    },
    /// Mouse wheel.
    Scroll {
        down: bool,
    },
    /// Open the selected trace, focus the selected host, start the picked re-run.
    Select,
    ToggleFollow,
    CycleSort,
    ReverseSort,
    OpenReplay,
    /// `+` / `-` in a trace's detail: a thumbs up (true) or down score on it.
    Thumbs {
        up: bool,
    },
    /// `a` in a trace's detail: the prompt for the dataset to add the trace to.
    OpenAddToDataset,
    Acknowledge,
    TogglePlay,
    Faster,
    Slower,
    Step {
        forward: bool,
    },
    OpenRoutePicker,
    /// Prompt editing.
    Type(char),
    Erase,
    Complete,
    Submit,
}

/// The intent of one terminal event in the app's current context; `None` for keys that mean nothing here.
pub fn intent(app: &App, event: &Event) -> Option<Intent> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => key_intent(app, key),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => Some(Intent::Click { column: mouse.column, row: mouse.row }),
            MouseEventKind::ScrollDown => Some(Intent::Scroll { down: true }),
            MouseEventKind::ScrollUp => Some(Intent::Scroll { down: false }),
            _ => None,
        },
        _ => None,
    }
}

fn key_intent(app: &App, key: &KeyEvent) -> Option<Intent> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Intent::Quit);
    }
    if let Some(prompt) = &app.prompt {
        return prompt_key(prompt, key.code, ctrl);
    }
    if ctrl {
        return None;
    }
    if app.help {
        return match key.code {
            KeyCode::Char('?') | KeyCode::Esc => Some(Intent::Back),
            KeyCode::Char('q') => Some(Intent::Quit),
            _ => None,
        };
    }
    if app.view == View::Replay && app.replay.as_ref().is_some_and(|r| r.picker.is_some()) {
        return picker_key(key.code);
    }
    view_key(app, key.code).or_else(|| global_key(app, key.code))
}

fn prompt_key(prompt: &Prompt, code: KeyCode, ctrl: bool) -> Option<Intent> {
    match code {
        KeyCode::Esc => Some(Intent::Back),
        KeyCode::Enter => Some(Intent::Submit),
        KeyCode::Backspace => Some(Intent::Erase),
        KeyCode::Tab if matches!(prompt, Prompt::Command { .. }) => Some(Intent::Complete),
        KeyCode::Char(c) if !ctrl => Some(Intent::Type(c)),
        _ => None,
    }
}

fn picker_key(code: KeyCode) -> Option<Intent> {
    match code {
        KeyCode::Up | KeyCode::Char('k') => Some(Intent::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Intent::Down),
        KeyCode::Enter => Some(Intent::Select),
        KeyCode::Esc => Some(Intent::Back),
        _ => None,
    }
}

/// Keys that mean something only in the current view; the rest fall through to `global_key`.
fn view_key(app: &App, code: KeyCode) -> Option<Intent> {
    match (app.view, code) {
        (View::Traces, KeyCode::Char('/')) => Some(Intent::OpenFilter),
        (View::Traces, KeyCode::Char('f' | ' ')) => Some(Intent::ToggleFollow),
        (View::Traces, KeyCode::Char('s')) => Some(Intent::CycleSort),
        (View::Traces, KeyCode::Char('S')) => Some(Intent::ReverseSort),
        (View::Traces | View::Fleet | View::Evals, KeyCode::Enter) => Some(Intent::Select),
        (View::Detail, KeyCode::Char('r')) => Some(Intent::OpenReplay),
        (View::Detail, KeyCode::Char('+' | '=')) => Some(Intent::Thumbs { up: true }),
        (View::Detail, KeyCode::Char('-')) => Some(Intent::Thumbs { up: false }),
        (View::Detail, KeyCode::Char('a')) => Some(Intent::OpenAddToDataset),
        (View::Alerts, KeyCode::Char('a')) => Some(Intent::Acknowledge),
        (View::Replay, KeyCode::Char(' ')) => Some(Intent::TogglePlay),
        (View::Replay, KeyCode::Char('+' | '=')) => Some(Intent::Faster),
        (View::Replay, KeyCode::Char('-')) => Some(Intent::Slower),
        (View::Replay, KeyCode::Left | KeyCode::Char('h')) => Some(Intent::Step { forward: false }),
        (View::Replay, KeyCode::Right | KeyCode::Char('l')) => Some(Intent::Step { forward: true }),
        (View::Replay, KeyCode::Char('R')) => Some(Intent::OpenRoutePicker),
        _ => None,
    }
}

fn global_key(app: &App, code: KeyCode) -> Option<Intent> {
    let intent = match code {
        KeyCode::Char('?') => Intent::ToggleHelp,
        KeyCode::Char('q') => Intent::Quit,
        KeyCode::Tab => Intent::NextView,
        KeyCode::BackTab => Intent::PreviousView,
        KeyCode::Char('1') => Intent::Show(View::Overview),
        KeyCode::Char('2') => Intent::Show(View::Traces),
        KeyCode::Char('3') => Intent::Show(View::Alerts),
        KeyCode::Char('4') => Intent::Show(View::Budgets),
        KeyCode::Char('5') => Intent::Show(View::Evals),
        KeyCode::Char('0') if app.hosts.len() > 1 => Intent::Show(View::Fleet),
        KeyCode::Char(':') => Intent::OpenCommand,
        KeyCode::Esc => Intent::Back,
        KeyCode::Up | KeyCode::Char('k') => Intent::Up,
        KeyCode::Down | KeyCode::Char('j') => Intent::Down,
        KeyCode::Left | KeyCode::Char('h') => Intent::Left,
        KeyCode::Right | KeyCode::Char('l') => Intent::Right,
        KeyCode::Home | KeyCode::Char('g') => Intent::First,
        KeyCode::End | KeyCode::Char('G') => Intent::Last,
        KeyCode::PageUp => Intent::PageUp,
        KeyCode::PageDown => Intent::PageDown,
        _ => return None,
    };
    Some(intent)
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyEventState, MouseEvent};

    use super::*;
    use crate::top::state::{Look, Playback, ReplayUi, RoutePicker};

    fn app(view: View) -> App {
        let mut app = App::new(&["a".to_owned()], Look::default());
        app.view = view;
        app
    }

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn press(app: &App, code: KeyCode) -> Option<Intent> {
        intent(app, &key(code))
    }

    #[test]
    fn global_bindings_in_every_plain_view() {
        use KeyCode::*;
        let table = [
            (Char('?'), Some(Intent::ToggleHelp)),
            (Char('q'), Some(Intent::Quit)),
            (Tab, Some(Intent::NextView)),
            (BackTab, Some(Intent::PreviousView)),
            (Char('1'), Some(Intent::Show(View::Overview))),
            (Char('2'), Some(Intent::Show(View::Traces))),
            (Char('3'), Some(Intent::Show(View::Alerts))),
            (Char('4'), Some(Intent::Show(View::Budgets))),
            (Char('5'), Some(Intent::Show(View::Evals))),
            (Char('0'), None),
            (Char(':'), Some(Intent::OpenCommand)),
            (Esc, Some(Intent::Back)),
            (Up, Some(Intent::Up)),
            (Char('k'), Some(Intent::Up)),
            (Down, Some(Intent::Down)),
            (Char('j'), Some(Intent::Down)),
            (Left, Some(Intent::Left)),
            (Char('h'), Some(Intent::Left)),
            (Right, Some(Intent::Right)),
            (Char('l'), Some(Intent::Right)),
            (Char('g'), Some(Intent::First)),
            (Home, Some(Intent::First)),
            (Char('G'), Some(Intent::Last)),
            (End, Some(Intent::Last)),
            (PageUp, Some(Intent::PageUp)),
            (PageDown, Some(Intent::PageDown)),
            (Char('x'), None),
        ];
        for view in [View::Overview, View::Traces, View::Alerts, View::Budgets, View::Detail] {
            for (code, expected) in table {
                assert_eq!(press(&app(view), code), expected, "{code:?} in {view:?}");
            }
        }
    }

    #[test]
    fn zero_shows_the_fleet_only_with_several_hosts() {
        let app = App::new(&["a".to_owned(), "b".to_owned()], Look::default());
        assert_eq!(press(&app, KeyCode::Char('0')), Some(Intent::Show(View::Fleet)));
        assert_eq!(press(&app, KeyCode::Enter), Some(Intent::Select), "Enter focuses the host");
    }

    #[test]
    fn ctrl_c_quits_everywhere_even_in_a_prompt() {
        let mut app = app(View::Traces);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(intent(&app, &ctrl_c), Some(Intent::Quit));
        app.prompt = Some(Prompt::Filter { input: String::new() });
        assert_eq!(intent(&app, &ctrl_c), Some(Intent::Quit));
    }

    #[test]
    fn traces_bindings() {
        let app = app(View::Traces);
        let table = [
            (KeyCode::Char('/'), Intent::OpenFilter),
            (KeyCode::Char('f'), Intent::ToggleFollow),
            (KeyCode::Char(' '), Intent::ToggleFollow),
            (KeyCode::Char('s'), Intent::CycleSort),
            (KeyCode::Char('S'), Intent::ReverseSort),
            (KeyCode::Enter, Intent::Select),
        ];
        for (code, expected) in table {
            assert_eq!(press(&app, code), Some(expected), "{code:?}");
        }
        assert_eq!(press(&self::app(View::Overview), KeyCode::Char('/')), None, "filter is for traces");
    }

    #[test]
    fn detail_alerts_and_budgets_bindings() {
        assert_eq!(press(&app(View::Detail), KeyCode::Char('r')), Some(Intent::OpenReplay));
        assert_eq!(press(&app(View::Detail), KeyCode::Char('j')), Some(Intent::Down));
        assert_eq!(press(&app(View::Detail), KeyCode::Char('+')), Some(Intent::Thumbs { up: true }));
        assert_eq!(press(&app(View::Detail), KeyCode::Char('=')), Some(Intent::Thumbs { up: true }));
        assert_eq!(press(&app(View::Detail), KeyCode::Char('-')), Some(Intent::Thumbs { up: false }));
        assert_eq!(press(&app(View::Traces), KeyCode::Char('+')), None, "thumbs only where one trace is open");
        assert_eq!(press(&app(View::Detail), KeyCode::Char('a')), Some(Intent::OpenAddToDataset));
        for view in [View::Overview, View::Traces, View::Budgets, View::Replay, View::Evals] {
            assert_ne!(press(&app(view), KeyCode::Char('a')), Some(Intent::OpenAddToDataset), "{view:?}");
        }
        assert_eq!(press(&app(View::Alerts), KeyCode::Char('a')), Some(Intent::Acknowledge));
        assert_eq!(press(&app(View::Traces), KeyCode::Char('a')), None);
        assert_eq!(press(&app(View::Budgets), KeyCode::Down), Some(Intent::Down));
    }

    fn replay_app(picker: bool) -> App {
        let mut app = app(View::Replay);
        let original = llmops_proto::v1::Trace::default();
        let picker = picker.then(|| RoutePicker { routes: vec!["chat".into()], selected: 0 });
        app.replay = Some(ReplayUi { playback: Playback::from_trace(&original), original, picker, rerun: None });
        app
    }

    #[test]
    fn replay_bindings() {
        let app = replay_app(false);
        let table = [
            (KeyCode::Char(' '), Intent::TogglePlay),
            (KeyCode::Char('+'), Intent::Faster),
            (KeyCode::Char('='), Intent::Faster),
            (KeyCode::Char('-'), Intent::Slower),
            (KeyCode::Left, Intent::Step { forward: false }),
            (KeyCode::Char('h'), Intent::Step { forward: false }),
            (KeyCode::Right, Intent::Step { forward: true }),
            (KeyCode::Char('l'), Intent::Step { forward: true }),
            (KeyCode::Char('R'), Intent::OpenRoutePicker),
            (KeyCode::Esc, Intent::Back),
            (KeyCode::Char('q'), Intent::Quit),
        ];
        for (code, expected) in table {
            assert_eq!(press(&app, code), Some(expected), "{code:?}");
        }
    }

    #[test]
    fn route_picker_bindings() {
        let app = replay_app(true);
        assert_eq!(press(&app, KeyCode::Up), Some(Intent::Up));
        assert_eq!(press(&app, KeyCode::Char('j')), Some(Intent::Down));
        assert_eq!(press(&app, KeyCode::Enter), Some(Intent::Select));
        assert_eq!(press(&app, KeyCode::Esc), Some(Intent::Back));
        assert_eq!(press(&app, KeyCode::Char(' ')), None, "playback keys wait until the picker closes");
    }

    #[test]
    fn prompt_keys_are_text() {
        let mut app = app(View::Traces);
        app.prompt = Some(Prompt::Command { input: String::new(), completions: Vec::new(), pick: 0 });
        assert_eq!(press(&app, KeyCode::Char('q')), Some(Intent::Type('q')));
        assert_eq!(press(&app, KeyCode::Char('2')), Some(Intent::Type('2')));
        assert_eq!(press(&app, KeyCode::Tab), Some(Intent::Complete));
        assert_eq!(press(&app, KeyCode::Enter), Some(Intent::Submit));
        assert_eq!(press(&app, KeyCode::Backspace), Some(Intent::Erase));
        assert_eq!(press(&app, KeyCode::Esc), Some(Intent::Back));
        app.prompt = Some(Prompt::Filter { input: String::new() });
        assert_eq!(press(&app, KeyCode::Tab), None, "no completion for filters");
        app.prompt = Some(Prompt::Dataset { input: String::new(), trace_id: "t".into() });
        assert_eq!(press(&app, KeyCode::Char('a')), Some(Intent::Type('a')), "a types in the dataset prompt");
        assert_eq!(press(&app, KeyCode::Tab), None, "no completion for dataset names");
        assert_eq!(press(&app, KeyCode::Enter), Some(Intent::Submit));
        assert_eq!(press(&app, KeyCode::Esc), Some(Intent::Back));
    }

    #[test]
    fn help_overlay_takes_only_close_and_quit() {
        let mut app = app(View::Traces);
        app.help = true;
        assert_eq!(press(&app, KeyCode::Char('?')), Some(Intent::Back));
        assert_eq!(press(&app, KeyCode::Esc), Some(Intent::Back));
        assert_eq!(press(&app, KeyCode::Char('q')), Some(Intent::Quit));
        assert_eq!(press(&app, KeyCode::Char('j')), None);
    }

    #[test]
    fn mouse_clicks_and_wheel() {
        let app = app(View::Traces);
        let mouse = |kind| Event::Mouse(MouseEvent { kind, column: 4, row: 7, modifiers: KeyModifiers::NONE });
        assert_eq!(
            intent(&app, &mouse(MouseEventKind::Down(MouseButton::Left))),
            Some(Intent::Click { column: 4, row: 7 })
        );
        assert_eq!(intent(&app, &mouse(MouseEventKind::ScrollDown)), Some(Intent::Scroll { down: true }));
        assert_eq!(intent(&app, &mouse(MouseEventKind::ScrollUp)), Some(Intent::Scroll { down: false }));
        assert_eq!(intent(&app, &mouse(MouseEventKind::Moved)), None);
    }

    #[test]
    fn key_releases_are_ignored() {
        let release = KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        };
        assert_eq!(intent(&app(View::Traces), &Event::Key(release)), None);
    }
}
