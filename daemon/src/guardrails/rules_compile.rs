//! Validation of `[[guardrails]]` entries and compilation of their matchers. Config is treated as hostile: every
//! count, length and compiled size is bounded, and a bad value is refused with a message naming its field
//! (`guardrails[3].patterns[12]`), the rule and the value (escaped, cut to 80 chars).

use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use aho_corasick::{AhoCorasickBuilder, MatchKind};
use regex::{RegexBuilder, RegexSetBuilder};
use regex_syntax::hir::{Capture, Hir, HirKind, LookSet, Repetition};

use super::{
    default_timeout_ms, default_unsafe_pattern, Action, Classifier, Detector, GuardrailConfig, Matcher, OnError,
    PatternMatcher, Rule, RuleKind,
};

pub(super) const MAX_RULES: usize = 256;
pub(super) const MAX_PATTERNS: usize = 10_000;
const MAX_PATTERN_BYTES: usize = 4096;
const MAX_KEYWORDS: usize = 100_000;
const MAX_KEYWORD_BYTES: usize = 1024;
/// Bounds one rule's keyword automaton (its memory grows with the total length of the keywords).
const MAX_KEYWORD_TOTAL_BYTES: usize = 16 << 20;
const MAX_MATCH_CHARS: usize = 4096;
const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_MASK_TOKEN_BYTES: usize = 64;
const MAX_SCOPE_ENTRIES: usize = 256;
const MAX_SCOPE_ENTRY_BYTES: usize = 256;
const DEFAULT_MASK_TOKEN: &str = "[REDACTED]";
/// Compiled-program bound for one rule's pattern set (and each pattern): a pathological pattern is an error, not an OOM.
const REGEX_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache of a rule's pattern set, per thread, grown on demand: big enough that 1,000 patterns do not
/// thrash it (a thrashing DFA falls back to a slow engine).
const SET_DFA_SIZE_LIMIT: usize = 16 << 20;
/// The same for each single regex (the regex crate's default): they only run on texts their set flagged.
const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;
const MAX_NAME_CHARS: usize = 64;
const SHOWN_VALUE_CHARS: usize = 80;
const SHOWN_ERROR_CHARS: usize = 400;

/// Validates every entry and compiles its matcher (see `RuleSet::compile`).
pub(super) fn compile_rules(configs: &[GuardrailConfig]) -> Result<Vec<Rule>, String> {
    if configs.len() > MAX_RULES {
        return Err(format!("guardrails: {} rules configured, at most {MAX_RULES} are allowed", configs.len()));
    }
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let place = Place { index, name: &config.name };
        check_name(&place, &config.name)?;
        if !names.insert(config.name.as_str()) {
            return Err(place.error("name", format!("duplicate rule name {}", shown(&config.name))));
        }
        rules.push(compile_rule(&place, config)?);
    }
    Ok(rules)
}

/// Where a config error is: the rule's index and name, for messages an operator can act on.
struct Place<'a> {
    index: usize,
    name: &'a str,
}

impl Place<'_> {
    fn error(&self, field: impl Display, problem: impl Display) -> String {
        format!("guardrails[{}].{field} (rule {}): {problem}", self.index, shown(self.name))
    }
}

/// A config value quoted and escaped for an error message, cut to 80 chars.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
    if cut.len() < value.len() {
        format!("{cut:?}... ({} bytes)", value.len())
    } else {
        format!("{cut:?}")
    }
}

/// An error message on one line (the regex crate's are multi-line, with the pattern and a caret), cut to 400 chars.
fn shown_error(error: impl Display) -> String {
    let text = error.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = text.chars().take(SHOWN_ERROR_CHARS).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

fn check_name(place: &Place, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(
            place.error("name", format!("must be 1 to {MAX_NAME_CHARS} of [A-Za-z0-9_.-], got {}", shown(name)))
        );
    }
    Ok(())
}

fn compile_rule(place: &Place, config: &GuardrailConfig) -> Result<Rule, String> {
    check_fields_for_kind(place, config)?;
    if !(1..=MAX_MATCH_CHARS).contains(&config.max_match_chars) {
        let problem = format!("must be 1 to {MAX_MATCH_CHARS}, got {}", config.max_match_chars);
        return Err(place.error("max_match_chars", problem));
    }
    if let Some(token) = &config.mask_token {
        if token.len() > MAX_MASK_TOKEN_BYTES {
            return Err(
                place.error("mask_token", format!("longer than {MAX_MASK_TOKEN_BYTES} bytes: {}", shown(token)))
            );
        }
    }
    let routes = scope_list(place, "routes", &config.routes)?;
    let tenants = scope_list(place, "tenants", &config.tenants)?;
    let token: Arc<str> = Arc::from(config.mask_token.as_deref().unwrap_or(DEFAULT_MASK_TOKEN));
    let mut classifier = None;
    let matcher = match config.kind {
        RuleKind::Regex => Matcher::Regex(compile_patterns(place, &config.patterns, config.case_sensitive, token)?),
        RuleKind::Keywords => compile_keywords(place, &config.keywords, config.case_sensitive, token)?,
        RuleKind::Pii => {
            let mut list = if config.detectors.is_empty() { Detector::ALL.to_vec() } else { config.detectors.clone() };
            list.sort_by_key(|detector| detector.priority());
            list.dedup();
            Matcher::Pii(list)
        }
        RuleKind::Classifier => {
            classifier = Some(compile_classifier(place, config)?);
            Matcher::Classifier
        }
    };
    Ok(Rule {
        name: config.name.clone(),
        kind: config.kind,
        action: config.action,
        apply_to: config.apply_to,
        max_match_chars: config.max_match_chars,
        classifier,
        routes,
        tenants,
        matcher,
    })
}

/// Refuses fields that mean nothing for the rule's kind, so a misplaced setting is not silently ignored.
fn check_fields_for_kind(place: &Place, config: &GuardrailConfig) -> Result<(), String> {
    let kind = config.kind;
    let only = |field: &str, owner: &str| {
        place.error(field, format!("only {owner} rules take {field}, this rule is {}", kind.as_str()))
    };
    if !config.patterns.is_empty() && kind != RuleKind::Regex {
        return Err(only("patterns", "regex"));
    }
    if !config.keywords.is_empty() && kind != RuleKind::Keywords {
        return Err(only("keywords", "keywords"));
    }
    if !config.detectors.is_empty() && kind != RuleKind::Pii {
        return Err(only("detectors", "pii"));
    }
    let scans_text = matches!(kind, RuleKind::Regex | RuleKind::Keywords);
    if config.case_sensitive && !scans_text {
        return Err(only("case_sensitive", "regex and keywords"));
    }
    if config.mask_token.is_some() && !scans_text {
        return Err(only("mask_token", "regex and keywords"));
    }
    if kind != RuleKind::Classifier {
        if config.route.is_some() {
            return Err(only("route", "classifier"));
        }
        if config.timeout_ms != default_timeout_ms() {
            return Err(only("timeout_ms", "classifier"));
        }
        if config.on_error != OnError::default() {
            return Err(only("on_error", "classifier"));
        }
        if config.unsafe_pattern != default_unsafe_pattern() {
            return Err(only("unsafe_pattern", "classifier"));
        }
    } else if config.action == Action::Mask {
        return Err(
            place.error("action", "a classifier judges the whole text and has no span to mask; use block or flag")
        );
    }
    Ok(())
}

fn scope_list(place: &Place, field: &str, entries: &[String]) -> Result<Vec<String>, String> {
    if entries.len() > MAX_SCOPE_ENTRIES {
        return Err(place.error(field, format!("{} entries, at most {MAX_SCOPE_ENTRIES} are allowed", entries.len())));
    }
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() || entry.len() > MAX_SCOPE_ENTRY_BYTES {
            let problem = format!("must be 1 to {MAX_SCOPE_ENTRY_BYTES} bytes, got {}", shown(entry));
            return Err(place.error(format_args!("{field}[{i}]"), problem));
        }
    }
    let mut sorted = entries.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(sorted)
}

fn compile_patterns(
    place: &Place,
    patterns: &[String],
    case_sensitive: bool,
    token: Arc<str>,
) -> Result<PatternMatcher, String> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        let problem = format!("a regex rule needs 1 to {MAX_PATTERNS} patterns, got {}", patterns.len());
        return Err(place.error("patterns", problem));
    }
    let mut set_patterns = Vec::with_capacity(patterns.len());
    let mut relaxed = Vec::with_capacity(patterns.len());
    let mut set_bytes = 0usize;
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format_args!("patterns[{i}]");
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(place.error(field, format!("longer than {MAX_PATTERN_BYTES} bytes: {}", shown(pattern))));
        }
        let hir = regex_syntax::ParserBuilder::new()
            .case_insensitive(!case_sensitive)
            .build()
            .parse(pattern)
            .map_err(|e| place.error(field, format!("invalid regex {}: {}", shown(pattern), syntax_problem(&e))))?;
        if hir.properties().minimum_len() == Some(0) {
            let problem = format!("{} can match the empty string, so it would match every text", shown(pattern));
            return Err(place.error(field, problem));
        }
        let needs_relaxing = hir.properties().look_set().contains_word_unicode();
        let set_pattern = if needs_relaxing { without_unicode_word_looks(&hir) } else { hir }.to_string();
        set_bytes += set_pattern.len();
        if set_bytes > REGEX_SIZE_LIMIT {
            let problem = format!(
                "the patterns up to this one expand past {} MiB; simplify or split the rule",
                REGEX_SIZE_LIMIT >> 20
            );
            return Err(place.error(field, problem));
        }
        set_patterns.push(set_pattern);
        relaxed.push(needs_relaxing);
    }
    // The set first: its size limit bounds all patterns together, so the per-pattern regexes below stay bounded too.
    let set = RegexSetBuilder::new(&set_patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            place.error("patterns", format!("the {} patterns together: {}", patterns.len(), shown_error(e)))
        })?;
    let mut compiled = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        let regex = RegexBuilder::new(pattern)
            .case_insensitive(!case_sensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                place.error(format_args!("patterns[{i}]"), format!("{}: {}", shown(pattern), shown_error(e)))
            })?;
        compiled.push(regex);
    }
    let any_relaxed = relaxed.iter().any(|&r| r);
    Ok(PatternMatcher { set, patterns: compiled, relaxed, any_relaxed, token })
}

/// What is wrong and where, without the regex crate's echo of the (possibly 4 KB) pattern.
fn syntax_problem(error: &regex_syntax::Error) -> String {
    match error {
        regex_syntax::Error::Parse(e) => format!("{} at byte {}", e.kind(), e.span().start.offset),
        regex_syntax::Error::Translate(e) => format!("{} at byte {}", e.kind(), e.span().start.offset),
        other => shown_error(other),
    }
}

/// The same expression with every Unicode word-boundary assertion replaced by "always true": a superset matcher.
fn without_unicode_word_looks(hir: &Hir) -> Hir {
    if !hir.properties().look_set().contains_word_unicode() {
        return hir.clone();
    }
    match hir.kind() {
        HirKind::Look(look) if LookSet::singleton(*look).contains_word_unicode() => Hir::empty(),
        HirKind::Repetition(rep) => {
            let sub = Box::new(without_unicode_word_looks(&rep.sub));
            Hir::repetition(Repetition { min: rep.min, max: rep.max, greedy: rep.greedy, sub })
        }
        HirKind::Capture(cap) => {
            let sub = Box::new(without_unicode_word_looks(&cap.sub));
            Hir::capture(Capture { index: cap.index, name: cap.name.clone(), sub })
        }
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_unicode_word_looks).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(without_unicode_word_looks).collect()),
        _ => hir.clone(),
    }
}

/// Keywords match as plain substrings (no word boundaries: "pass" also hits "password", on purpose for secrets and
/// slurs hidden inside longer words). Case-insensitivity is ASCII-only, the automaton's limit.
fn compile_keywords(
    place: &Place,
    keywords: &[String],
    case_sensitive: bool,
    token: Arc<str>,
) -> Result<Matcher, String> {
    if keywords.is_empty() || keywords.len() > MAX_KEYWORDS {
        let problem = format!("a keywords rule needs 1 to {MAX_KEYWORDS} keywords, got {}", keywords.len());
        return Err(place.error("keywords", problem));
    }
    let mut total_bytes = 0usize;
    for (i, keyword) in keywords.iter().enumerate() {
        if keyword.trim().is_empty() || keyword.len() > MAX_KEYWORD_BYTES {
            let problem = format!("must be 1 to {MAX_KEYWORD_BYTES} bytes and not blank, got {}", shown(keyword));
            return Err(place.error(format_args!("keywords[{i}]"), problem));
        }
        total_bytes += keyword.len();
        if total_bytes > MAX_KEYWORD_TOTAL_BYTES {
            let problem = format!("the keywords up to this one exceed {} MiB in total", MAX_KEYWORD_TOTAL_BYTES >> 20);
            return Err(place.error(format_args!("keywords[{i}]"), problem));
        }
    }
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(!case_sensitive)
        .match_kind(MatchKind::LeftmostLongest)
        .build(keywords)
        .map_err(|e| place.error("keywords", shown_error(e)))?;
    Ok(Matcher::Keywords { automaton, token })
}

fn compile_classifier(place: &Place, config: &GuardrailConfig) -> Result<Classifier, String> {
    let route = match config.route.as_deref() {
        Some(route) if !route.is_empty() && route.len() <= MAX_SCOPE_ENTRY_BYTES => route.to_string(),
        Some(route) => {
            let problem = format!("must be 1 to {MAX_SCOPE_ENTRY_BYTES} bytes, got {}", shown(route));
            return Err(place.error("route", problem));
        }
        None => return Err(place.error("route", "a classifier rule needs the route (model name) of its guard model")),
    };
    if !(1..=MAX_TIMEOUT_MS).contains(&config.timeout_ms) {
        return Err(place.error("timeout_ms", format!("must be 1 to {MAX_TIMEOUT_MS}, got {}", config.timeout_ms)));
    }
    let pattern = &config.unsafe_pattern;
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(place.error("unsafe_pattern", format!("longer than {MAX_PATTERN_BYTES} bytes: {}", shown(pattern))));
    }
    let unsafe_pattern = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| place.error("unsafe_pattern", format!("{}: {}", shown(pattern), shown_error(e))))?;
    Ok(Classifier {
        route,
        timeout: Duration::from_millis(config.timeout_ms),
        on_error: config.on_error,
        unsafe_pattern,
    })
}
