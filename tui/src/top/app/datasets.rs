//! `a` in a trace's detail: adds the open trace to an evaluation dataset. The intent opens a prompt for the
//! dataset's name (the last one used this session already typed); `Enter` checks the name as the daemon does
//! and becomes an `Effect::AddToDataset` for the feed, whose answer (`HostUpdate::DatasetItemsAdded`) is
//! worded here as the footer's notice.
use llmops_proto::v1 as pb;

use crate::safe_output::escape;
use crate::text::one_line;
use crate::top::feed::Effect;
use crate::top::state::{App, Prompt, View};

/// The daemon's bound on dataset (and prompt) names.
pub const MAX_DATASET_NAME_BYTES: usize = 64;

impl App {
    pub(super) fn open_add_to_dataset(&mut self) {
        let Some(detail) = self.detail.as_ref().filter(|_| self.view == View::Detail) else {
            return self.error("open a trace first (Enter in the traces view)".into());
        };
        self.prompt = Some(Prompt::Dataset { input: self.last_dataset.clone(), trace_id: detail.trace_id.clone() });
    }

    /// `Enter` in the dataset prompt (already closed): the add, or why the name cannot be one.
    pub(super) fn add_to_dataset(&mut self, trace_id: String, input: &str, effects: &mut Vec<Effect>) {
        let dataset = input.trim();
        if let Err(why) = check_dataset_name(dataset) {
            return self.error(why);
        }
        self.last_dataset = dataset.to_owned();
        effects.push(Effect::AddToDataset { host: self.focus, trace_id, dataset: dataset.to_owned() });
    }
}

/// The daemon's rule for dataset names: 1 to 64 bytes of ASCII letters, digits, `_`, `.` and `-`.
pub fn check_dataset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("type a dataset name (Esc cancels)".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.len() > MAX_DATASET_NAME_BYTES || !name.chars().all(allowed) {
        let shown: String = name.chars().take(MAX_DATASET_NAME_BYTES).collect();
        return Err(format!(
            "dataset name {shown:?} must be 1 to {MAX_DATASET_NAME_BYTES} bytes of letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// The notice for the answer to `Effect::AddToDataset`, and whether it reads as an error (nothing was added).
/// Whatever the daemon said is escaped and kept on one line.
pub(super) fn outcome(
    trace_id: &str,
    dataset: &str,
    result: Result<pb::AddDatasetItemsResponse, String>,
) -> (String, bool) {
    let shown = |text: &str| one_line(&escape(text));
    let trace_id = shown(trace_id);
    let response = match result {
        Ok(response) => response,
        Err(error) => return (format!("cannot add trace {trace_id} to {}: {}", shown(dataset), shown(&error)), true),
    };
    let name = response.dataset.as_ref().map(|d| d.name.as_str()).filter(|name| !name.is_empty()).unwrap_or(dataset);
    let name = shown(name);
    if response.added > 0 {
        let count = match response.dataset.as_ref().map(|d| d.items) {
            Some(1) => " (1 item)".to_owned(),
            Some(items) => format!(" ({items} items)"),
            None => String::new(),
        };
        return (format!("added trace {trace_id} to {name}{count}"), false);
    }
    match response.skipped_reasons.first() {
        Some(reason) => (format!("not added to {name}: {}", shown(reason)), true),
        None if response.skipped > 0 => (format!("trace {trace_id} not added to {name}: the daemon skipped it"), true),
        None => (format!("trace {trace_id} not added to {name}: nothing was added"), true),
    }
}
