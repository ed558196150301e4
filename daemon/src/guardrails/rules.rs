//! Guardrail rules: their `[[guardrails]]` config, the compiled matchers that scan prompts and answers, and `mask`.
//! Validation and compilation live in `rules_compile.rs`.

use std::sync::Arc;
use std::time::Duration;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::detectors;

pub use super::detectors::Detector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Regex,
    Keywords,
    Pii,
    Classifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyTo {
    Input,
    Output,
    #[default]
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Block,
    Mask,
    Flag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    FailClosed,
    FailOpen,
}

/// Which side of the exchange a text comes from: the prompt going in or the answer coming out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Input,
    Output,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Regex => "regex",
            RuleKind::Keywords => "keywords",
            RuleKind::Pii => "pii",
            RuleKind::Classifier => "classifier",
        }
    }
}

impl ApplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Input => "input",
            ApplyTo::Output => "output",
            ApplyTo::Both => "both",
        }
    }

    pub fn covers(self, stage: Stage) -> bool {
        matches!((self, stage), (ApplyTo::Both, _) | (ApplyTo::Input, Stage::Input) | (ApplyTo::Output, Stage::Output))
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Mask => "mask",
            Action::Flag => "flag",
        }
    }
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail_closed",
            OnError::FailOpen => "fail_open",
        }
    }
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Output => "output",
        }
    }
}

/// One `[[guardrails]]` entry as the operator wrote it; `RuleSet::compile` validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    pub name: String,
    pub kind: RuleKind,
    #[serde(default)]
    pub patterns: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub detectors: Vec<Detector>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default)]
    pub apply_to: ApplyTo,
    #[serde(default)]
    pub action: Action,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub mask_token: Option<String>,
    #[serde(default = "default_max_match_chars")]
    pub max_match_chars: usize,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default = "default_unsafe_pattern")]
    pub unsafe_pattern: String,
}

pub fn default_max_match_chars() -> usize {
    128
}

pub fn default_timeout_ms() -> u64 {
    2000
}

pub fn default_unsafe_pattern() -> String {
    r"(?i)^\s*unsafe".to_string()
}

/// A span of scanned text to act on. `token` is an `Arc<str>` because regex and keyword rules take their mask token
/// from config; cloning it per finding is a reference-count bump, not an allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Byte offsets into the scanned text, on char boundaries, `start < end`.
    pub start: usize,
    pub end: usize,
    pub token: Arc<str>,
}

#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub action: Action,
    pub apply_to: ApplyTo,
    pub max_match_chars: usize,
    pub classifier: Option<Classifier>,
    /// Sorted and deduplicated so that `applies` can binary-search them; empty means every one.
    routes: Vec<String>,
    tenants: Vec<String>,
    matcher: Matcher,
}

/// A rule whose verdict comes from asking a guard model (for example Llama Guard) served on `route`.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub route: String,
    pub timeout: Duration,
    pub on_error: OnError,
    unsafe_pattern: Regex,
}

impl Classifier {
    /// Whether the classifier's answer marks the checked text as unsafe.
    pub fn is_unsafe(&self, answer: &str) -> bool {
        self.unsafe_pattern.is_match(answer)
    }
}

#[derive(Debug)]
enum Matcher {
    Regex(PatternMatcher),
    Keywords { automaton: AhoCorasick, token: Arc<str> },
    Pii(Vec<Detector>),
    Classifier,
}

/// Many regexes scanned in one linear pass.
///
/// The lazy DFA behind `RegexSet` gives up on non-ASCII text when a pattern uses a Unicode word boundary (`\b`),
/// and the fallback costs 60-100 ms per 4 KB at 1,000 patterns. So the set holds each pattern with its Unicode word
/// boundaries removed (it matches a superset of the text), and a pattern the relaxed set reports is confirmed with
/// its exact `Regex`. Patterns without such boundaries are in the set as written and need no confirmation.
#[derive(Debug)]
struct PatternMatcher {
    set: RegexSet,
    /// The patterns as written, for spans and to confirm relaxed hits.
    patterns: Vec<Regex>,
    /// Whether the set holds pattern i relaxed, so that its hits need confirming.
    relaxed: Vec<bool>,
    any_relaxed: bool,
    token: Arc<str>,
}

impl PatternMatcher {
    fn is_match(&self, text: &str) -> bool {
        if !self.set.is_match(text) {
            return false;
        }
        if !self.any_relaxed {
            return true;
        }
        let candidates = self.set.matches(text);
        candidates.iter().any(|i| !self.relaxed[i]) || candidates.iter().any(|i| self.patterns[i].is_match(text))
    }

    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        for i in self.set.matches(text).iter() {
            for found in self.patterns[i].find_iter(text).filter(|m| !m.is_empty()) {
                out.push(Finding { start: found.start(), end: found.end(), token: self.token.clone() });
            }
        }
    }
}

impl RuleSet {
    /// Validates every entry and compiles its matcher; the error names the bad field as `guardrails[3].patterns[12]`.
    pub fn compile(configs: &[GuardrailConfig]) -> Result<RuleSet, String> {
        compile::compile_rules(configs).map(|rules| RuleSet { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Indices of the rules that apply to this route, tenant and stage (classifier rules included).
    pub fn select(&self, route: &str, tenant: &str, stage: Stage) -> Vec<usize> {
        self.rules.iter().enumerate().filter(|(_, rule)| rule.applies(route, tenant, stage)).map(|(i, _)| i).collect()
    }
}

impl Rule {
    pub fn applies(&self, route: &str, tenant: &str, stage: Stage) -> bool {
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.binary_search_by(|x| x.as_str().cmp(value)).is_ok();
        self.apply_to.covers(stage) && listed(&self.routes, route) && listed(&self.tenants, tenant)
    }

    /// Cheap yes/no (RegexSet::is_match / AhoCorasick::is_match / detectors), for block and flag.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Regex(patterns) => patterns.is_match(text),
            Matcher::Keywords { automaton, .. } => automaton.is_match(text),
            Matcher::Pii(list) => list.iter().any(|&detector| detectors::is_match(detector, text)),
            Matcher::Classifier => false,
        }
    }

    /// Every match with its span (byte offsets on char boundaries) and the token that masks it, appended to `out`.
    /// Classifier rules find nothing. Findings of one rule may overlap (several patterns, or a PII finding that only
    /// partly overlaps another); `mask` merges them. A PII finding inside another one (a phone number inside a card
    /// number) is dropped so that the enclosing, more specific finding names the span.
    pub fn find(&self, text: &str, out: &mut Vec<Finding>) {
        match &self.matcher {
            Matcher::Regex(patterns) => patterns.find(text, out),
            Matcher::Keywords { automaton, token } => out.extend(automaton.find_iter(text).map(|m| Finding {
                start: m.start(),
                end: m.end(),
                token: token.clone(),
            })),
            Matcher::Pii(list) => {
                let mut found = Vec::new();
                for &detector in list {
                    detectors::find(detector, text, &mut found);
                }
                // Stable sort: among equal spans the earlier (higher-priority) detector stays first and wins.
                found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
                let mut covered_to = 0;
                for finding in found {
                    if finding.end > covered_to {
                        covered_to = finding.end;
                        out.push(finding);
                    }
                }
            }
            Matcher::Classifier => {}
        }
    }
}

/// Replaces each finding's span with its token; overlapping or touching findings merge into one token (the first's,
/// by start, ties in the order given). Findings may come unsorted and from several rules. A span off a char
/// boundary or past the end is widened to the enclosing chars rather than dropped, so a bad span never leaks text.
pub fn mask(text: &str, findings: &[Finding]) -> String {
    let mut spans: Vec<(usize, usize, &str)> = findings
        .iter()
        .filter(|f| f.start < f.end && f.start < text.len())
        .map(|f| (floor_char_boundary(text, f.start), ceil_char_boundary(text, f.end), &*f.token))
        .collect();
    spans.sort_by_key(|&(start, _, _)| start);
    let mut masked = String::with_capacity(text.len());
    let mut copied_to = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end, token)) = spans.next() {
        while let Some((_, next_end, _)) = spans.next_if(|&(next_start, _, _)| next_start <= end) {
            end = end.max(next_end);
        }
        masked.push_str(&text[copied_to..start]);
        masked.push_str(token);
        copied_to = end;
    }
    masked.push_str(&text[copied_to..]);
    masked
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[path = "rules_compile.rs"]
mod compile;
#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
