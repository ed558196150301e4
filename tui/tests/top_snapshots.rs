//! Snapshots of every `llmops-top` view drawn into a test terminal from hand-written daemon data: with data,
//! empty, unreachable, narrow, too small, without colour and in ASCII. The snapshots are the assertions;
//! review them as screens. Wall times are drawn in UTC so they do not depend on the machine.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use llmops_tui::top::state::{App, DetailUi, Host, Link, Look, Notice, Prompt, RoutePicker, SortKey, View};
use llmops_tui::top::ui::{draw_in, Hitmap, Zone};
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

mod top_fixtures;

use top_fixtures::*;

fn render(app: &App, width: u16, height: u16) -> (Terminal<TestBackend>, Hitmap) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    let mut hit = Hitmap::default();
    terminal
        .draw(|frame| {
            hit = draw_in(frame, app, Zone::Utc);
        })
        .expect("draw");
    (terminal, hit)
}

fn screen(app: &App, width: u16, height: u16) -> TestBackend {
    render(app, width, height).0.backend().clone()
}

fn with_view(view: View) -> App {
    let mut app = app();
    app.view = view;
    app
}

fn assert_ascii(backend: &TestBackend) {
    for cell in backend.buffer().content() {
        assert!(cell.symbol().is_ascii(), "non-ASCII {:?} in\n{backend}", cell.symbol());
    }
}

/// Cells drawn with a colour, or with an emphasis other than the three `NO_COLOR` keeps (bold, reversed, and
/// struck through for a diff's deletions), as "(x, y) symbol fg bg modifiers" lines.
fn styled_cells(backend: &TestBackend) -> Vec<String> {
    let kept = Modifier::BOLD | Modifier::REVERSED | Modifier::CROSSED_OUT;
    let buffer = backend.buffer();
    buffer
        .content()
        .iter()
        .enumerate()
        .filter(|(_, cell)| cell.fg != Color::Reset || cell.bg != Color::Reset || !kept.contains(cell.modifier))
        .map(|(index, cell)| {
            let (x, y) = buffer.pos_of(index);
            format!("({x}, {y}) {:?} fg {:?} bg {:?} {:?}", cell.symbol(), cell.fg, cell.bg, cell.modifier)
        })
        .collect()
}

/// Every cell keeps the terminal's own foreground and background, and only the emphasis `NO_COLOR` keeps.
fn assert_no_colour(backend: &TestBackend) {
    let styled = styled_cells(backend);
    assert!(
        styled.is_empty(),
        "{} cells styled without colour, first {:?} in\n{backend}",
        styled.len(),
        &styled[..styled.len().min(5)]
    );
}

fn plain_ascii(mut app: App) -> App {
    app.look = Look { no_color: true, ascii: true };
    app
}

#[test]
fn overview_view() {
    insta::assert_snapshot!(screen(&with_view(View::Overview), 100, 30));
}

#[test]
fn overview_narrow() {
    insta::assert_snapshot!(screen(&with_view(View::Overview), 80, 24));
}

#[test]
fn overview_four_gpus_grid_and_lines() {
    let mut app = with_view(View::Overview);
    if let Some(telemetry) = app.hosts[0].telemetry.as_mut() {
        telemetry.gpus.push(gpu(2, 3, 1.1, 61.0, 35, &[]));
        // A GPU that reports no power, temperature or throttling shows dashes, not zeros.
        telemetry.gpus.push(llmops_proto::v1::GpuSample {
            index: 3,
            name: "NVIDIA L4".into(),
            utilization_gpu_percent: Some(12),
            ..Default::default()
        });
    }
    insta::assert_snapshot!("overview_four_gpus_grid", screen(&app, 100, 30));
    insta::assert_snapshot!("overview_four_gpus_lines", screen(&app, 80, 24));
}

#[test]
fn overview_waiting_for_data() {
    insta::assert_snapshot!(screen(&empty_app(), 100, 30));
}

#[test]
fn overview_without_gpus_or_usd_budgets() {
    let mut app = app();
    let host = &mut app.hosts[0];
    if let Some(telemetry) = host.telemetry.as_mut() {
        telemetry.gpus.clear();
        telemetry.gpu_unavailable = "NVML library not found (libnvidia-ml.so.1)".into();
    }
    host.budgets = Some(budgets().into_iter().filter(|b| b.limit_kind != "usd").collect());
    host.alerts.clear();
    host.metrics = Some(Default::default());
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn overview_ascii_no_color() {
    let backend = screen(&plain_ascii(with_view(View::Overview)), 100, 30);
    assert_ascii(&backend);
    assert_no_colour(&backend);
    insta::assert_snapshot!(backend);
}

#[test]
fn traces_view() {
    let mut app = with_view(View::Traces);
    app.traces.selected = 2;
    let (terminal, hit) = render(&app, 100, 30);
    let list = hit.list.expect("traces list hit");
    assert_eq!(list.first_index, 0);
    assert_eq!((list.area.y, list.area.height), (3, 25));
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn traces_narrow_paused_sorted_scrolled() {
    let mut app = with_view(View::Traces);
    app.traces.follow = false;
    app.traces.sort = SortKey::Latency;
    app.traces.descending = false;
    app.traces.selected = 21;
    app.hosts[0].traces.missed = 3;
    let (terminal, hit) = render(&app, 80, 24);
    // 22 rows, 19 on screen: the selected last row is at the bottom.
    assert_eq!(hit.list.map(|l| l.first_index), Some(3));
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn traces_filtered() {
    let mut app = with_view(View::Traces);
    app.traces.filter = "route:code".into();
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn traces_empty() {
    let mut app = empty_app();
    app.view = View::Traces;
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn traces_ascii_no_color() {
    let mut app = plain_ascii(with_view(View::Traces));
    app.traces.sort = SortKey::Cost;
    let backend = screen(&app, 100, 30);
    assert_ascii(&backend);
    assert_no_colour(&backend);
    insta::assert_snapshot!(backend);
}

/// A full tail (10,000 traces) draws, newest first. What a frame costs is measured by the `top-frame` bench
/// (benches/src/bin/top-frame.rs), not here: a test's timing depends on the machine, not on the code.
#[test]
fn traces_view_draws_a_full_tail() {
    let mut app = with_view(View::Traces);
    let base = traces();
    let tail = &mut app.hosts[0].traces.finished;
    tail.clear();
    for i in 0..10_000 {
        let mut trace = base[i % base.len()].clone();
        trace.started_at_unix_ms -= i as i64;
        tail.push_back(trace);
    }
    let (terminal, hit) = render(&app, 200, 60);
    assert_eq!(hit.list.map(|l| l.first_index), Some(0));
    let text = terminal.backend().to_string();
    let title = text.lines().nth(1).unwrap_or_default();
    // The 10,000 finished and the one still running.
    assert!(title.contains("10001 rows"), "{title}");
}

fn detail_app(trace: Option<llmops_proto::v1::Trace>, error: Option<&str>) -> App {
    let mut app = with_view(View::Detail);
    let gpu = Some(Ok(vec![top_fixtures::telemetry()]));
    app.detail = Some(DetailUi { trace_id: full_trace().id, trace, error: error.map(str::to_owned), scroll: 0, gpu });
    app
}

#[test]
fn detail_view() {
    insta::assert_snapshot!(screen(&detail_app(Some(full_trace()), None), 100, 30));
}

#[test]
fn detail_with_feedback_scores() {
    let mut trace = full_trace();
    trace.scores = scores();
    insta::assert_snapshot!(screen(&detail_app(Some(trace), None), 100, 30));
}

#[test]
fn detail_scrolled_in_privacy_mode() {
    let mut trace = full_trace();
    trace.prompt_text.clear();
    trace.prompt_chars = 88;
    trace.prompt_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into();
    trace.replay_of = "0190b5a8-0000-7000-8000-000000000042".into();
    trace.response_text = (1..=30).map(|i| format!("line {i} of a long answer")).collect::<Vec<_>>().join("\n");
    let mut app = detail_app(Some(trace), None);
    if let Some(detail) = app.detail.as_mut() {
        detail.scroll = 1;
    }
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn detail_loading_and_failed() {
    insta::assert_snapshot!("detail_loading", screen(&detail_app(None, None), 80, 24));
    let failed = detail_app(None, Some("NOT_FOUND: no trace 0190b5a8-0000-7000-8000-000000000100"));
    insta::assert_snapshot!("detail_failed", screen(&failed, 80, 24));
}

#[test]
fn alerts_view() {
    let (terminal, hit) = render(&with_view(View::Alerts), 100, 30);
    assert_eq!(hit.list.map(|l| l.first_index), Some(0));
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn alerts_acknowledged_selected() {
    let mut app = with_view(View::Alerts);
    app.alerts_selected = 2;
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn alerts_empty() {
    let mut app = with_view(View::Alerts);
    app.hosts[0].alerts.clear();
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn budgets_and_engines() {
    insta::assert_snapshot!(screen(&with_view(View::Budgets), 100, 30));
}

#[test]
fn budgets_and_engines_narrow_other_engine() {
    let mut app = with_view(View::Budgets);
    // vllm-b: launched, no log tail received yet.
    app.engine_selected = 2;
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn budgets_and_engines_empty() {
    let mut app = empty_app();
    app.view = View::Budgets;
    app.hosts[0].budgets = Some(Vec::new());
    insta::assert_snapshot!(screen(&app, 100, 30));
}

fn replay_app(replay: llmops_tui::top::state::ReplayUi) -> App {
    let mut app = with_view(View::Replay);
    app.replay = Some(replay);
    app
}

#[test]
fn replay_playing_view() {
    insta::assert_snapshot!(screen(&replay_app(replay_playing(12)), 100, 30));
}

#[test]
fn replay_route_picker() {
    let mut replay = replay_playing(12);
    replay.playback.paused = true;
    replay.picker = Some(RoutePicker { routes: vec!["chat".into(), "chat-70b".into(), "code".into()], selected: 1 });
    insta::assert_snapshot!(screen(&replay_app(replay), 100, 30));
}

#[test]
fn replay_rerun_running() {
    insta::assert_snapshot!(screen(&replay_app(replay_rerun(false)), 100, 30));
}

#[test]
fn replay_rerun_done() {
    insta::assert_snapshot!(screen(&replay_app(replay_rerun(true)), 100, 30));
}

#[test]
fn replay_rerun_done_no_color() {
    let app = plain_ascii(replay_app(replay_rerun(true)));
    let backend = screen(&app, 100, 30);
    assert_ascii(&backend);
    assert_no_colour(&backend);
    insta::assert_snapshot!(backend);
}

#[test]
fn the_colour_check_sees_colour() {
    // The screens checked without colour, drawn in colour: the check finds what it looks for.
    for mut app in [with_view(View::Overview), with_view(View::Traces), replay_app(replay_rerun(true))] {
        app.look = Look { no_color: false, ascii: true };
        assert!(!styled_cells(&screen(&app, 100, 30)).is_empty(), "{:?}", app.view);
    }
}

#[test]
fn fleet_view() {
    let mut app =
        App::new(&["gpu-box-1:7070".to_owned(), "gpu-box-2:7070".into(), "gpu-box-3:7070".into()], Look::default());
    app.now_unix_ms = NOW;
    app.hosts[0] = host("gpu-box-1:7070");
    let mut second = host("gpu-box-2:7070");
    second.budgets = Some(Vec::new());
    second.alerts.clear();
    app.hosts[1] = second;
    app.hosts[2] = Host { link: down(4), ..Host::new("gpu-box-3:7070") };
    app.fleet_selected = 1;
    assert_eq!(app.view, View::Fleet);
    let (terminal, hit) = render(&app, 100, 30);
    assert_eq!(hit.list.map(|l| (l.first_index, l.area.y)), Some((0, 3)));
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn unreachable_keeps_cached_data() {
    let mut app = with_view(View::Overview);
    app.hosts[0].link = down(3);
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn unreachable_with_a_long_socket_path_at_80x24() {
    let mut app = App::new(&["unix:/run/user/1000/llmops/llmopsd.sock".to_owned()], Look::default());
    app.now_unix_ms = NOW;
    app.hosts[0].link = down(3);
    let screen = screen(&app, 80, 24);
    let text = screen.to_string();
    let header = text.lines().next().unwrap_or_default().to_owned();
    assert!(header.contains("down") && header.contains("1 Overview"), "link and current view stay: {header}");
    insta::assert_snapshot!(screen);
}

#[test]
fn connecting() {
    let mut app = App::new(&["127.0.0.1:7070".to_owned()], Look::default());
    app.now_unix_ms = NOW;
    assert_eq!(app.hosts[0].link, Link::Connecting { attempt: 1 });
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn help_overlay() {
    let mut app = with_view(View::Traces);
    app.help = true;
    insta::assert_snapshot!("help_overlay", screen(&app, 100, 30));
    insta::assert_snapshot!("help_overlay_80x24", screen(&app, 80, 24));
}

#[test]
fn filter_prompt() {
    let mut app = with_view(View::Traces);
    app.traces.filter = "status:err".into();
    app.prompt = Some(Prompt::Filter { input: "status:err".into() });
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn command_prompt() {
    let mut app = with_view(View::Overview);
    app.prompt =
        Some(Prompt::Command { input: "tr".into(), completions: vec!["traces".into(), "trace".into()], pick: 0 });
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn dataset_prompt() {
    let mut app = detail_app(Some(full_trace()), None);
    app.prompt = Some(Prompt::Dataset { input: "golden".into(), trace_id: full_trace().id });
    let (mut terminal, _) = render(&app, 80, 24);
    // The cursor follows the name, after the prompt's label.
    let typed = "add to dataset: golden".chars().count();
    assert_eq!(terminal.get_cursor_position().expect("cursor"), (u16::try_from(typed).expect("width"), 23).into());
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn error_notice() {
    let mut app = with_view(View::Alerts);
    app.notice =
        Some(Notice { text: "acknowledge failed: PERMISSION_DENIED: admin token required".into(), error: true });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn too_small() {
    insta::assert_snapshot!(screen(&app(), 40, 10));
}

#[test]
fn panel_not_served_by_an_older_daemon() {
    let mut app = with_view(View::Budgets);
    let host = &mut app.hosts[0];
    host.budgets = None;
    host.unavailable.insert("budgets", "UNIMPLEMENTED: unknown service llmops.v1.BudgetService".into());
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn detail_of_a_cache_hit_with_guardrail_verdicts() {
    let mut trace = full_trace();
    trace.cache = Some(llmops_proto::v1::CacheOutcome {
        result: "hit".into(),
        source_trace_id: "0190b5a8-0000-7000-8000-000000000007".into(),
        saved_input_tokens: 24,
        saved_output_tokens: 13,
        saved_usd: 0.0125,
        ..Default::default()
    });
    trace.guardrails = vec![
        llmops_proto::v1::GuardrailVerdict {
            rule: "mask-contact".into(),
            action: "mask".into(),
            stage: "input".into(),
            kind: "pii".into(),
            matches: 2,
            detail: "EMAIL,PHONE".into(),
        },
        llmops_proto::v1::GuardrailVerdict {
            rule: "refunds".into(),
            action: "flag".into(),
            stage: "output".into(),
            kind: "keywords".into(),
            matches: 1,
            detail: String::new(),
        },
    ];
    let screen = screen(&detail_app(Some(trace), None), 100, 30);
    let text = screen.to_string();
    assert!(text.contains("cache hit of 0190b5a8-0000-7000-8000-000000000007: saved 37 tokens"), "{text}");
    assert!(text.contains("guardrail mask-contact mask on input (EMAIL,PHONE)"), "{text}");
    assert!(text.contains("guardrail refunds flag on output"), "{text}");
    insta::assert_snapshot!(screen);
}
