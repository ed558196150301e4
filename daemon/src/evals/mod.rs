//! The evaluation loop's second half: datasets of chat requests with reference answers (made from recorded
//! traces or imported), and evaluation runs that send every item through the gateway as a client would
//! (routing, budgets, traces tagged with the run), score the answers ([`evaluate`]: deterministic checks, an
//! LLM judge, a pairwise judge) and store a verdict. Kept in `state.db` ([`store`]); the gRPC `EvalService`
//! and `llmopsctl eval` are the ways in.
pub mod evaluate;
pub mod item;
mod item_run;
mod request;
pub mod runner;
pub mod store;
#[cfg(test)]
mod tests;
pub mod verdict;

pub use item::{DatasetItem, NewItem};
pub use store::{Dataset, EvalStore, RunRecord, StoredResult};

/// Bounds on what a client may store or ask for (hostile input): past them, a refusal naming the bound.
pub mod limits {
    pub const MAX_DATASETS: usize = 1_000;
    pub const MAX_ITEMS_PER_DATASET: usize = 10_000;
    /// One item's messages, reference, variables, parameters and metadata together.
    pub const MAX_ITEM_BYTES: usize = 256 * 1024;
    pub const MAX_MESSAGES_PER_ITEM: usize = 256;
    /// Items (or trace ids) one `AddDatasetItems` call may add.
    pub const MAX_ITEMS_PER_ADD: usize = 1_000;
    pub const MAX_DESCRIPTION_BYTES: usize = 1024;
    /// The evaluators' JSON (also checked by `evaluate::spec`).
    pub const MAX_EVALUATORS_JSON_BYTES: usize = 256 * 1024;
    /// A run's parameter overrides.
    pub const MAX_PARAMETERS_BYTES: usize = 16 * 1024;
    pub const DEFAULT_CONCURRENCY: u32 = 4;
    pub const MAX_CONCURRENCY: u32 = 32;
    /// Finished runs kept (with their item results); the oldest go first.
    pub const MAX_RUNS: usize = 1_000;
    /// Runs going on at once (each holds up to `MAX_CONCURRENCY` requests).
    pub const MAX_ACTIVE_RUNS: usize = 4;
    /// A stored answer (output, the against route's output); longer ones are cut on a char boundary.
    pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
    /// A page of dataset items over gRPC stops before this (under tonic's 4 MiB message limit).
    pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The request breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error("no dataset named `{0}` (see `llmopsctl dataset list`)")]
    NoSuchDataset(String),
    #[error("dataset `{0}` already exists")]
    DatasetExists(String),
    #[error("no evaluation run `{0}` (see `llmopsctl eval list`)")]
    NoSuchRun(String),
    /// A count bound would be passed.
    #[error("{0}")]
    Full(String),
    /// The run cannot start as asked (a baseline of another dataset, a route not served, too many runs).
    #[error("{0}")]
    Precondition(String),
    #[error("evaluation store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for EvalError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// `text` cut to at most `max` bytes on a char boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
