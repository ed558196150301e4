//! LLM-as-judge: the chat-completions bodies the runner sends through the gateway, and the reading of the
//! answers. Judging is made as repeatable as a model allows (temperature 0, a fixed seed, a strict JSON Schema
//! for the answer); the pairwise judge is asked twice with the answers swapped, because judges prefer whatever
//! they read first, and only a preference that survives the swap counts.
use serde_json::{json, Value};

use super::check::{fenced, parse_json_answer, Outcome};
use super::spec::clip;

pub const JUDGE_MAX_TOKENS: u32 = 256;
/// The fixed seed: the same question to the same judge should get the same verdict.
pub const JUDGE_SEED: u64 = 42;
/// Each text put into a judge prompt (rubric, question, reference, answer) is cut to this.
pub const MAX_SECTION_BYTES: usize = 16 * 1024;
/// The judge grades 0 to this; verdicts carry the grade divided by it (0 to 1).
const SCORE_SCALE: u32 = 10;
/// The schema asks for at most this much reasoning.
const REASONING_MAX_LENGTH: u32 = 600;
/// What [`parse_verdict`] and [`parse_preference`] keep of a judge's reasoning (a judge may ignore the schema).
pub const MAX_VERDICT_REASONING_BYTES: usize = 2 * 1024;
const TRUNCATED: &str = "\n[truncated]";

const SINGLE_SYSTEM: &str = "You are an impartial evaluator. You grade one answer to a question against a rubric \
(and a reference answer, when one is given). Judge only what the rubric asks. Reply with JSON only, matching \
this schema: {\"reasoning\": string (brief, at most 600 characters), \"pass\": boolean (whether the answer meets \
the rubric), \"score\": integer from 0 (worst) to 10 (best)}.";

const PAIRWISE_SYSTEM: &str = "You are an impartial evaluator. You compare two answers, A and B, to the same \
question against a rubric. The order of the answers says nothing about their quality, and neither does their \
length. Reply with JSON only, matching this schema: {\"reasoning\": string (brief, at most 600 characters), \
\"winner\": \"A\", \"B\" or \"tie\"}.";

/// What the single judge sees of one item.
#[derive(Debug, Clone, Copy)]
pub struct JudgeInput<'a> {
    pub rubric: &'a str,
    /// The item's input messages rendered as text ([`question_text`]).
    pub question: &'a str,
    /// Empty when the item has none (the section is left out).
    pub reference: &'a str,
    pub answer: &'a str,
}

/// The request for a single verdict: OpenAI chat-completions, for `route` (the caller resolves an empty one).
pub fn single_body(route: &str, input: &JudgeInput) -> Value {
    let mut user = section("Rubric", input.rubric);
    user.push_str(&section("Question", input.question));
    if !input.reference.is_empty() {
        user.push_str(&section("Reference answer", input.reference));
    }
    user.push_str(&section("Answer to grade", input.answer));
    user.push_str("Grade the answer to grade against the rubric. Reply with the JSON object only.");
    let schema = json!({
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "minLength": 1, "maxLength": REASONING_MAX_LENGTH},
            "pass": {"type": "boolean"},
            // An integer: constrained decoding bounds integers only (and small models grade 0-10 better).
            "score": {"type": "integer", "minimum": 0, "maximum": SCORE_SCALE},
        },
        "required": ["reasoning", "pass", "score"],
        "additionalProperties": false,
    });
    body(route, SINGLE_SYSTEM, user, "verdict", schema)
}

/// One order of a pairwise comparison: `first` is shown as answer A, `second` as B. The runner sends it twice,
/// (candidate, other) then (other, candidate), and [`combine`]s the preferences.
pub fn pairwise_body(route: &str, rubric: &str, question: &str, first: &str, second: &str) -> Value {
    let mut user = section("Rubric", rubric);
    user.push_str(&section("Question", question));
    user.push_str(&section("Answer A", first));
    user.push_str(&section("Answer B", second));
    user.push_str("Which answer better meets the rubric? Reply with the JSON object only.");
    let schema = json!({
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "minLength": 1, "maxLength": REASONING_MAX_LENGTH},
            "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        },
        "required": ["reasoning", "winner"],
        "additionalProperties": false,
    });
    body(route, PAIRWISE_SYSTEM, user, "preference", schema)
}

fn body(route: &str, system: &str, user: String, schema_name: &str, schema: Value) -> Value {
    json!({
        "model": route,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
        "temperature": 0.0,
        "seed": JUDGE_SEED,
        "max_tokens": JUDGE_MAX_TOKENS,
        "stream": false,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": true, "schema": schema},
        },
    })
}

/// A delimited section of the user message: a header line, the text (bounded), an end line. The end marker
/// names the section so that text inside cannot pass for the end of another.
fn section(title: &str, text: &str) -> String {
    format!("=== {title} ===\n{}\n=== end of {} ===\n\n", bounded(text, MAX_SECTION_BYTES), title.to_lowercase())
}

/// `text` cut to `max` bytes on a char boundary, saying so when it was cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = clip(text, max.saturating_sub(TRUNCATED.len())).to_string();
    cut.push_str(TRUNCATED);
    cut
}

/// Renders chat messages as `role: content` lines for the judge (content: a string, or parts of which the
/// `text` ones count), at most [`MAX_SECTION_BYTES`].
pub fn question_text(messages: &Value) -> String {
    let Some(messages) = messages.as_array() else {
        return bounded(messages.as_str().unwrap_or_default(), MAX_SECTION_BYTES);
    };
    let mut text = String::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("unknown");
        let content = match message.get("content") {
            Some(Value::String(content)) => content.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|part| match part.get("text").and_then(Value::as_str) {
                    Some(text) => text.to_string(),
                    None => format!("[{}]", part.get("type").and_then(Value::as_str).unwrap_or("part")),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(role);
        text.push_str(": ");
        text.push_str(&content);
        if text.len() > MAX_SECTION_BYTES {
            break;
        }
    }
    bounded(&text, MAX_SECTION_BYTES)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    /// Clamped to 0 to 1.
    pub score: f64,
    pub reasoning: String,
}

/// Reads a single judge's answer: JSON, or JSON in a fenced block or amid prose (a judge behind a route that
/// ignores `response_format`). The grade (0 to 10) becomes a score of 0 to 1; a missing score follows `pass`
/// (1 or 0); a missing `pass` is an error.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let object = judge_object(text)?;
    let pass = match object.get("pass") {
        Some(Value::Bool(pass)) => *pass,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        _ => return Err(format!("the judge's answer has no boolean `pass`: {}", preview(text))),
    };
    let score = match object.get("score") {
        None | Some(Value::Null) => f64::from(u8::from(pass)),
        Some(score) => match score.as_f64().or_else(|| score.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(score) if score.is_finite() => (score / f64::from(SCORE_SCALE)).clamp(0.0, 1.0),
            _ => return Err(format!("the judge's `score` is not a number: {}", preview(text))),
        },
    };
    Ok(Verdict { pass, score, reasoning: reasoning(&object) })
}

/// The outcome of a judge evaluator: it passes when the judge says pass and the score reaches `min_score`.
pub fn verdict_outcome(name: &str, min_score: f64, verdict: &Verdict) -> Outcome {
    let passed = verdict.pass && verdict.score >= min_score;
    let reasoning = if verdict.pass && !passed {
        format!("score {:.2} < min_score {min_score:.2}: {}", verdict.score, verdict.reasoning)
    } else {
        verdict.reasoning.clone()
    };
    Outcome::new(name, passed, verdict.score, &reasoning)
}

/// Which answer of one order the pairwise judge preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// Answer A.
    First,
    /// Answer B.
    Second,
    Tie,
}

/// Reads a pairwise judge's answer: the preference and its reasoning.
pub fn parse_preference(text: &str) -> Result<(Preference, String), String> {
    let object = judge_object(text)?;
    let winner = object.get("winner").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    let preference = match winner.to_ascii_lowercase().as_str() {
        "a" => Preference::First,
        "b" => Preference::Second,
        "tie" => Preference::Tie,
        _ => return Err(format!("the judge's `winner` is not \"A\", \"B\" or \"tie\": {}", preview(text))),
    };
    Ok((preference, reasoning(&object)))
}

/// The candidate's result against the other answer (stored as `win`, `tie` or `loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairOutcome {
    Win,
    Tie,
    Loss,
}

/// Order 1 shows the candidate first, order 2 shows it second. The candidate wins only if both orders prefer
/// it, loses only if both prefer the other; a disagreement (position bias) or a tie is a tie.
pub fn combine(candidate_first: Preference, candidate_second: Preference) -> PairOutcome {
    match (candidate_first, candidate_second) {
        (Preference::First, Preference::Second) => PairOutcome::Win,
        (Preference::Second, Preference::First) => PairOutcome::Loss,
        _ => PairOutcome::Tie,
    }
}

/// The JSON object in a judge's answer: the whole text, a fenced block, or the outermost `{...}` in prose.
fn judge_object(text: &str) -> Result<serde_json::Map<String, Value>, String> {
    let parsed = parse_json_answer(text).ok().or_else(|| {
        let inner = fenced(text).unwrap_or(text);
        let start = inner.find('{')?;
        let end = inner.rfind('}')?;
        (start < end).then(|| serde_json::from_str(&inner[start..=end]).ok()).flatten()
    });
    match parsed {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(format!("the judge's answer is not a JSON object: {}", preview(text))),
    }
}

fn reasoning(object: &serde_json::Map<String, Value>) -> String {
    let reasoning = object.get("reasoning").and_then(Value::as_str).unwrap_or_default().trim();
    clip(reasoning, MAX_VERDICT_REASONING_BYTES).to_string()
}

/// The start of a judge's answer, quoted in an error.
fn preview(text: &str) -> String {
    let text = text.trim();
    let cut = clip(text, 200);
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
