//! Thumbs up / thumbs down on the open trace: the intent becomes an `Effect::Thumbs` for the feed, whose
//! answer (`HostUpdate::ScoreAdded`) adds the score to the detail view.
use crate::top::feed::Effect;
use crate::top::state::{App, View};

impl App {
    pub(super) fn thumbs(&mut self, up: bool, effects: &mut Vec<Effect>) {
        let Some(detail) = self.detail.as_ref().filter(|_| self.view == View::Detail) else {
            return self.error("open a trace first (Enter in the traces view)".into());
        };
        effects.push(Effect::Thumbs { host: self.focus, trace_id: detail.trace_id.clone(), up });
    }
}
