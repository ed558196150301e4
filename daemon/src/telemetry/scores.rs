//! Feedback score counts since start per route, prompt (id and version), score name and source: how many,
//! how many pass/fail scores passed, the sum of numeric ones. Read by `/metrics` and `GetRequestMetrics`.
//!
//! Label sets stay bounded whatever clients send: routes come from the config; score names past
//! [`MAX_NAMES`] distinct ones count as [`OTHER_NAME`]; prompts past [`MAX_PROMPTS_PER_ROUTE`] per route, and
//! series past [`MAX_SERIES`], count under [`OVERFLOW_LABEL`]. Counters are never dropped (Prometheus expects
//! them to last), so the first names and prompts seen keep their labels.
use crate::sync::MutexExt;
use crate::trace::{Score, ScoreValue, TraceLabels};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

pub const MAX_NAMES: usize = 32;
pub const OTHER_NAME: &str = "other";
pub const MAX_PROMPTS_PER_ROUTE: usize = 32;
pub const MAX_SERIES: usize = 1024;
pub use super::requests::OVERFLOW_LABEL;

/// One series: (route, prompt id, prompt version, name, source) and its counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreStats {
    pub route: String,
    pub prompt_id: String,
    pub prompt_version: String,
    pub name: String,
    pub source: &'static str,
    pub scores: u64,
    pub booleans: u64,
    pub passed: u64,
    pub numbers: u64,
    pub number_sum: f64,
    pub labels: u64,
}

impl ScoreStats {
    /// passed / booleans, without pass/fail scores none.
    pub fn pass_rate(&self) -> Option<f64> {
        (self.booleans > 0).then(|| self.passed as f64 / self.booleans as f64)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.numbers > 0).then(|| self.number_sum / self.numbers as f64)
    }
}

type Key = (String, String, String, String, &'static str);

#[derive(Default)]
struct Inner {
    names: HashSet<String>,
    prompts: HashMap<String, HashSet<(String, String)>>,
    series: BTreeMap<Key, ScoreStats>,
}

#[derive(Default)]
pub struct ScoreMetrics {
    inner: Mutex<Inner>,
}

impl ScoreMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one stored score of a trace with these labels.
    pub fn observe(&self, trace: &TraceLabels, score: &Score) {
        let mut inner = self.inner.locked();
        let name = inner.name_label(&score.name);
        let (prompt_id, prompt_version) = inner.prompt_labels(trace);
        let mut key: Key = (trace.route.clone(), prompt_id, prompt_version, name, score.source.as_str());
        if !inner.series.contains_key(&key) && inner.series.len() >= MAX_SERIES {
            let other = || OVERFLOW_LABEL.to_owned();
            key = (other(), other(), other(), other(), score.source.as_str());
        }
        let stats =
            inner.series.entry(key).or_insert_with_key(|(route, prompt_id, prompt_version, name, source)| ScoreStats {
                route: route.clone(),
                prompt_id: prompt_id.clone(),
                prompt_version: prompt_version.clone(),
                name: name.clone(),
                source,
                ..ScoreStats::default()
            });
        stats.scores += 1;
        match &score.value {
            ScoreValue::Passed(passed) => {
                stats.booleans += 1;
                stats.passed += u64::from(*passed);
            }
            ScoreValue::Number(value) => {
                stats.numbers += 1;
                stats.number_sum += value;
            }
            ScoreValue::Label(_) => stats.labels += 1,
        }
    }

    /// Every series, sorted by route, prompt, name and source.
    pub fn snapshot(&self) -> Vec<ScoreStats> {
        self.inner.locked().series.values().cloned().collect()
    }

    /// The label a score name is counted under (the first [`MAX_NAMES`] keep theirs).
    pub fn name_label(&self, name: &str) -> String {
        self.inner.locked().name_label(name)
    }
}

impl Inner {
    fn name_label(&mut self, name: &str) -> String {
        if self.names.contains(name) {
            return name.to_owned();
        }
        if self.names.len() < MAX_NAMES {
            self.names.insert(name.to_owned());
            return name.to_owned();
        }
        OTHER_NAME.to_owned()
    }

    fn prompt_labels(&mut self, trace: &TraceLabels) -> (String, String) {
        let prompt = (trace.prompt_id.clone(), trace.prompt_version.clone());
        let known = self.prompts.entry(trace.route.clone()).or_default();
        if known.contains(&prompt) || known.len() < MAX_PROMPTS_PER_ROUTE {
            known.insert(prompt.clone());
            return prompt;
        }
        (OVERFLOW_LABEL.to_owned(), OVERFLOW_LABEL.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ScoreSource;

    fn score(name: &str, value: ScoreValue, source: ScoreSource) -> Score {
        Score {
            id: String::new(),
            trace_id: String::new(),
            name: name.into(),
            value,
            comment: String::new(),
            source,
            created_at_unix_ms: 0,
        }
    }

    fn labels(route: &str, version: &str) -> TraceLabels {
        TraceLabels {
            route: route.into(),
            prompt_id: "support".into(),
            prompt_version: version.into(),
            ..TraceLabels::default()
        }
    }

    #[test]
    fn pass_rates_and_means_per_route_prompt_name_and_source() {
        let metrics = ScoreMetrics::new();
        for passed in [true, true, false, true] {
            metrics.observe(&labels("chat", "1"), &score("thumbs", ScoreValue::Passed(passed), ScoreSource::Human));
        }
        metrics.observe(&labels("chat", "2"), &score("thumbs", ScoreValue::Passed(false), ScoreSource::Human));
        metrics.observe(&labels("chat", "1"), &score("quality", ScoreValue::Number(0.5), ScoreSource::Llm));
        metrics.observe(&labels("chat", "1"), &score("quality", ScoreValue::Number(1.0), ScoreSource::Llm));
        metrics.observe(&labels("chat", "1"), &score("tone", ScoreValue::Label("curt".into()), ScoreSource::Code));
        let rows = metrics.snapshot();
        let row = |name: &str, version: &str| {
            rows.iter().find(|r| r.name == name && r.prompt_version == version).expect("series").clone()
        };
        assert_eq!(rows.len(), 4);
        let thumbs = row("thumbs", "1");
        assert_eq!((thumbs.scores, thumbs.booleans, thumbs.passed, thumbs.source), (4, 4, 3, "human"));
        assert_eq!(thumbs.pass_rate(), Some(0.75));
        assert_eq!(row("thumbs", "2").pass_rate(), Some(0.0));
        let quality = row("quality", "1");
        assert_eq!((quality.mean(), quality.pass_rate(), quality.source), (Some(0.75), None, "llm"));
        assert_eq!(row("tone", "1").labels, 1);
    }

    #[test]
    fn names_prompts_and_series_stay_bounded() {
        let metrics = ScoreMetrics::new();
        let thumbs = |name: &str| score(name, ScoreValue::Passed(true), ScoreSource::Human);
        for i in 0..MAX_NAMES + 10 {
            metrics.observe(&labels("chat", "1"), &thumbs(&format!("n{i}")));
        }
        let names: HashSet<String> = metrics.snapshot().into_iter().map(|r| r.name).collect();
        assert_eq!(names.len(), MAX_NAMES + 1);
        assert!(names.contains(OTHER_NAME) && names.contains("n0") && !names.contains(&format!("n{MAX_NAMES}")));
        assert_eq!(metrics.name_label("n3"), "n3", "a name seen early keeps its label");

        for i in 0..MAX_PROMPTS_PER_ROUTE + 5 {
            metrics.observe(&labels("chat", &format!("v{i}")), &thumbs("n0"));
        }
        let versions: HashSet<String> =
            metrics.snapshot().into_iter().filter(|r| r.route == "chat").map(|r| r.prompt_version).collect();
        assert_eq!(versions.len(), MAX_PROMPTS_PER_ROUTE + 1, "{versions:?}");
        assert!(versions.contains(OVERFLOW_LABEL));

        // Routes are configured, but even many of them cannot grow the series past the bound.
        for i in 0..MAX_SERIES {
            metrics.observe(&labels(&format!("r{i}"), "1"), &thumbs("n0"));
        }
        let rows = metrics.snapshot();
        assert!(rows.len() <= MAX_SERIES + ScoreSource::ALL.len(), "{}", rows.len());
        assert!(rows.iter().any(|r| r.route == OVERFLOW_LABEL && r.scores > 0));
    }
}
