//! The `/` and `:` prompts: editing, completion, and running a command line.
use crate::top::command::{self, Command, SORT_COLUMNS};
use crate::top::feed::Effect;
use crate::top::state::{App, Prompt, View};

impl App {
    /// Typing in the filter prompt filters as you type; in the command prompt it drops stale completions; in the
    /// dataset prompt it only edits the name.
    pub(super) fn edit_prompt(&mut self, edit: impl FnOnce(&mut String)) {
        match &mut self.prompt {
            Some(Prompt::Filter { input }) => {
                edit(input);
                self.traces.filter = input.clone();
                self.traces.selected = 0;
            }
            Some(Prompt::Command { input, completions, pick }) => {
                edit(input);
                completions.clear();
                *pick = 0;
            }
            Some(Prompt::Dataset { input, .. }) => edit(input),
            None => {}
        }
    }

    /// First `Tab` completes (or offers the choices), further ones cycle through them.
    pub(super) fn complete_command(&mut self) {
        let hosts = self.hosts.len();
        let Some(Prompt::Command { input, completions, pick }) = &mut self.prompt else { return };
        if completions.is_empty() {
            *completions = command::completions(input, hosts);
            *pick = 0;
        } else {
            *pick = (*pick + 1) % completions.len();
        }
        if let Some(choice) = completions.get(*pick) {
            input.clone_from(choice);
        }
        // A single match is simply taken; the next Tab completes from it afresh (e.g. `sort ` to its columns).
        if completions.len() == 1 {
            completions.clear();
        }
    }

    pub(super) fn submit_prompt(&mut self, effects: &mut Vec<Effect>) {
        match self.prompt.take() {
            Some(Prompt::Command { input, .. }) => match command::parse_command(&input, self.hosts.len()) {
                Ok(command) => self.run_command(command, effects),
                Err(error) => self.error(error),
            },
            Some(Prompt::Dataset { input, trace_id }) => self.add_to_dataset(trace_id, &input, effects),
            // The filter was applied while typing; Enter keeps it.
            Some(Prompt::Filter { .. }) | None => {}
        }
    }

    pub(super) fn run_command(&mut self, command: Command, effects: &mut Vec<Effect>) {
        match command {
            Command::Show(view) => self.show(view, effects),
            Command::Help => self.help = true,
            Command::Quit => self.quit = true,
            Command::Follow(follow) => {
                self.traces.follow = follow;
                self.go(View::Traces, effects);
            }
            Command::Sort(Some(key)) => self.traces.sort = key,
            Command::Sort(None) => self.cycle_sort(),
            Command::Filter(filter) => {
                (self.traces.filter, self.traces.selected) = (filter, 0);
                self.go(View::Traces, effects);
            }
            Command::Host(index) => {
                self.focus_host(index);
                self.go(View::Overview, effects);
            }
            Command::Replay => self.open_replay(),
            Command::Rerun => {
                if self.view == View::Detail {
                    self.open_replay();
                }
                if self.view == View::Replay {
                    self.open_route_picker();
                } else if self.notice.is_none() {
                    self.error("open a trace first (Enter in the traces view)".into());
                }
            }
            Command::Ack if self.view == View::Alerts => self.acknowledge(effects),
            Command::Ack => self.error("ack works in the alerts view (3): select an alert first".into()),
            Command::Nothing => {}
        }
    }

    pub(super) fn cycle_sort(&mut self) {
        let at = SORT_COLUMNS.iter().position(|(_, key)| *key == self.traces.sort).unwrap_or(0);
        self.traces.sort = SORT_COLUMNS[(at + 1) % SORT_COLUMNS.len()].1;
    }
}
