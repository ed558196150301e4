//! Built-in PII and secret detectors for `pii` guardrail rules.
//!
//! Each finds candidates with a regex (compiled once, ASCII classes only, no `\b`, so the lazy DFA never falls back
//! to a slow engine on non-ASCII text) and then validates them in code (checksums, ranges, and the neighbouring
//! characters that the regex crate cannot look at) to keep false positives down. Everything runs in linear time.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::rules::Finding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    ApiKey,
}

impl Detector {
    pub const ALL: [Detector; 6] =
        [Detector::Email, Detector::Phone, Detector::Card, Detector::Iban, Detector::Ssn, Detector::ApiKey];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::ApiKey => "api_key",
        }
    }

    /// Lower runs first and wins a tie on the same span: the more specific and better-validated shapes first.
    pub fn priority(self) -> u8 {
        match self {
            Detector::ApiKey => 0,
            Detector::Card => 1,
            Detector::Iban => 2,
            Detector::Ssn => 3,
            Detector::Email => 4,
            Detector::Phone => 5,
        }
    }
}

pub fn token(detector: Detector) -> &'static str {
    match detector {
        Detector::Email => "[EMAIL]",
        Detector::Phone => "[PHONE]",
        Detector::Card => "[CARD]",
        Detector::Iban => "[IBAN]",
        Detector::Ssn => "[SSN]",
        Detector::ApiKey => "[API_KEY]",
    }
}

/// Appends every validated match of `detector` in `text`, in text order.
pub fn find(detector: Detector, text: &str, out: &mut Vec<Finding>) {
    static TOKENS: LazyLock<[Arc<str>; 6]> = LazyLock::new(|| Detector::ALL.map(|d| Arc::from(token(d))));
    // `Detector::ALL` lists the variants in declaration order, so the discriminant indexes it.
    let token = &TOKENS[detector as usize];
    scan(detector, text, &mut |start, end| {
        out.push(Finding { start, end, token: token.clone() });
        true
    });
}

/// Whether `detector` finds anything; stops at the first validated match.
pub fn is_match(detector: Detector, text: &str) -> bool {
    let mut found = false;
    scan(detector, text, &mut |_, _| {
        found = true;
        false
    });
    found
}

/// Calls `emit(start, end)` for each match until it returns false.
type Emit<'a> = dyn FnMut(usize, usize) -> bool + 'a;

fn scan(detector: Detector, text: &str, emit: &mut Emit) {
    match detector {
        Detector::Email => scan_email(text, emit),
        Detector::Phone => scan_phone(text, emit),
        Detector::Card => scan_card(text, emit),
        Detector::Iban => scan_iban(text, emit),
        Detector::Ssn => scan_ssn(text, emit),
        Detector::ApiKey => scan_api_key(text, emit),
    }
}

fn regex(pattern: &str) -> Regex {
    // The patterns are constants that every detector test compiles; no input reaches this.
    Regex::new(pattern).unwrap_or_else(|error| unreachable!("built-in detector pattern {pattern:?}: {error}"))
}

fn byte_before(text: &str, at: usize) -> Option<u8> {
    at.checked_sub(1).and_then(|i| text.as_bytes().get(i).copied())
}

fn byte_at(text: &str, at: usize) -> Option<u8> {
    text.as_bytes().get(at).copied()
}

fn is_word_byte(byte: Option<u8>) -> bool {
    byte.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_digit(byte: Option<u8>) -> bool {
    byte.is_some_and(|b| b.is_ascii_digit())
}

/// local@domain.tld: local part 1..=64 without leading, trailing or doubled dots; domain labels 1..=63 without
/// edge hyphens, domain at most 253 bytes, a 2..=24 letter TLD that is not cut out of a longer word.
fn scan_email(text: &str, emit: &mut Emit) {
    static EMAIL: LazyLock<Regex> = LazyLock::new(|| regex(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,24}"));
    for m in EMAIL.find_iter(text) {
        let Some((local, domain)) = m.as_str().split_once('@') else { continue };
        let local_ok = local.len() <= 64 && !local.starts_with('.') && !local.ends_with('.') && !local.contains("..");
        let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-');
        let domain_ok = domain.len() <= 253 && domain.split('.').all(label_ok);
        if local_ok && domain_ok && !is_word_byte(byte_at(text, m.end())) && !emit(m.start(), m.end()) {
            return;
        }
    }
}

/// Card numbers: a maximal run of digit groups joined by single spaces or dashes is split into its groups; a card
/// is either one group of 13..=19 digits, or a 4-digit group followed by 1..=4 groups of 3..=6 digits (4-4-4-4,
/// 4-6-5, 4-4-4-4-3) with one separator kind, 13..=19 digits in all, not starting with 0, passing Luhn. A digit
/// group is never split, so a card is never cut out of a longer digit run; a run touching letters or a decimal
/// point does not count at that edge. From each group the longest valid card wins.
fn scan_card(text: &str, emit: &mut Emit) {
    static RUN: LazyLock<Regex> = LazyLock::new(|| regex(r"[0-9]+(?:[ -][0-9]+)*"));
    let bytes = text.as_bytes();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for run in RUN.find_iter(text) {
        groups.clear();
        let mut start = run.start();
        for (i, &b) in bytes[run.start()..run.end()].iter().enumerate() {
            if !b.is_ascii_digit() {
                groups.push((start, run.start() + i));
                start = run.start() + i + 1;
            }
        }
        groups.push((start, run.end()));
        let open_start = !is_word_byte(byte_before(text, run.start())) && !is_decimal_edge(text, run.start(), false);
        let open_end = !is_word_byte(byte_at(text, run.end())) && !is_decimal_edge(text, run.end(), true);
        let mut first = 0;
        while first < groups.len() {
            match longest_card(text, &groups, first, open_start || first > 0, open_end) {
                Some(last) => {
                    if !emit(groups[first].0, groups[last].1) {
                        return;
                    }
                    first = last + 1;
                }
                None => first += 1,
            }
        }
    }
}

/// Whether the run edge at `at` is next to a decimal point or thousands separator that joins it to more digits.
fn is_decimal_edge(text: &str, at: usize, after: bool) -> bool {
    let (mark, beyond) = if after {
        (byte_at(text, at), byte_at(text, at + 1))
    } else {
        (byte_before(text, at), at.checked_sub(1).and_then(|i| byte_before(text, i)))
    };
    matches!(mark, Some(b'.' | b',')) && is_digit(beyond)
}

fn longest_card(
    text: &str,
    groups: &[(usize, usize)],
    first: usize,
    open_start: bool,
    open_end: bool,
) -> Option<usize> {
    if !open_start {
        return None;
    }
    let bytes = text.as_bytes();
    let digits = |from: usize, to: usize| groups[from..=to].iter().flat_map(|&(s, e)| bytes[s..e].iter().copied());
    let valid = |last: usize, count: usize| {
        (13..=19).contains(&count)
            && (last + 1 < groups.len() || open_end)
            && bytes[groups[first].0] != b'0'
            && luhn_ok(digits(first, last))
    };
    let (start, end) = groups[first];
    if end - start != 4 {
        return valid(first, end - start).then_some(first);
    }
    let separator = byte_at(text, end);
    let mut count = 4;
    let mut best = None;
    for (last, &(s, e)) in groups.iter().enumerate().take(first + 5).skip(first + 1) {
        if !(3..=6).contains(&(e - s)) || byte_before(text, s) != separator {
            break;
        }
        count += e - s;
        if count > 19 {
            break;
        }
        if valid(last, count) {
            best = Some(last);
        }
    }
    best
}

fn luhn_ok(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN: country letters, 2 check digits, 11..=30 alphanumerics, written solid or in space-separated groups of 4;
/// any case. The longest prefix that ends at a word edge and has a mod-97 remainder of 1 is the finding (a trailing
/// word that happens to be 4 alphanumerics is not swallowed).
fn scan_iban(text: &str, emit: &mut Emit) {
    static IBAN: LazyLock<Regex> = LazyLock::new(|| {
        regex(r"[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)")
    });
    let bytes = text.as_bytes();
    for m in IBAN.find_iter(text) {
        if is_word_byte(byte_before(text, m.start())) {
            continue;
        }
        let end = (m.start() + 15..=m.end()).rev().find(|&end| {
            bytes[end - 1].is_ascii_alphanumeric()
                && !is_word_byte(byte_at(text, end))
                && iban_ok(&bytes[m.start()..end])
        });
        if let Some(end) = end {
            if !emit(m.start(), end) {
                return;
            }
        }
    }
}

fn iban_ok(candidate: &[u8]) -> bool {
    let compact: Vec<u8> = candidate.iter().filter(|b| **b != b' ').map(u8::to_ascii_uppercase).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let remainder = rearranged.fold(0u32, |acc, &b| match b {
        b'0'..=b'9' => (acc * 10 + u32::from(b - b'0')) % 97,
        _ => (acc * 100 + u32::from(b - b'A') + 10) % 97,
    });
    remainder == 1
}

/// US SSN `AAA-GG-SSSS`: area not 000, 666 or 900-999, group not 00, serial not 0000, and not inside a longer
/// run of digits, dashes or word characters.
fn scan_ssn(text: &str, emit: &mut Emit) {
    static SSN: LazyLock<Regex> = LazyLock::new(|| regex(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"));
    let glued = |b: Option<u8>| is_word_byte(b) || b == Some(b'-');
    for m in SSN.find_iter(text) {
        let s = m.as_str();
        let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
        let valid = area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000";
        if valid && !glued(byte_before(text, m.start())) && !glued(byte_at(text, m.end())) && !emit(m.start(), m.end())
        {
            return;
        }
    }
}

/// Phone numbers, two shapes:
/// - international: `+`, 1..=4 digits, then up to 7 groups of digits or `(digits)` each optionally after one of
///   space, dash or dot; 8..=15 digits in all (E.164);
/// - North American: optional `1 `/`1-`, area code `(NXX)` or `NXX` + separator (N = 2-9), then `XXX`, separator,
///   `XXXX`; without parentheses both separators must be the same.
///
/// Neither fires inside a longer number: no letter or digit may touch either end, nor a `.`/`-` (or, for a
/// space-separated number, a space) that joins it to more digits. Plain digit runs never match (a `+` or the
/// 3-3-4 grouping is required), so a card, IBAN, SSN (3-2-4) or ISO date (4-2-2) is not a phone number.
fn scan_phone(text: &str, emit: &mut Emit) {
    static PHONE: LazyLock<Regex> = LazyLock::new(|| {
        regex(concat!(
            r"\+[0-9]{1,4}(?:[ .-]?(?:\([0-9]{1,5}\)|[0-9]{1,6})){1,7}",
            r"|(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}",
        ))
    });
    for m in PHONE.find_iter(text) {
        let s = m.as_str().as_bytes();
        let international = s[0] == b'+';
        let valid = if international {
            (8..=15).contains(&s.iter().filter(|b| b.is_ascii_digit()).count())
        } else {
            // The last two separators (before XXX and before XXXX) must agree unless the area code has parentheses.
            let (before_exchange, before_line) = (s[s.len() - 9], s[s.len() - 5]);
            s.contains(&b'(') || before_exchange == before_line
        };
        let spaced = s.contains(&b' ');
        let joins = |mark: Option<u8>, digit: Option<u8>| {
            is_digit(digit) && (matches!(mark, Some(b'.' | b'-')) || (spaced && mark == Some(b' ')))
        };
        let before = byte_before(text, m.start());
        let open_start = !is_word_byte(before)
            && before != Some(b'+')
            && !joins(before, m.start().checked_sub(1).and_then(|i| byte_before(text, i)));
        let open_end =
            !is_word_byte(byte_at(text, m.end())) && !joins(byte_at(text, m.end()), byte_at(text, m.end() + 1));
        if valid && open_start && open_end && !emit(m.start(), m.end()) {
            return;
        }
    }
}

/// Secrets by their published shapes (OpenAI, Anthropic, AWS, GitHub, Slack, Google, Stripe) and PEM private keys.
/// A token must not be glued to word characters or dashes on its left, nor to alphanumerics on its right; `sk-`
/// tokens need a digit and a letter so that hyphenated words are not taken for keys.
fn scan_api_key(text: &str, emit: &mut Emit) {
    static KEY: LazyLock<Regex> = LazyLock::new(|| {
        regex(concat!(
            r"sk-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,255}",
            r"|xox[abprs]-[A-Za-z0-9-]{10,250}|AIza[A-Za-z0-9_-]{35}|[rs]k_live_[A-Za-z0-9]{16,247}",
            r"|-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----",
        ))
    });
    let mut end_markers = EndMarkers { text, searched_from: usize::MAX, next: None };
    let mut at = 0;
    while let Some(m) = KEY.find_at(text, at) {
        let span = if m.as_str().starts_with('-') {
            Some((m.start(), pem_end(text, m.end(), &mut end_markers)))
        } else {
            let body = m.as_str();
            let glued_left = is_word_byte(byte_before(text, m.start())) || byte_before(text, m.start()) == Some(b'-');
            let glued_right = byte_at(text, m.end()).is_some_and(|b| b.is_ascii_alphanumeric());
            let plausible = !body.starts_with("sk-")
                || (body[3..].bytes().any(|b| b.is_ascii_digit())
                    && body[3..].bytes().any(|b| b.is_ascii_alphabetic()));
            (!glued_left && !glued_right && plausible).then_some((m.start(), m.end()))
        };
        at = m.end();
        if let Some((start, end)) = span {
            at = end;
            if !emit(start, end) {
                return;
            }
        }
    }
}

/// Longest PEM body considered: an 8192-bit RSA key is about 6.5 KB.
const MAX_PEM_BODY_BYTES: usize = 16 << 10;
/// PEM lines are 64 chars; headers are short too. Bounds the work spent on a line that turns out not to be PEM.
const MAX_PEM_LINE_BYTES: usize = 128;
const PEM_KEY_END: &[u8] = b"PRIVATE KEY-----";

/// A PEM private key runs through its `-----END ... PRIVATE KEY-----` line. With no END line close enough (a cut
/// paste, a stream chunk), the finding still covers the body that follows (see `pem_body_end`).
fn pem_end(text: &str, begin_end: usize, end_markers: &mut EndMarkers) -> usize {
    let bytes = text.as_bytes();
    let mut limit = begin_end.saturating_add(MAX_PEM_BODY_BYTES).min(text.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    if let Some(marker) = end_markers.next_from(begin_end).filter(|&marker| marker <= limit) {
        let window = &bytes[marker..(marker + MAX_PEM_LINE_BYTES).min(bytes.len())];
        let line = window.split(|&b| b == b'\n').next().unwrap_or_default();
        if let Some(i) = line.windows(PEM_KEY_END.len()).position(|w| w == PEM_KEY_END) {
            return marker + i + PEM_KEY_END.len();
        }
    }
    pem_body_end(bytes, begin_end, limit)
}

/// The end of a PEM body without its END line: `Name: value` header lines and blank lines, then base64 lines up to
/// and including the first one shorter than the standard 64 chars (the last line); a key pasted on one line is
/// its run of base64. Linear: each line costs at most `MAX_PEM_LINE_BYTES` beyond the bytes it covers.
fn pem_body_end(bytes: &[u8], begin_end: usize, limit: usize) -> usize {
    let is_base64 = |b: &u8| b.is_ascii_alphanumeric() || b"+/=".contains(b);
    let mut end = begin_end;
    let mut line_start = begin_end;
    let mut in_headers = true;
    while line_start < limit {
        let window = &bytes[line_start..(line_start + MAX_PEM_LINE_BYTES).min(limit)];
        let at_limit = line_start + window.len() == limit;
        let Some(len) = window.iter().position(|&b| b == b'\n').or(at_limit.then_some(window.len())) else {
            if window.iter().all(is_base64) {
                end = line_start + bytes[line_start..limit].iter().take_while(|b| is_base64(b)).count();
            }
            break;
        };
        let line = bytes[line_start..line_start + len].trim_ascii();
        if in_headers && line.contains(&b':') {
            end = line_start + len;
        } else if line.is_empty() {
            if !in_headers {
                break;
            }
        } else if line.iter().all(is_base64) {
            in_headers = false;
            end = line_start + bytes[line_start..line_start + len].trim_ascii_end().len();
            if line.len() < 64 {
                break;
            }
        } else {
            break;
        }
        line_start += len + 1;
    }
    begin_end + bytes[begin_end..end].trim_ascii_end().len()
}

/// Finds `-----END ` markers, remembering the last answer so that many BEGIN lines cost one pass over the text.
struct EndMarkers<'a> {
    text: &'a str,
    searched_from: usize,
    next: Option<usize>,
}

impl EndMarkers<'_> {
    fn next_from(&mut self, from: usize) -> Option<usize> {
        let still_valid = self.searched_from <= from && self.next.is_none_or(|next| next >= from);
        if !still_valid {
            self.searched_from = from;
            self.next = self.text.get(from..).and_then(|rest| rest.find("-----END ")).map(|i| from + i);
        }
        self.next
    }
}

#[cfg(test)]
#[path = "detectors_tests.rs"]
mod tests;
