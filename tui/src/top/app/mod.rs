//! How intents and updates change the app. Everything here runs in the main loop, synchronously; whatever
//! needs the daemon comes back as an `Effect` for the feed.
use llmops_proto::v1 as pb;

use crate::alert_enums;

use super::feed::Effect;
use super::host::HostUpdate;
use super::input::Intent;
use super::state::{App, DetailUi, Notice, Playback, Prompt, SortKey, TracesUi, View};
use super::tail;
use super::ui::Hitmap;

/// Views remembered for `Esc`.
const BACK_DEPTH: usize = 32;
/// Rows one wheel notch moves.
const WHEEL_ROWS: isize = 3;
/// Page size before the first frame says how tall the list is.
const DEFAULT_PAGE: usize = 10;

enum Move {
    By(isize),
    To(usize),
}

impl App {
    /// Performs one intent; returns what the feed must do for it.
    pub fn apply(&mut self, intent: Intent, hits: &Hitmap) -> Vec<Effect> {
        let mut effects = Vec::new();
        let page = hits.list.map_or(DEFAULT_PAGE, |list| usize::from(list.area.height).max(1));
        let page = isize::try_from(page).unwrap_or(isize::MAX);
        // A notice answers the last action; the next one replaces or clears it.
        self.notice = None;
        match intent {
            Intent::Quit => self.quit = true,
            Intent::ToggleHelp => self.help = !self.help,
            Intent::Back => self.back_out(),
            Intent::NextView => self.cycle_view(true, &mut effects),
            Intent::PreviousView => self.cycle_view(false, &mut effects),
            Intent::Show(view) => self.show(view, &mut effects),
            Intent::OpenCommand => {
                self.prompt = Some(Prompt::Command { input: String::new(), completions: Vec::new(), pick: 0 })
            }
            Intent::OpenFilter => self.prompt = Some(Prompt::Filter { input: self.traces.filter.clone() }),
            Intent::Up => self.move_selection(Move::By(-1), &mut effects),
            Intent::Down => self.move_selection(Move::By(1), &mut effects),
            Intent::Left | Intent::Right => {}
            Intent::First => self.move_selection(Move::To(0), &mut effects),
            Intent::Last => self.move_selection(Move::To(usize::MAX), &mut effects),
            Intent::PageUp => self.move_selection(Move::By(-page), &mut effects),
            Intent::PageDown => self.move_selection(Move::By(page), &mut effects),
            Intent::Click { column, row } => {
                let inside = hits.list.filter(|list| {
                    let area = list.area;
                    (area.x..area.x + area.width).contains(&column) && (area.y..area.y + area.height).contains(&row)
                });
                if let Some(list) = inside {
                    let index = list.first_index + usize::from(row - list.area.y);
                    self.move_selection(Move::To(index), &mut effects);
                }
            }
            Intent::Scroll { down } => {
                self.move_selection(Move::By(if down { WHEEL_ROWS } else { -WHEEL_ROWS }), &mut effects)
            }
            Intent::Select => self.select(&mut effects),
            Intent::ToggleFollow => {
                self.traces.follow = !self.traces.follow;
                if self.traces.follow {
                    self.traces.selected = 0;
                }
            }
            Intent::CycleSort => self.cycle_sort(),
            Intent::ReverseSort => self.traces.descending = !self.traces.descending,
            Intent::OpenReplay => self.open_replay(),
            Intent::Thumbs { up } => self.thumbs(up, &mut effects),
            Intent::OpenAddToDataset => self.open_add_to_dataset(),
            Intent::Acknowledge => self.acknowledge(&mut effects),
            Intent::TogglePlay => self.with_playback(Playback::toggle),
            Intent::Faster => self.with_playback(Playback::faster),
            Intent::Slower => self.with_playback(Playback::slower),
            Intent::Step { forward } => self.with_playback(|p| p.step(forward)),
            Intent::OpenRoutePicker => self.open_route_picker(),
            Intent::Type(c) => self.edit_prompt(|input| input.push(c)),
            Intent::Erase => self.edit_prompt(|input| {
                input.pop();
            }),
            Intent::Complete => self.complete_command(),
            Intent::Submit => self.submit_prompt(&mut effects),
        }
        self.settle();
        effects
    }

    /// Merges one update from host `host`'s feed.
    pub fn apply_update(&mut self, host: usize, update: HostUpdate) {
        if host >= self.hosts.len() {
            return;
        }
        let focused = host == self.focus;
        match update {
            HostUpdate::TraceDetail { id, result } => {
                if let Some(detail) = self.detail.as_mut().filter(|d| focused && d.trace_id == id) {
                    match result {
                        Ok(trace) => (detail.trace, detail.error) = (Some(trace), None),
                        Err(error) => detail.error = Some(error),
                    }
                }
            }
            HostUpdate::TraceGpu { id, result } => {
                if let Some(detail) = self.detail.as_mut().filter(|d| focused && d.trace_id == id) {
                    detail.gpu = Some(result);
                }
            }
            HostUpdate::ScoreAdded(score) => {
                let open = self.detail.as_mut().filter(|d| focused && d.trace_id == score.trace_id);
                if let Some(trace) = open.and_then(|detail| detail.trace.as_mut()) {
                    trace.scores.push(score);
                }
            }
            HostUpdate::Replay(event) => {
                if let Some(rerun) = self.replay.as_mut().and_then(|r| r.rerun.as_mut()).filter(|_| focused) {
                    replay::apply_replay(rerun, event);
                }
            }
            // Another host's answers (its view was left) fall through to `Host::apply`, which drops them.
            HostUpdate::EvalRuns(result) if focused => self.evals.apply_runs(result),
            HostUpdate::EvalRunDetail { id, result } if focused => self.evals.apply_detail(&id, result),
            HostUpdate::DatasetItemsAdded { trace_id, dataset, result } => {
                let (text, error) = datasets::outcome(&trace_id, &dataset, result);
                self.notify(host, text, error);
            }
            HostUpdate::Notice { text, error } => self.notify(host, text, error),
            HostUpdate::TraceEvent(event) => {
                if focused && !self.traces.follow {
                    self.keep_paused_row(&event);
                }
                self.hosts[host].apply(HostUpdate::TraceEvent(event));
            }
            update => self.hosts[host].apply(update),
        }
        if focused {
            if self.traces.follow {
                self.traces.selected = 0;
            } else if self.traces.filter.is_empty() {
                // Exact without a filter; with one, `settle` clamps before the next frame.
                let tail = &self.host().traces;
                let rows = tail.in_flight.len() + tail.finished.len();
                self.traces.selected = self.traces.selected.min(rows.saturating_sub(1));
            }
        }
    }

    /// Whether the screen as it is now shows what `update` changes (so it needs a redraw).
    pub fn shows(&self, host: usize, update: &HostUpdate) -> bool {
        use HostUpdate as U;
        let view = self.view;
        match update {
            // The link and the daemon's version and uptime are in every header; notices in every footer.
            U::Link(_) | U::Status(_) | U::Notice { .. } | U::DatasetItemsAdded { .. } | U::Unavailable { .. } => true,
            _ if view == View::Fleet => !matches!(
                update,
                U::Traces(_)
                    | U::TraceEvent(_)
                    | U::TracesMissed(_)
                    | U::EngineLogs(_)
                    | U::TraceDetail { .. }
                    | U::TraceGpu { .. }
                    | U::Replay(_)
                    | U::ScoreAdded(_)
                    | U::EvalRuns(_)
                    | U::EvalRunDetail { .. }
            ),
            _ if host != self.focus => false,
            U::Telemetry(_) | U::TelemetryDelta(_) | U::Metrics(_) => view == View::Overview,
            U::Budgets(_) | U::BudgetsChanged(_) => matches!(view, View::Overview | View::Budgets),
            U::Alerts(_) | U::AlertEvent(_) => matches!(view, View::Overview | View::Alerts),
            U::Traces(_) | U::TraceEvent(_) | U::TracesMissed(_) => view == View::Traces,
            U::EngineLogs(_) => view == View::Budgets,
            U::TraceDetail { .. } | U::TraceGpu { .. } | U::ScoreAdded(_) => view == View::Detail,
            U::Replay(_) => view == View::Replay,
            U::EvalRuns(_) | U::EvalRunDetail { .. } => view == View::Evals,
        }
    }

    /// Clamps every selection to its list; the main loop calls it before drawing.
    pub fn settle(&mut self) {
        let last = |len: usize| len.saturating_sub(1);
        self.focus = self.focus.min(last(self.hosts.len()));
        self.fleet_selected = self.fleet_selected.min(last(self.hosts.len()));
        self.alerts_selected = self.alerts_selected.min(last(self.host().alerts.len()));
        self.engine_selected = self.engine_selected.min(last(self.engines().len()));
        self.evals.settle();
        self.traces.selected =
            if self.traces.follow { 0 } else { self.traces.selected.min(last(self.trace_rows().len())) };
    }

    fn trace_rows(&self) -> Vec<&pb::Trace> {
        tail::visible(&self.host().traces, &self.traces)
    }

    fn engines(&self) -> &[pb::EngineStatus] {
        self.host().status.as_ref().map_or(&[], |s| s.engines.as_slice())
    }

    /// While paused in the default order, new rows appear above the selected one; shift it so the same trace
    /// stays selected (assuming, as is usual, it sits below the running ones).
    fn keep_paused_row(&mut self, event: &pb::TraceEvent) {
        let Some(trace) = &event.trace else { return };
        if self.traces.sort != SortKey::Time || !self.traces.descending || !tail::matches(&self.traces.filter, trace) {
            return;
        }
        let was_running = self.host().traces.in_flight.iter().any(|t| t.id == trace.id);
        let adds_a_row = match pb::trace_event::Kind::try_from(event.kind) {
            Ok(pb::trace_event::Kind::Started) => !was_running,
            // Moving from the running rows to the top of the finished ones does not shift rows below.
            Ok(pb::trace_event::Kind::Finished) => !was_running,
            _ => false,
        };
        if adds_a_row {
            self.traces.selected += 1;
        }
    }

    fn go(&mut self, view: View, effects: &mut Vec<Effect>) {
        if view == self.view {
            return;
        }
        self.back.push(self.view);
        if self.back.len() > BACK_DEPTH {
            self.back.remove(0);
        }
        self.view = view;
        if view == View::Budgets {
            self.fetch_logs(effects);
        }
    }

    fn show(&mut self, view: View, effects: &mut Vec<Effect>) {
        match view {
            View::Fleet if self.hosts.len() < 2 => {}
            View::Detail if self.detail.is_none() => {}
            View::Replay if self.replay.is_none() => {}
            view => self.go(view, effects),
        }
    }

    /// `Tab` order: fleet (several hosts), overview, traces, alerts, budgets, evals; detail and replay count as traces.
    fn cycle_view(&mut self, forward: bool, effects: &mut Vec<Effect>) {
        let mut order = vec![View::Overview, View::Traces, View::Alerts, View::Budgets, View::Evals];
        if self.hosts.len() > 1 {
            order.insert(0, View::Fleet);
        }
        let current = match self.view {
            View::Detail | View::Replay => View::Traces,
            view => view,
        };
        let at = order.iter().position(|v| *v == current).unwrap_or(0);
        let next = if forward { (at + 1) % order.len() } else { (at + order.len() - 1) % order.len() };
        self.go(order[next], effects);
    }

    /// `Esc`: the innermost open thing closes; with nothing open, the previous view comes back.
    fn back_out(&mut self) {
        if self.help {
            self.help = false;
        } else if let Some(prompt) = self.prompt.take() {
            if matches!(prompt, Prompt::Filter { .. }) {
                self.traces.filter.clear();
                self.traces.selected = 0;
            }
        } else if let Some(picker) = self.replay.as_mut().filter(|_| self.view == View::Replay).map(|r| &mut r.picker) {
            if picker.take().is_none() {
                self.pop_view();
            }
        } else if self.view != View::Evals || !self.evals.back() {
            self.pop_view();
        }
    }

    fn pop_view(&mut self) {
        if let Some(view) = self.back.pop() {
            self.view = view;
        } else if matches!(self.view, View::Detail | View::Replay) {
            self.view = View::Traces;
        }
    }

    fn move_selection(&mut self, to: Move, effects: &mut Vec<Effect>) {
        let target = |current: usize, len: usize| {
            let index = match to {
                Move::By(delta) => current.saturating_add_signed(delta),
                Move::To(index) => index,
            };
            index.min(len.saturating_sub(1))
        };
        match self.view {
            View::Fleet => self.fleet_selected = target(self.fleet_selected, self.hosts.len()),
            View::Overview => {}
            View::Traces => {
                let selected = target(self.traces.selected, self.trace_rows().len());
                // Moving away from the newest row means the user is reading: stop following.
                if selected > 0 {
                    self.traces.follow = false;
                }
                self.traces.selected = selected;
            }
            View::Detail => {
                if let Some(detail) = &mut self.detail {
                    let lines = detail.trace.as_ref().map_or(0, body_lines);
                    let scroll = target(usize::from(detail.scroll), lines);
                    detail.scroll = u16::try_from(scroll).unwrap_or(u16::MAX);
                }
            }
            View::Alerts => self.alerts_selected = target(self.alerts_selected, self.host().alerts.len()),
            View::Budgets => {
                let selected = target(self.engine_selected, self.engines().len());
                if selected != self.engine_selected {
                    self.engine_selected = selected;
                    self.fetch_logs(effects);
                }
            }
            View::Replay => {
                if let Some(picker) = self.replay.as_mut().and_then(|r| r.picker.as_mut()) {
                    picker.selected = target(picker.selected, picker.routes.len());
                }
            }
            View::Evals => self.evals.move_selection(target),
        }
    }

    fn fetch_logs(&mut self, effects: &mut Vec<Effect>) {
        let engine = self.engines().get(self.engine_selected).map(|e| e.name.clone());
        if let Some(engine) = engine {
            effects.push(Effect::FetchLogs { host: self.focus, engine });
        }
    }

    /// `Enter`: drill into the selected host, open the selected trace, or start the picked re-run.
    fn select(&mut self, effects: &mut Vec<Effect>) {
        match self.view {
            View::Fleet => {
                self.focus_host(self.fleet_selected);
                self.go(View::Overview, effects);
            }
            View::Traces => {
                let Some(id) = self.trace_rows().get(self.traces.selected).map(|t| t.id.clone()) else {
                    return;
                };
                self.detail = Some(DetailUi { trace_id: id.clone(), trace: None, error: None, scroll: 0, gpu: None });
                self.go(View::Detail, effects);
                effects.push(Effect::FetchTrace { host: self.focus, id });
            }
            View::Replay => self.start_rerun(effects),
            View::Evals => self.select_eval(effects),
            _ => {}
        }
    }

    /// Per-host views start fresh on another host; the filter and sort are the user's and stay.
    fn focus_host(&mut self, index: usize) {
        if index == self.focus || index >= self.hosts.len() {
            return;
        }
        self.focus = index;
        let (sort, descending) = (self.traces.sort, self.traces.descending);
        self.traces =
            TracesUi { filter: std::mem::take(&mut self.traces.filter), sort, descending, ..TracesUi::default() };
        (self.alerts_selected, self.engine_selected) = (0, 0);
        (self.detail, self.replay) = (None, None);
        self.evals = evals::EvalsUi::default();
        self.back.retain(|v| !matches!(v, View::Detail | View::Replay));
    }

    fn acknowledge(&mut self, effects: &mut Vec<Effect>) {
        let Some(alert) = self.host().alerts.get(self.alerts_selected) else {
            return self.error("no alert selected".into());
        };
        match alert_enums::state(alert) {
            pb::AlertState::Resolved => self.error(format!("{} is resolved already", alert.title)),
            pb::AlertState::Acknowledged => {
                let text = format!("{} was acknowledged already by {}", alert.title, alert.acknowledged_by);
                self.notice = Some(Notice { text, error: false });
            }
            _ => effects.push(Effect::Ack { host: self.focus, alert_id: alert.id.clone() }),
        }
    }

    /// An action's outcome from host `host`, named when there are several.
    fn notify(&mut self, host: usize, text: String, error: bool) {
        let text = if self.hosts.len() > 1 { format!("{}: {text}", self.hosts[host].address) } else { text };
        self.notice = Some(Notice { text, error });
    }

    fn error(&mut self, text: String) {
        self.notice = Some(Notice { text, error: true });
    }
}

/// A generous count of the detail view's lines, so scrolling stops near the end rather than far past it.
fn body_lines(trace: &pb::Trace) -> usize {
    const FIXED_LINES: usize = 40;
    FIXED_LINES + trace.attempts.len() * 2 + trace.prompt_text.lines().count() + trace.response_text.lines().count()
}

mod datasets;
#[cfg(test)]
mod datasets_tests;
pub mod evals;
#[cfg(test)]
mod evals_tests;
mod feedback;
mod prompt;
mod replay;
#[cfg(test)]
mod tests;
