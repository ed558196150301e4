//! Replay: opening a trace's playback, the route picker, starting a re-run and following its stream.
use crate::top::feed::Effect;
use crate::top::host::ReplayUpdate;
use crate::top::state::{App, DetailUi, Playback, ReRun, ReplayUi, RoutePicker, View};

impl App {
    pub(super) fn open_replay(&mut self) {
        let trace = match &self.detail {
            Some(DetailUi { trace: Some(trace), .. }) => trace.clone(),
            Some(DetailUi { error: Some(error), .. }) => return self.error(format!("cannot replay: {error}")),
            Some(_) => return self.error("the trace is still loading".into()),
            None => return self.error("open a trace first (Enter in the traces view)".into()),
        };
        let playback = Playback::from_trace(&trace);
        self.replay = Some(ReplayUi { original: trace, playback, picker: None, rerun: None });
        self.go(View::Replay, &mut Vec::new());
    }

    /// The routes to re-run on, the original's first.
    pub(super) fn open_route_picker(&mut self) {
        let routes: Vec<String> = self.host().status.iter().flat_map(|s| &s.routes).map(|r| r.name.clone()).collect();
        let Some(replay) = self.replay.as_mut().filter(|_| self.view == View::Replay) else {
            return self.error("open a trace's replay first (r in the detail view)".into());
        };
        let original = &replay.original.route;
        let others: Vec<String> = routes.into_iter().filter(|r| r != original).collect();
        let routes = std::iter::once(original.clone()).filter(|r| !r.is_empty()).chain(others).collect();
        replay.picker = Some(RoutePicker { routes, selected: 0 });
    }

    pub(super) fn start_rerun(&mut self, effects: &mut Vec<Effect>) {
        let host = self.focus;
        let Some(replay) = self.replay.as_mut() else { return };
        let Some(picker) = replay.picker.take() else { return };
        let Some(route) = picker.routes.get(picker.selected).cloned() else { return };
        let same_route = route == replay.original.route;
        replay.rerun = Some(ReRun {
            route: route.clone(),
            trace_id: None,
            text: String::new(),
            chunks: 0,
            elapsed_ms: 0.0,
            done: None,
            error: None,
        });
        let route = (!same_route).then_some(route);
        effects.push(Effect::Replay { host, trace_id: replay.original.id.clone(), route });
    }

    pub(super) fn with_playback(&mut self, change: impl FnOnce(&mut Playback)) {
        if let Some(replay) = self.replay.as_mut().filter(|_| self.view == View::Replay) {
            change(&mut replay.playback);
        }
    }
}

pub(super) fn apply_replay(rerun: &mut ReRun, event: ReplayUpdate) {
    match event {
        ReplayUpdate::Started(started) => {
            rerun.trace_id = Some(started.trace_id);
            if !started.route.is_empty() {
                rerun.route = started.route;
            }
        }
        ReplayUpdate::Chunk(chunk) => {
            rerun.text.push_str(&chunk.text);
            rerun.chunks += 1;
            rerun.elapsed_ms = chunk.offset_ms;
        }
        ReplayUpdate::Done(done) => {
            if let Some(replay) = &done.replay {
                rerun.elapsed_ms = replay.latency_ms;
            }
            rerun.done = Some(*done);
        }
        ReplayUpdate::Failed(error) => rerun.error = Some(error),
    }
}
