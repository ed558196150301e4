//! Evaluator configuration: a JSON array a client sends with a run (hostile input). Everything that can be
//! checked is checked here, once, so that scoring an item cannot fail on configuration: regular expressions and
//! JSON Schemas are compiled now, with bounds on their size, and a schema never fetches a remote `$ref`.
//!
//! Each element is decoded by its `type` into a per-type struct with `deny_unknown_fields` through
//! `serde_path_to_error`: an internally tagged serde enum would buffer the fields and lose the path, and every
//! error must name the evaluator and the field.
use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Bounds on the configuration, each named in its refusal.
pub mod limits {
    pub const MAX_JSON_BYTES: usize = 256 * 1024;
    pub const MAX_EVALUATORS: usize = 16;
    pub const MAX_PAIRWISE: usize = 1;
    pub const MAX_NAME_BYTES: usize = 64;
    /// `contains` and `exact` values.
    pub const MAX_VALUE_BYTES: usize = 4 * 1024;
    pub const MAX_PATTERN_BYTES: usize = 1024;
    /// The compiled program and the lazy DFA's cache of a `regex` pattern (and of `pattern`s in a schema).
    pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
    pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
    pub const MAX_RUBRIC_BYTES: usize = 8 * 1024;
    pub const MAX_ROUTE_BYTES: usize = 256;
}

/// The judge's verdict passes at this score unless `min_score` says otherwise.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;

const TYPES: &[&str] =
    &["exact", "contains", "regex", "json_schema", "max_latency_ms", "max_cost_usd", "judge", "pairwise"];

#[derive(Debug)]
pub struct Evaluator {
    pub name: String,
    /// The minimum pass rate over the run's items, 0 to 1.
    pub threshold: f64,
    pub kind: EvaluatorKind,
}

#[derive(Debug)]
pub enum EvaluatorKind {
    /// `None`: compare with the item's reference. Both sides are trimmed.
    Exact {
        value: Option<String>,
    },
    /// `None`: look for the item's reference.
    Contains {
        value: Option<String>,
        ignore_case: bool,
    },
    /// `Regex::as_str` is the pattern as configured.
    Regex(regex::Regex),
    JsonSchema(Box<jsonschema::Validator>),
    MaxLatencyMs(f64),
    MaxCostUsd(f64),
    /// An empty `route` is the caller's default judge route.
    Judge {
        rubric: String,
        route: String,
        min_score: f64,
    },
    Pairwise {
        rubric: String,
        route: String,
    },
}

impl EvaluatorKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Exact { .. } => "exact",
            Self::Contains { .. } => "contains",
            Self::Regex(_) => "regex",
            Self::JsonSchema(_) => "json_schema",
            Self::MaxLatencyMs(_) => "max_latency_ms",
            Self::MaxCostUsd(_) => "max_cost_usd",
            Self::Judge { .. } => "judge",
            Self::Pairwise { .. } => "pairwise",
        }
    }
}

/// Why a configuration was refused; the Display is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("evaluators are {bytes} bytes; at most {} are accepted", limits::MAX_JSON_BYTES)]
    TooLarge { bytes: usize },
    #[error("evaluators are not valid JSON: {0}")]
    Json(String),
    #[error("evaluators must be a JSON array of objects, each with a `type`")]
    NotArray,
    #[error("{count} evaluators; at most {} are accepted", limits::MAX_EVALUATORS)]
    TooMany { count: usize },
    /// `at` is where, as `evaluators[2].pattern`.
    #[error("{at}: {message}")]
    Invalid { index: usize, at: String, message: String },
}

fn invalid(index: usize, field: &str, message: impl Into<String>) -> SpecError {
    let at = if field.is_empty() { format!("evaluators[{index}]") } else { format!("evaluators[{index}].{field}") };
    SpecError::Invalid { index, at, message: message.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactFields {
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainsFields {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexFields {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFields {
    schema: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFields {
    value: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgeFields {
    rubric: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    min_score: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairwiseFields {
    rubric: String,
    #[serde(default)]
    route: String,
}

/// Parses and compiles a run's evaluators; an empty string or `[]` is no evaluators.
pub fn parse(json: &str) -> Result<Vec<Evaluator>, SpecError> {
    if json.len() > limits::MAX_JSON_BYTES {
        return Err(SpecError::TooLarge { bytes: json.len() });
    }
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let elements = match serde_json::from_str::<Value>(json).map_err(|e| SpecError::Json(e.to_string()))? {
        Value::Array(elements) => elements,
        _ => return Err(SpecError::NotArray),
    };
    if elements.len() > limits::MAX_EVALUATORS {
        return Err(SpecError::TooMany { count: elements.len() });
    }
    let mut parsed = Vec::with_capacity(elements.len());
    for (index, element) in elements.into_iter().enumerate() {
        parsed.push(one(index, element)?);
    }
    let pairwise = parsed.iter().filter(|(_, kind, _)| matches!(kind, EvaluatorKind::Pairwise { .. })).count();
    if pairwise > limits::MAX_PAIRWISE {
        let index = parsed.iter().rposition(|(_, kind, _)| matches!(kind, EvaluatorKind::Pairwise { .. }));
        return Err(invalid(
            index.unwrap_or(0),
            "type",
            format!("at most {} `pairwise` evaluator per run", limits::MAX_PAIRWISE),
        ));
    }
    name_all(parsed)
}

/// Gives every evaluator its name: explicit names must be unique; the others are their type, then `type-2`,
/// `type-3`... for repeats, skipping any name already taken.
fn name_all(parsed: Vec<(Option<String>, EvaluatorKind, f64)>) -> Result<Vec<Evaluator>, SpecError> {
    let mut taken: Vec<String> = Vec::with_capacity(parsed.len());
    for (index, (name, _, _)) in parsed.iter().enumerate() {
        if let Some(name) = name {
            if taken.contains(name) {
                return Err(invalid(index, "name", format!("the name {name:?} is used by an earlier evaluator")));
            }
            taken.push(name.clone());
        }
    }
    let mut evaluators = Vec::with_capacity(parsed.len());
    let mut repeats: HashMap<&'static str, usize> = HashMap::new();
    for (name, kind, threshold) in parsed {
        let name = match name {
            Some(name) => name,
            None => {
                let type_name = kind.type_name();
                let seen = repeats.entry(type_name).or_insert(0);
                let name = loop {
                    *seen += 1;
                    let name = if *seen == 1 { type_name.to_string() } else { format!("{type_name}-{seen}") };
                    if !taken.contains(&name) {
                        break name;
                    }
                };
                taken.push(name.clone());
                name
            }
        };
        evaluators.push(Evaluator { name, threshold, kind });
    }
    Ok(evaluators)
}

/// One element: its common fields (`type`, `name`, `threshold`), then the fields of its type.
fn one(index: usize, element: Value) -> Result<(Option<String>, EvaluatorKind, f64), SpecError> {
    let Value::Object(mut fields) = element else {
        return Err(invalid(index, "", "must be an object with a `type`"));
    };
    let type_name = match fields.remove("type") {
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid(index, "type", "`type` must be a string")),
        None => return Err(invalid(index, "", format!("missing `type` (one of {})", TYPES.join(", ")))),
    };
    let name = match fields.remove("name") {
        None => None,
        Some(Value::String(name)) => {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if name.is_empty() || name.len() > limits::MAX_NAME_BYTES || !name.chars().all(allowed) {
                return Err(invalid(
                    index,
                    "name",
                    format!(
                        "`name` must be 1 to {} bytes of letters, digits, `_`, `.` and `-`",
                        limits::MAX_NAME_BYTES
                    ),
                ));
            }
            Some(name)
        }
        Some(_) => return Err(invalid(index, "name", "`name` must be a string")),
    };
    let threshold = match fields.remove("threshold") {
        None => 1.0,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => t,
            _ => return Err(invalid(index, "threshold", format!("`threshold` is {n}; it must be 0 to 1"))),
        },
        Some(_) => return Err(invalid(index, "threshold", "`threshold` must be a number from 0 to 1")),
    };
    let kind = kind(index, &type_name, fields)?;
    Ok((name, kind, threshold))
}

fn kind(index: usize, type_name: &str, fields: Map<String, Value>) -> Result<EvaluatorKind, SpecError> {
    let fields = Value::Object(fields);
    Ok(match type_name {
        "exact" => {
            let f: ExactFields = typed(index, fields)?;
            EvaluatorKind::Exact { value: bounded_value(index, f.value)? }
        }
        "contains" => {
            let f: ContainsFields = typed(index, fields)?;
            EvaluatorKind::Contains { value: bounded_value(index, f.value)?, ignore_case: f.ignore_case }
        }
        "regex" => EvaluatorKind::Regex(compile_regex(index, &typed::<RegexFields>(index, fields)?.pattern)?),
        "json_schema" => {
            EvaluatorKind::JsonSchema(compile_schema(index, &typed::<SchemaFields>(index, fields)?.schema)?)
        }
        "max_latency_ms" => {
            EvaluatorKind::MaxLatencyMs(non_negative(index, typed::<LimitFields>(index, fields)?.value)?)
        }
        "max_cost_usd" => EvaluatorKind::MaxCostUsd(non_negative(index, typed::<LimitFields>(index, fields)?.value)?),
        "judge" => {
            let f: JudgeFields = typed(index, fields)?;
            let min_score = f.min_score.unwrap_or(DEFAULT_MIN_SCORE);
            if !(0.0..=1.0).contains(&min_score) {
                return Err(invalid(index, "min_score", format!("`min_score` is {min_score}; it must be 0 to 1")));
            }
            EvaluatorKind::Judge { rubric: rubric(index, f.rubric)?, route: route(index, f.route)?, min_score }
        }
        "pairwise" => {
            let f: PairwiseFields = typed(index, fields)?;
            EvaluatorKind::Pairwise { rubric: rubric(index, f.rubric)?, route: route(index, f.route)? }
        }
        other => {
            let shown: String = other.chars().take(limits::MAX_NAME_BYTES).collect();
            return Err(invalid(index, "type", format!("unknown type {shown:?} (one of {})", TYPES.join(", "))));
        }
    })
}

/// Decodes a type's own fields; an error names the field (serde's message names unknown and missing ones).
fn typed<T: DeserializeOwned>(index: usize, fields: Value) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(fields).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let mut message = error.into_inner().to_string();
        if message.starts_with("unknown field") {
            message.push_str(" (any evaluator may also have `name` and `threshold`)");
        }
        invalid(index, &field, message)
    })
}

fn bounded_value(index: usize, value: Option<String>) -> Result<Option<String>, SpecError> {
    match value {
        Some(v) if v.len() > limits::MAX_VALUE_BYTES => Err(invalid(
            index,
            "value",
            format!("`value` is {} bytes; at most {} are accepted", v.len(), limits::MAX_VALUE_BYTES),
        )),
        value => Ok(value),
    }
}

fn non_negative(index: usize, value: f64) -> Result<f64, SpecError> {
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(index, "value", format!("`value` is {value}; it must be a finite number, 0 or more")));
    }
    Ok(value)
}

fn rubric(index: usize, rubric: String) -> Result<String, SpecError> {
    if rubric.trim().is_empty() || rubric.len() > limits::MAX_RUBRIC_BYTES {
        return Err(invalid(
            index,
            "rubric",
            format!("`rubric` is {} bytes; it must be 1 to {} bytes of text", rubric.len(), limits::MAX_RUBRIC_BYTES),
        ));
    }
    Ok(rubric)
}

fn route(index: usize, route: String) -> Result<String, SpecError> {
    if route.len() > limits::MAX_ROUTE_BYTES {
        return Err(invalid(
            index,
            "route",
            format!("`route` is {} bytes; at most {} are accepted", route.len(), limits::MAX_ROUTE_BYTES),
        ));
    }
    Ok(route)
}

fn compile_regex(index: usize, pattern: &str) -> Result<regex::Regex, SpecError> {
    if pattern.len() > limits::MAX_PATTERN_BYTES {
        return Err(invalid(
            index,
            "pattern",
            format!("`pattern` is {} bytes; at most {} are accepted", pattern.len(), limits::MAX_PATTERN_BYTES),
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(limits::REGEX_SIZE_LIMIT)
        .dfa_size_limit(limits::REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => invalid(
                index,
                "pattern",
                format!("`pattern` compiles to more than the size limit of {limit} bytes; simplify its repetitions"),
            ),
            e => invalid(index, "pattern", format!("invalid regular expression: {}", clip(&e.to_string(), 512))),
        })
}

/// Compiles offline (a remote or file `$ref` is an error, never a fetch) with the linear-time `regex` engine
/// for `pattern` keywords, bounded like the `regex` evaluator.
fn compile_schema(index: usize, schema: &Value) -> Result<Box<jsonschema::Validator>, SpecError> {
    let bytes = schema.to_string().len();
    if bytes > limits::MAX_SCHEMA_BYTES {
        return Err(invalid(
            index,
            "schema",
            format!("`schema` is {bytes} bytes; at most {} are accepted", limits::MAX_SCHEMA_BYTES),
        ));
    }
    let patterns = jsonschema::PatternOptions::regex()
        .size_limit(limits::REGEX_SIZE_LIMIT)
        .dfa_size_limit(limits::REGEX_SIZE_LIMIT);
    jsonschema::options()
        .offline()
        .with_pattern_options(patterns)
        .build(schema)
        .map(Box::new)
        .map_err(|e| invalid(index, "schema", format!("invalid JSON Schema: {}", clip(&e.to_string(), 512))))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
