//! Guardrails: rules that look at what goes to an engine (input) and what comes back (output) and block, mask
//! or flag it. `rules` compiles the `[[guardrails]]` config (regex sets, keyword automata, PII detectors,
//! classifier routes); this module runs the selected rules over texts and counts verdicts for `/metrics`. The
//! gateway calls it on requests and whole answers, and through its hold-back buffer on streams.
pub mod detectors;
pub mod rules;

pub use rules::{Action, Finding, GuardrailConfig, Rule, RuleKind, RuleSet, Stage};

use crate::trace::model::GuardrailVerdict;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

/// The compiled rules and their verdict counters (one per rule and stage: bounded by the config).
pub struct Guardrails {
    rules: RuleSet,
    /// [rule][stage]: requests the rule fired on.
    fired: Vec<[AtomicU64; 2]>,
    /// Classifier calls that failed or timed out, per rule.
    classifier_failures: Vec<AtomicU64>,
}

/// What the rules said about a set of texts.
#[derive(Debug, Default)]
pub struct Checked {
    /// The first `block` rule that matched.
    pub blocked: Option<usize>,
    pub verdicts: Vec<GuardrailVerdict>,
}

impl Guardrails {
    pub fn new(rules: RuleSet) -> Self {
        let count = rules.rules().len();
        Self {
            rules,
            fired: (0..count).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
            classifier_failures: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn empty() -> Self {
        Self::new(RuleSet::compile(&[]).unwrap_or_else(|_| unreachable!("no rules always compile")))
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules.rules()[index]
    }

    /// The rules for this request and stage; empty (and free) when none is configured.
    pub fn select(&self, route: &str, tenant: &str, stage: Stage) -> Vec<usize> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        self.rules.select(route, tenant, stage)
    }

    /// How many characters a stream must hold back so that the selected rules see a match split across chunks.
    pub fn hold_back_chars(&self, selected: &[usize]) -> usize {
        selected
            .iter()
            .map(|&i| self.rule(i))
            .filter(|rule| rule.classifier.is_none())
            .map(|rule| rule.max_match_chars)
            .max()
            .unwrap_or(0)
    }

    /// Runs the selected pattern rules (classifiers are the caller's: they need an engine) over `texts`: a
    /// `block` match stops there; `mask` replaces its matches in place; `flag` only records. Every rule sees the
    /// texts as they came, so a mask never hides a match from a block rule.
    pub fn check(&self, selected: &[usize], stage: Stage, texts: &mut [&mut String]) -> Checked {
        let mut checked = Checked::default();
        let mut to_mask: Vec<Vec<Finding>> = vec![Vec::new(); texts.len()];
        for &index in selected {
            let rule = self.rule(index);
            if rule.classifier.is_some() {
                continue;
            }
            let mut matches = 0usize;
            let mut tokens = BTreeSet::new();
            for (position, text) in texts.iter().enumerate() {
                if !rule.is_match(text) {
                    continue;
                }
                let mut found = Vec::new();
                rule.find(text, &mut found);
                // A set can say yes where the spans come out empty (e.g. a zero-width match): still a match.
                matches += found.len().max(1);
                tokens.extend(found.iter().map(|f| token_name(&f.token)));
                if rule.action == Action::Mask {
                    to_mask[position].extend(found);
                }
            }
            if matches == 0 {
                continue;
            }
            checked.verdicts.push(self.verdict(
                index,
                stage,
                matches,
                tokens.into_iter().collect::<Vec<_>>().join(","),
            ));
            if rule.action == Action::Block {
                checked.blocked = Some(index);
                return checked;
            }
        }
        for (text, findings) in texts.iter_mut().zip(&to_mask) {
            if !findings.is_empty() {
                **text = rules::mask(text, findings);
            }
        }
        checked
    }

    /// A verdict for the trace, counted for `/metrics`.
    pub fn verdict(&self, index: usize, stage: Stage, matches: usize, detail: String) -> GuardrailVerdict {
        let rule = self.rule(index);
        self.fired[index][stage_slot(stage)].fetch_add(1, Ordering::Relaxed);
        GuardrailVerdict {
            rule: rule.name.clone(),
            action: rule.action.as_str().to_string(),
            stage: stage.as_str().to_string(),
            kind: rule.kind.as_str().to_string(),
            matches: u32::try_from(matches).unwrap_or(u32::MAX),
            detail,
        }
    }

    pub fn classifier_failed(&self, index: usize) {
        self.classifier_failures[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text: verdicts per rule, stage and action; classifier failures per rule.
    pub fn render(&self, text: &mut String) {
        use crate::export::prometheus::{MetricKind, MetricWriter};
        if self.rules.is_empty() {
            return;
        }
        let mut w = MetricWriter::new();
        let verdicts = "llmops_guardrail_verdicts_total";
        let failures = "llmops_guardrail_classifier_failures_total";
        w.family(verdicts, "Requests a guardrail rule fired on, by stage.", MetricKind::Counter);
        w.family(failures, "Classifier calls that failed or timed out.", MetricKind::Counter);
        for (index, rule) in self.rules.rules().iter().enumerate() {
            for stage in [Stage::Input, Stage::Output].into_iter().filter(|&stage| rule.apply_to.covers(stage)) {
                let count = self.fired[index][stage_slot(stage)].load(Ordering::Relaxed);
                let labels =
                    [("rule", rule.name.as_str()), ("stage", stage.as_str()), ("action", rule.action.as_str())];
                w.sample(verdicts, &labels, count as f64);
            }
            if rule.classifier.is_some() {
                let count = self.classifier_failures[index].load(Ordering::Relaxed);
                w.sample(failures, &[("rule", rule.name.as_str())], count as f64);
            }
        }
        text.push_str(&w.finish());
    }
}

fn stage_slot(stage: Stage) -> usize {
    match stage {
        Stage::Input => 0,
        Stage::Output => 1,
    }
}

/// `[EMAIL]` → `EMAIL`: the verdict names what fired, never what matched.
pub fn token_name(token: &str) -> String {
    token.trim_start_matches('[').trim_end_matches(']').to_string()
}
