//! What a client may send as a score, checked before anything is kept: the JSON body of `POST /v1/feedback`
//! (types and unknown fields) and, for it and gRPC alike, the bounds. Every refusal names the field.
use crate::trace::{ScoreSource, ScoreValue};
use serde_json::{Map, Value};

/// Trace ids are UUIDs (36 bytes); anything much longer is not one.
pub const MAX_TRACE_ID_BYTES: usize = 64;
pub const MAX_NAME_BYTES: usize = 64;
pub const MAX_LABEL_BYTES: usize = 256;
pub const MAX_COMMENT_BYTES: usize = 4096;
/// A feedback body with every field at its limit is under 5 KiB; JSON escapes (`\u0000` is six bytes for one)
/// can make it longer, hence the margin.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

const FIELDS: [&str; 8] = ["trace_id", "name", "value", "bool", "passed", "label", "comment", "source"];
const VALUE_FIELDS: [&str; 4] = ["value", "bool", "passed", "label"];

/// A score as asked for: checked, not yet stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScore {
    pub trace_id: String,
    pub name: String,
    pub value: ScoreValue,
    pub comment: String,
    pub source: ScoreSource,
}

/// Why a score was refused: the field (`None` for the body as a whole) and a sentence naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub param: Option<String>,
    pub message: String,
}

fn invalid(param: &str, message: impl Into<String>) -> Invalid {
    Invalid { param: Some(param.to_owned()), message: message.into() }
}

impl NewScore {
    /// Reads a `POST /v1/feedback` body: a JSON object with `trace_id`, `name`, exactly one of `value` (a
    /// number), `bool` or `passed` (a boolean) or `label` (a string), and optionally `comment` and `source`.
    /// A `null` counts as absent; any other field is refused.
    pub fn from_json(body: &[u8]) -> Result<Self, Invalid> {
        let object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(Invalid { param: None, message: "the body must be a JSON object".into() }),
            Err(error) => return Err(Invalid { param: None, message: format!("invalid JSON body: {error}") }),
        };
        if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
            let shown: String = unknown.chars().take(MAX_NAME_BYTES).collect();
            return Err(invalid(
                &shown,
                format!(
                    "unknown field `{shown}`: a score has trace_id, name, one of value (a number), bool or passed \
                     (true/false) or label (a string), and optionally comment and source"
                ),
            ));
        }
        let given: Vec<&str> =
            VALUE_FIELDS.into_iter().filter(|field| object.get(*field).is_some_and(|v| !v.is_null())).collect();
        let value =
            match given.as_slice() {
                [] => return Err(invalid(
                    "value",
                    "a score needs one of `value` (a number), `bool` or `passed` (true/false) or `label` (a string)",
                )),
                [field] => read_value(&object, field)?,
                [first, second, ..] => {
                    return Err(invalid(
                        second,
                        format!("give exactly one of value, bool, passed or label, not both `{first}` and `{second}`"),
                    ))
                }
            };
        let score = NewScore {
            trace_id: required_string(&object, "trace_id", " (the x-request-id of the request being scored)")?,
            name: required_string(&object, "name", " (e.g. \"thumbs\" or \"helpfulness\")")?,
            value,
            comment: optional_string(&object, "comment")?.unwrap_or_default(),
            source: match optional_string(&object, "source")? {
                None => ScoreSource::default(),
                Some(source) => parse_source(&source)?,
            },
        };
        score.checked()
    }

    /// The bounds, for every way a score arrives: non-empty name and trace id, lengths, a finite number, no
    /// control characters where a terminal will show the text.
    pub fn checked(self) -> Result<Self, Invalid> {
        if self.trace_id.is_empty() {
            return Err(invalid("trace_id", "`trace_id` is required (the x-request-id of the request being scored)"));
        }
        at_most("trace_id", &self.trace_id, MAX_TRACE_ID_BYTES)?;
        printable("trace_id", &self.trace_id, false)?;
        if self.name.trim().is_empty() {
            return Err(invalid("name", "`name` must not be empty (e.g. \"thumbs\" or \"helpfulness\")"));
        }
        at_most("name", &self.name, MAX_NAME_BYTES)?;
        printable("name", &self.name, false)?;
        match &self.value {
            ScoreValue::Number(number) if !number.is_finite() => {
                return Err(invalid("value", "`value` must be a finite number"));
            }
            ScoreValue::Label(label) => {
                if label.trim().is_empty() {
                    return Err(invalid("label", "`label` must not be empty"));
                }
                at_most("label", label, MAX_LABEL_BYTES)?;
                printable("label", label, false)?;
            }
            _ => {}
        }
        at_most("comment", &self.comment, MAX_COMMENT_BYTES)?;
        printable("comment", &self.comment, true)?;
        Ok(self)
    }
}

pub fn parse_source(text: &str) -> Result<ScoreSource, Invalid> {
    ScoreSource::parse(text).ok_or_else(|| {
        let shown: String = text.chars().take(32).collect();
        invalid("source", format!("`source` must be human, llm or code, not {shown:?}"))
    })
}

fn read_value(object: &Map<String, Value>, field: &str) -> Result<ScoreValue, Invalid> {
    let value = object.get(field).unwrap_or(&Value::Null);
    match (field, value) {
        ("value", Value::Number(number)) => {
            number.as_f64().map(ScoreValue::Number).ok_or_else(|| invalid("value", "`value` must be a finite number"))
        }
        ("value", _) => Err(invalid("value", format!("`value` must be a number, not {}", kind(value)))),
        ("bool" | "passed", Value::Bool(passed)) => Ok(ScoreValue::Passed(*passed)),
        ("bool" | "passed", _) => Err(invalid(field, format!("`{field}` must be true or false, not {}", kind(value)))),
        (_, Value::String(label)) => Ok(ScoreValue::Label(label.clone())),
        _ => Err(invalid(field, format!("`{field}` must be a string, not {}", kind(value)))),
    }
}

fn required_string(object: &Map<String, Value>, field: &str, hint: &str) -> Result<String, Invalid> {
    optional_string(object, field)?.ok_or_else(|| invalid(field, format!("`{field}` is required{hint}")))
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, Invalid> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(invalid(field, format!("`{field}` must be a string, not {}", kind(other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn at_most(field: &str, text: &str, limit: usize) -> Result<(), Invalid> {
    if text.len() > limit {
        return Err(invalid(field, format!("`{field}` is {} bytes, over the limit of {limit}", text.len())));
    }
    Ok(())
}

/// Control characters would reach the operator's terminal (llmopsctl escapes them, other readers may not);
/// a comment may have line breaks and tabs.
fn printable(field: &str, text: &str, multiline: bool) -> Result<(), Invalid> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    match text.chars().find(|c| c.is_control() && !allowed(*c)) {
        Some(c) => Err(invalid(field, format!("`{field}` must not contain control characters ({c:?})"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<NewScore, Invalid> {
        NewScore::from_json(body.to_string().as_bytes())
    }

    fn param_of(body: Value) -> Option<String> {
        parse(body).expect_err("refused").param
    }

    #[test]
    fn each_value_kind_and_the_defaults() {
        let score = parse(json!({"trace_id": "t", "name": "helpfulness", "value": 0.75})).expect("number");
        assert_eq!(score.value, ScoreValue::Number(0.75));
        assert_eq!((score.comment.as_str(), score.source), ("", ScoreSource::Human));
        for field in ["bool", "passed"] {
            let score = parse(json!({"trace_id": "t", "name": "thumbs", field: false})).expect("boolean");
            assert_eq!(score.value, ScoreValue::Passed(false));
        }
        let score = parse(json!({"trace_id": "t", "name": "tone", "label": "curt", "comment": "a\nb",
            "source": "llm", "value": null}))
        .expect("label, with a null value taken as absent");
        assert_eq!(
            (score.value, score.comment.as_str(), score.source),
            (ScoreValue::Label("curt".into()), "a\nb", ScoreSource::Llm)
        );
        assert_eq!(
            parse(json!({"trace_id": "t", "name": "n", "value": 3, "source": "code"})).expect("int").value,
            ScoreValue::Number(3.0)
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (json!({"name": "n", "value": 1}), Some("trace_id")),
            (json!({"trace_id": "t", "value": 1}), Some("name")),
            (json!({"trace_id": "t", "name": "n"}), Some("value")),
            (json!({"trace_id": "t", "name": "n", "value": 1, "label": "x"}), Some("label")),
            (json!({"trace_id": "t", "name": "n", "bool": true, "passed": true}), Some("passed")),
            (json!({"trace_id": "t", "name": "n", "value": "0.5"}), Some("value")),
            (json!({"trace_id": "t", "name": "n", "bool": "yes"}), Some("bool")),
            (json!({"trace_id": "t", "name": "n", "label": 3}), Some("label")),
            (json!({"trace_id": 7, "name": "n", "value": 1}), Some("trace_id")),
            (json!({"trace_id": "t", "name": ["n"], "value": 1}), Some("name")),
            (json!({"trace_id": "t", "name": "n", "value": 1, "comment": {}}), Some("comment")),
            (json!({"trace_id": "t", "name": "n", "value": 1, "source": "robot"}), Some("source")),
            (json!({"trace_id": "t", "name": "n", "value": 1, "score": 2}), Some("score")),
            (json!({"trace_id": "", "name": "n", "value": 1}), Some("trace_id")),
            (json!({"trace_id": "t", "name": "  ", "value": 1}), Some("name")),
            (json!({"trace_id": "t", "name": "n", "label": ""}), Some("label")),
            (json!([1, 2]), None),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body.clone()), param.map(str::to_owned), "{body}");
        }
        let error = NewScore::from_json(b"{\"trace_id\": ").expect_err("truncated");
        assert!(error.message.starts_with("invalid JSON body"), "{error}");
        assert!(NewScore::from_json(b"{\"trace_id\":\"t\",\"name\":\"n\",\"value\":1e400}").is_err(), "out of range");
    }

    #[test]
    fn bounds_and_control_characters() {
        let long = |n: usize| "x".repeat(n);
        let ok = |body: Value| parse(body).map(|_| ());
        assert!(ok(json!({"trace_id": "t", "name": long(MAX_NAME_BYTES), "label": long(MAX_LABEL_BYTES),
            "comment": long(MAX_COMMENT_BYTES)}))
        .is_ok());
        for (body, field) in [
            (json!({"trace_id": long(MAX_TRACE_ID_BYTES + 1), "name": "n", "value": 1}), "trace_id"),
            (json!({"trace_id": "t", "name": long(MAX_NAME_BYTES + 1), "value": 1}), "name"),
            (json!({"trace_id": "t", "name": "n", "label": long(MAX_LABEL_BYTES + 1)}), "label"),
            (json!({"trace_id": "t", "name": "n", "value": 1, "comment": long(MAX_COMMENT_BYTES + 1)}), "comment"),
            (json!({"trace_id": "t", "name": "a\u{1b}[2J", "value": 1}), "name"),
            (json!({"trace_id": "t", "name": "n", "value": 1, "comment": "bell\u{7}"}), "comment"),
        ] {
            let error = parse(body).expect_err("refused");
            assert_eq!(error.param.as_deref(), Some(field), "{error}");
            assert!(error.message.contains(field), "{error}");
        }
        let nan = NewScore {
            trace_id: "t".into(),
            name: "n".into(),
            value: ScoreValue::Number(f64::NAN),
            comment: String::new(),
            source: ScoreSource::Code,
        };
        assert_eq!(nan.checked().expect_err("NaN").param.as_deref(), Some("value"));
    }
}
