//! The evals view: the evaluation runs (listed when the view opens and polled while it is open), one run's
//! detail (`GetEvalRun`: verdict, evaluators, items) and one item's answer against its reference. Three levels
//! in one view: `Enter` goes in, `Esc` closes the innermost.
use llmops_proto::v1 as pb;

use crate::top::feed::Effect;
use crate::top::state::App;

/// Runs listed, newest first; older ones are left to `llmopsctl eval runs`.
pub const MAX_RUNS: usize = 200;
/// Item results fetched with a run (the first `GetEvalRun` page).
pub const MAX_ITEMS: u32 = 1000;

/// The evals view's state, for the focused host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvalsUi {
    /// Newest first; `None` until the first listing answers.
    pub runs: Option<Vec<pb::EvalRun>>,
    /// Why the last listing failed (the runs listed before stay).
    pub error: Option<String>,
    /// Index into `runs`.
    pub selected: usize,
    /// The run opened with `Enter`.
    pub open: Option<EvalRunUi>,
}

/// One run's detail, filled by `GetEvalRun`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRunUi {
    pub run_id: String,
    /// `None` while loading; the error is a sentence.
    pub detail: Option<Result<pb::EvalRunDetail, String>>,
    /// Index into the detail's items.
    pub selected: usize,
    /// The item shown side by side with its reference, by index into the detail's items.
    pub item: Option<usize>,
    /// Lines scrolled in the item's view.
    pub scroll: u16,
}

impl EvalRunUi {
    fn loading(run_id: String) -> Self {
        Self { run_id, detail: None, selected: 0, item: None, scroll: 0 }
    }

    /// The items loaded so far (none while loading or after an error).
    pub fn items(&self) -> &[pb::EvalItemResult] {
        match &self.detail {
            Some(Ok(detail)) => &detail.items,
            _ => &[],
        }
    }

    /// The item opened with `Enter`, if any.
    pub fn open_item(&self) -> Option<&pb::EvalItemResult> {
        self.item.and_then(|index| self.items().get(index))
    }
}

impl EvalsUi {
    pub fn runs(&self) -> &[pb::EvalRun] {
        self.runs.as_deref().unwrap_or_default()
    }

    /// A new listing: replaces the runs, keeping the same run selected when it is still listed.
    pub fn apply_runs(&mut self, result: Result<Vec<pb::EvalRun>, String>) {
        match result {
            Ok(mut runs) => {
                runs.truncate(MAX_RUNS);
                let selected_id = self.runs().get(self.selected).map(|run| run.id.clone());
                if let Some(index) = selected_id.and_then(|id| runs.iter().position(|run| run.id == id)) {
                    self.selected = index;
                }
                self.runs = Some(runs);
                self.error = None;
                self.settle();
            }
            Err(error) => self.error = Some(error),
        }
    }

    /// The answer to `Effect::FetchEvalRun`; ignored unless that run is still the open one.
    pub fn apply_detail(&mut self, id: &str, result: Result<pb::EvalRunDetail, String>) {
        if let Some(open) = self.open.as_mut().filter(|open| open.run_id == id) {
            open.detail = Some(result);
            open.selected = open.selected.min(open.items().len().saturating_sub(1));
        }
    }

    /// `Esc` inside the view: closes the open item, else the open run; false when neither is open.
    pub fn back(&mut self) -> bool {
        match &mut self.open {
            Some(open) if open.item.is_some() => {
                open.item = None;
                open.scroll = 0;
            }
            Some(_) => self.open = None,
            None => return false,
        }
        true
    }

    /// Moves the innermost list, or scrolls the open item, to `target(current, len)`.
    pub fn move_selection(&mut self, target: impl Fn(usize, usize) -> usize) {
        let runs = self.runs().len();
        match &mut self.open {
            None => self.selected = target(self.selected, runs),
            Some(open) => match open.open_item().map(item_lines) {
                Some(lines) => {
                    let scroll = target(usize::from(open.scroll), lines);
                    open.scroll = u16::try_from(scroll).unwrap_or(u16::MAX);
                }
                None => open.selected = target(open.selected, open.items().len()),
            },
        }
    }

    /// Clamps the selections to their lists.
    pub fn settle(&mut self) {
        self.selected = self.selected.min(self.runs().len().saturating_sub(1));
        if let Some(open) = &mut self.open {
            open.selected = open.selected.min(open.items().len().saturating_sub(1));
            if open.item.is_some_and(|index| index >= open.items().len()) {
                open.item = None;
            }
        }
    }
}

impl App {
    /// `Enter` in the evals view: open the selected run (fetching its detail), or the selected item.
    pub(super) fn select_eval(&mut self, effects: &mut Vec<Effect>) {
        let host = self.focus;
        let evals = &mut self.evals;
        match &mut evals.open {
            None => {
                let Some(id) = evals.runs().get(evals.selected).map(|run| run.id.clone()) else { return };
                evals.open = Some(EvalRunUi::loading(id.clone()));
                effects.push(Effect::FetchEvalRun { host, id });
            }
            Some(open) if open.item.is_none() => {
                if open.selected < open.items().len() {
                    (open.item, open.scroll) = (Some(open.selected), 0);
                }
            }
            Some(_) => {}
        }
    }
}

/// About how many lines an item view scrolls through (answers wrapped in half an 80-column screen), so scrolling
/// stops near the end rather than far past it.
fn item_lines(item: &pb::EvalItemResult) -> usize {
    const FIXED_LINES: usize = 10;
    const PANE_WIDTH: usize = 38;
    let rows = |text: &str| text.lines().map(|line| 1 + line.chars().count() / PANE_WIDTH).sum::<usize>();
    let answer = [&item.against_output, &item.reference].into_iter().map(|text| rows(text)).max().unwrap_or(0);
    let reasoning: usize = item.results.iter().map(|r| 1 + rows(&r.reasoning) / 2).sum();
    FIXED_LINES + rows(&item.output).max(answer) + reasoning + rows(&item.pairwise_reasoning) / 2
}
