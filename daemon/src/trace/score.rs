//! A feedback score on a trace, as the store keeps it: a name, a number, pass/fail or label, who gave it and
//! an optional comment. Validation of what clients send is in `feedback`; this is the checked value.

/// The most scores one trace keeps; past it a new one is refused (a client looping on feedback cannot fill
/// the disk through one trace).
pub const MAX_SCORES_PER_TRACE: u64 = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreValue {
    /// A finite number.
    Number(f64),
    /// Pass (true) or fail (false).
    Passed(bool),
    Label(String),
}

impl ScoreValue {
    /// `number`, `boolean` or `label`: the stored kind and a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Number(_) => "number",
            Self::Passed(_) => "boolean",
            Self::Label(_) => "label",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreSource {
    #[default]
    Human,
    Llm,
    Code,
}

impl ScoreSource {
    pub const ALL: [ScoreSource; 3] = [Self::Human, Self::Llm, Self::Code];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Llm => "llm",
            Self::Code => "code",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub id: String,
    pub trace_id: String,
    pub name: String,
    pub value: ScoreValue,
    pub comment: String,
    pub source: ScoreSource,
    pub created_at_unix_ms: i64,
}

/// What a score is counted under in metrics and drift: its trace's route, model and prompt, and its tenant
/// (a client may score only its own tenant's traces).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceLabels {
    pub route: String,
    pub model: String,
    pub prompt_id: String,
    pub prompt_version: String,
    pub tenant: String,
}

impl TraceLabels {
    pub fn of(trace: &super::Trace) -> Self {
        Self {
            route: trace.route.clone(),
            model: trace.model_served.clone(),
            prompt_id: trace.prompt_id.clone(),
            prompt_version: trace.prompt_version.clone(),
            tenant: trace.tenant.clone(),
        }
    }
}

/// Why the writer did not store a score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreRefused {
    #[error("trace {0} already has {MAX_SCORES_PER_TRACE} scores, the most one trace keeps")]
    TooMany(String),
    #[error("the trace store could not write the score: {0}")]
    Write(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_kinds_have_stable_names() {
        for source in ScoreSource::ALL {
            assert_eq!(ScoreSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(ScoreSource::parse("Human"), None, "names are exact");
        let kinds = [ScoreValue::Number(0.5), ScoreValue::Passed(true), ScoreValue::Label("good".into())];
        assert_eq!(kinds.map(|v| v.kind()), ["number", "boolean", "label"]);
    }
}
