//! Output guardrails on streams. Events that carry text wait in a bounded hold-back buffer until enough text
//! has arrived after them that no match of the rules' length (`max_match_chars`) can still end in them: a
//! secret split across chunks is seen whole before any of it leaves. A `block` match ends the stream with the
//! error event (nothing held is sent); `mask` rewrites the text of the events it covers; `flag` counts.
//! Events without text (role, finish, usage) keep their place in the order.
use crate::guardrails::{Action, Finding, Guardrails, Stage};
use crate::trace::model::GuardrailVerdict;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// What kind of event a stream carried, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Sent to every client.
    Forward,
    /// A chunk with usage and no choices: sent only to a client that asked for usage.
    UsageOnly,
    /// `data: [DONE]`.
    Done,
}

/// An event leaving the buffer, with the text it carries as the client gets it.
#[derive(Debug)]
pub struct Released {
    pub event: String,
    pub kind: EventKind,
    pub text: String,
}

struct Held {
    event: String,
    kind: EventKind,
    /// Its text's byte range in the stream's text (absolute offsets).
    start: usize,
    end: usize,
}

pub struct HoldBack {
    guardrails: Arc<Guardrails>,
    selected: Vec<usize>,
    /// Characters kept back behind the newest text.
    window: usize,
    held: VecDeque<Held>,
    /// The text of the held events; `base` is the absolute offset of its first byte.
    text: String,
    base: usize,
    /// Text before this absolute offset is part of a match already replaced by its token.
    masked_until: usize,
    /// Matches and tokens per rule, for the verdicts.
    fired: BTreeMap<usize, (usize, BTreeSet<String>)>,
    /// A mask or block rule matched: the trace's copy of the answer needs redacting.
    caught: bool,
}

impl HoldBack {
    /// `None` when no output rule applies: the stream is relayed as it comes.
    pub fn new(guardrails: Arc<Guardrails>, selected: Vec<usize>) -> Option<Self> {
        let window = guardrails.hold_back_chars(&selected);
        let selected: Vec<usize> = selected.into_iter().filter(|&i| guardrails.rule(i).classifier.is_none()).collect();
        if selected.is_empty() {
            return None;
        }
        Some(Self {
            guardrails,
            selected,
            window,
            held: VecDeque::new(),
            text: String::new(),
            base: 0,
            masked_until: 0,
            fired: BTreeMap::new(),
            caught: false,
        })
    }

    /// Takes one event and its text; moves what is safe to send into `out`. `Err(rule)` when a `block` rule
    /// matched: the stream must end now.
    pub fn push(&mut self, event: String, kind: EventKind, text: &str, out: &mut Vec<Released>) -> Result<(), usize> {
        let start = self.base + self.text.len();
        self.text.push_str(text);
        self.held.push_back(Held { event, kind, start, end: start + text.len() });
        if let Some(rule) = self.blocked() {
            return Err(rule);
        }
        let keep_from = self.text.char_indices().rev().nth(self.window.saturating_sub(1)).map_or(0, |(i, _)| i);
        let boundary = if self.window == 0 { self.base + self.text.len() } else { self.base + keep_from };
        self.release(boundary, out);
        Ok(())
    }

    /// The stream ended: everything held leaves (checked, masked).
    pub fn finish(&mut self, out: &mut Vec<Released>) -> Result<(), usize> {
        if let Some(rule) = self.blocked() {
            return Err(rule);
        }
        self.release(usize::MAX, out);
        Ok(())
    }

    /// One verdict per rule that fired, counted for `/metrics`.
    pub fn verdicts(&mut self, blocked: Option<usize>) -> Vec<GuardrailVerdict> {
        if let Some(rule) = blocked {
            self.fired.entry(rule).or_default().0 += 1;
            self.caught = true;
        }
        std::mem::take(&mut self.fired)
            .into_iter()
            .map(|(rule, (matches, tokens))| {
                let detail = tokens.into_iter().collect::<Vec<_>>().join(",");
                self.guardrails.verdict(rule, Stage::Output, matches, detail)
            })
            .collect()
    }

    /// The whole answer as a trace keeps it: mask and block matches replaced by their tokens.
    pub fn redact(&self, text: &str) -> String {
        if !self.caught {
            return text.to_string();
        }
        super::guardrail::redact(&self.guardrails, &self.selected, text)
    }

    fn blocked(&self) -> Option<usize> {
        self.selected.iter().copied().find(|&i| {
            let rule = self.guardrails.rule(i);
            rule.action == Action::Block && rule.is_match(&self.text)
        })
    }

    /// Sends the held events whose text ends at or before `boundary` (absolute), masked.
    fn release(&mut self, boundary: usize, out: &mut Vec<Released>) {
        let count = self.held.iter().take_while(|held| held.end <= boundary).count();
        if count == 0 {
            return;
        }
        let released_end = self.held[count - 1].end;
        let masks = self.findings(released_end);
        for held in self.held.drain(..count) {
            let raw = &self.text[held.start - self.base..held.end - self.base];
            let (text, changed) = masked_segment(raw, held.start, &masks, &mut self.masked_until);
            let event = if changed { rewrite_text(&held.event, &text) } else { held.event };
            out.push(Released { event, kind: held.kind, text });
        }
        self.text.drain(..released_end - self.base);
        self.base = released_end;
    }

    /// Mask and flag findings (absolute offsets, merged) that start before `until`; counts them per rule.
    fn findings(&mut self, until: usize) -> Vec<Finding> {
        let mut masks = Vec::new();
        for &index in &self.selected {
            let rule = self.guardrails.rule(index);
            if rule.action == Action::Block || !rule.is_match(&self.text) {
                continue;
            }
            let mut found = Vec::new();
            rule.find(&self.text, &mut found);
            found.retain(|f| self.base + f.start < until && self.base + f.end > self.masked_until);
            if found.is_empty() {
                continue;
            }
            let entry = self.fired.entry(index).or_default();
            entry.0 += found.len();
            entry.1.extend(found.iter().map(|f| crate::guardrails::token_name(&f.token)));
            if rule.action == Action::Mask {
                self.caught = true;
                masks.extend(found.into_iter().map(|mut f| {
                    f.start += self.base;
                    f.end += self.base;
                    f
                }));
            }
        }
        merge(masks)
    }
}

/// Sorted, with overlapping or touching findings merged (the first one's token).
fn merge(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut merged: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        match merged.last_mut() {
            Some(last) if finding.start <= last.end => last.end = last.end.max(finding.end),
            _ => merged.push(finding),
        }
    }
    merged
}

/// The client's text for one event covering `raw` at absolute offset `start`: each match that starts in it
/// becomes its token, the rest of a match that started earlier is left out. Returns whether anything changed.
fn masked_segment(raw: &str, start: usize, masks: &[Finding], masked_until: &mut usize) -> (String, bool) {
    let end = start + raw.len();
    let mut text = String::with_capacity(raw.len());
    let mut position = start.max(*masked_until).min(end);
    let mut changed = position > start;
    for mask in masks {
        if mask.end <= position || mask.start >= end {
            continue;
        }
        if mask.start >= position {
            text.push_str(&raw[position - start..mask.start - start]);
            text.push_str(&mask.token);
        }
        changed = true;
        position = mask.end.min(end);
        *masked_until = (*masked_until).max(mask.end);
    }
    if position < end {
        text.push_str(&raw[position - start..]);
    }
    (text, changed)
}

/// The event with its text replaced: `choices[0].delta.content` (chat) or `choices[0].text` (completions).
fn rewrite_text(event: &str, text: &str) -> String {
    let Ok(mut chunk) = serde_json::from_str::<Value>(&super::sse::event_data(event)) else {
        return event.to_string();
    };
    let Some(choice) = chunk.pointer_mut("/choices/0") else { return event.to_string() };
    if let Some(content) = choice.pointer_mut("/delta/content").filter(|c| c.is_string()) {
        *content = Value::String(text.to_string());
    } else if let Some(content) = choice.get_mut("text").filter(|c| c.is_string()) {
        *content = Value::String(text.to_string());
    }
    format!("data: {chunk}")
}

#[cfg(test)]
#[path = "holdback_tests.rs"]
mod tests;
