//! Constrained decoding: what the answer must look like, as a llama.cpp grammar (GBNF) the sampler holds every
//! token to. `response_format` (a JSON object, or JSON that validates against a schema) and tool calls
//! (see `tools`) both become one; JSON Schemas go through llama.cpp's own converter after `schema` has
//! checked the converter can enforce all of them.
use super::request::Refusal;
use super::schema;
use serde_json::Value;

/// The largest grammar taken from the converter (a bounded schema stays far below it).
const MAX_GRAMMAR_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub grammar: String,
    /// The grammar's start rule.
    pub root: String,
    /// Free text until the model writes this, the grammar from there on (a lazy grammar: `tool_choice: auto`).
    pub trigger: Option<String>,
}

/// llama.cpp's grammar for JSON that validates against `schema`, which `schema::check` has passed.
pub fn from_schema(schema: &Value) -> Result<String, String> {
    let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map_err(|e| format!("llama.cpp cannot turn this JSON Schema into a grammar ({e})"))?;
    if grammar.len() > MAX_GRAMMAR_BYTES {
        return Err(format!("the schema's grammar is larger than {MAX_GRAMMAR_BYTES} bytes; simplify the schema"));
    }
    Ok(grammar)
}

/// The constraint `response_format` asks for: none for text, any JSON object, or JSON valid against a schema.
pub fn response_format(format: Option<&Value>) -> Result<Option<Constraint>, Refusal> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    let refuse = |message: String| Refusal::invalid("response_format", message);
    let schema = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => serde_json::json!({"type": "object"}),
        Some("json_schema") => {
            let Some(wrapper) = format.get("json_schema").and_then(Value::as_object) else {
                return Err(refuse("`response_format.json_schema` must be an object with `name` and `schema`".into()));
            };
            let name = wrapper.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() || name.len() > 64 {
                return Err(refuse("`response_format.json_schema.name` must be 1 to 64 characters".into()));
            }
            match wrapper.get("schema") {
                // OpenAI's default: any JSON object.
                None | Some(Value::Null) => serde_json::json!({"type": "object"}),
                Some(schema) => schema.clone(),
            }
        }
        _ => return Err(refuse("`response_format.type` must be `text`, `json_object` or `json_schema`".into())),
    };
    schema::check(&schema).map_err(|e| refuse(format!("the schema cannot be enforced: {e}")))?;
    let grammar = from_schema(&schema).map_err(refuse)?;
    Ok(Some(Constraint { grammar, root: "root".into(), trigger: None }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_become_grammars_in_property_order() {
        let format = json!({"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": {
            "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"], "additionalProperties": false}}});
        let constraint = response_format(Some(&format)).expect("valid").expect("constrained");
        let root = constraint.grammar.lines().find(|l| l.starts_with("root ::=")).expect("a root rule");
        let (name, age) = (root.find("name").expect("name"), root.find("age").expect("age"));
        assert!(name < age, "properties keep the schema's order: {root}");
        assert_eq!(response_format(Some(&json!({"type": "text"}))), Ok(None));
        assert!(response_format(Some(&json!({"type": "json_object"}))).expect("valid").is_some());
    }

    #[test]
    fn what_cannot_be_enforced_is_refused() {
        let refused = |format: Value| response_format(Some(&format)).expect_err("refused");
        let error = refused(json!({"type": "json_schema", "json_schema": {"name": "x",
            "schema": {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}}}));
        assert_eq!(error.param.as_deref(), Some("response_format"));
        assert!(error.message.contains("`uniqueItems`"), "{}", error.message);
        assert!(refused(json!({"type": "yaml"})).message.contains("`response_format.type`"));
        assert!(refused(json!({"type": "json_schema"})).message.contains("must be an object"));
    }
}
