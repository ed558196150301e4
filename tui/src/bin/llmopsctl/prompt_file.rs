//! The file `llmopsctl prompts push --file` reads: TOML (or JSON, for a name ending in .json or text starting
//! with `{`) with `messages = [{role, content}]`, optional `model` and optional `[parameters]`. Keys it does not
//! know are refused by name (a typo must not silently drop a template). llmopsd checks the content itself.
use std::path::Path;

use llmops_proto::v1::PromptMessage;
use serde_json::Value;

/// Larger files are refused before they are read (llmopsd takes at most 64 KiB of content anyway).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct PromptFile {
    pub messages: Vec<PromptMessage>,
    /// A JSON object; empty when the file has no parameters.
    pub parameters_json: String,
    pub model: String,
}

/// Reads and checks the shape of `path`.
pub fn read(path: &Path) -> Result<PromptFile, String> {
    let shown = path.display();
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("{shown} is {size} bytes; a prompt file is at most {MAX_FILE_BYTES}"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let json = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    parse(&text, json).map_err(|e| format!("{shown}: {e}"))
}

/// Parses the text of a prompt file.
pub fn parse(text: &str, json: bool) -> Result<PromptFile, String> {
    let value: Value = if json || text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
        serde_json::to_value(table).map_err(|e| format!("cannot read the TOML: {e}"))?
    };
    let Value::Object(mut top) = value else { return Err("the file must hold a table (object)".to_owned()) };
    if let Some(key) = top.keys().find(|k| !["messages", "parameters", "model"].contains(&k.as_str())) {
        return Err(format!("unknown key `{key}` (a prompt file has `messages`, `parameters` and `model`)"));
    }
    let messages = match top.remove("messages") {
        Some(Value::Array(items)) => items.into_iter().enumerate().map(message).collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("`messages` must be an array of {role, content}".to_owned()),
        None => return Err("`messages` is missing (e.g. [[messages]] role = \"system\" content = \"...\")".to_owned()),
    };
    let parameters_json = match top.remove("parameters") {
        None => String::new(),
        Some(parameters @ Value::Object(_)) => parameters.to_string(),
        Some(_) => return Err("`parameters` must be a table (object)".to_owned()),
    };
    let model = match top.remove("model") {
        None => String::new(),
        Some(Value::String(model)) => model,
        Some(_) => return Err("`model` must be a string".to_owned()),
    };
    Ok(PromptFile { messages, parameters_json, model })
}

fn message((index, item): (usize, Value)) -> Result<PromptMessage, String> {
    let number = index + 1;
    let Value::Object(mut fields) = item else {
        return Err(format!("message {number} must be a {{role, content}} table"));
    };
    if let Some(key) = fields.keys().find(|k| !["role", "content"].contains(&k.as_str())) {
        return Err(format!("message {number}: unknown key `{key}` (a message has `role` and `content`)"));
    }
    let text = |fields: &mut serde_json::Map<String, Value>, key: &str| match fields.remove(key) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("message {number}: `{key}` must be a string")),
        None => Err(format!("message {number}: `{key}` is missing")),
    };
    Ok(PromptMessage { role: text(&mut fields, "role")?, content: text(&mut fields, "content")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_files_read_alike() {
        let toml = r#"
model = "fake-model"

[parameters]
temperature = 0.2
max_tokens = 64

[[messages]]
role = "system"
content = "You answer for {{ company }}."

[[messages]]
role = "user"
content = "{{ question }}"
"#;
        let from_toml = parse(toml, false).expect("TOML");
        assert_eq!(from_toml.messages.len(), 2);
        assert_eq!(from_toml.messages[1].content, "{{ question }}");
        assert_eq!(from_toml.model, "fake-model");
        let parameters: Value = serde_json::from_str(&from_toml.parameters_json).expect("JSON");
        assert_eq!(parameters["max_tokens"], 64);
        let json = r#"{"model": "fake-model", "parameters": {"temperature": 0.2, "max_tokens": 64},
            "messages": [{"role": "system", "content": "You answer for {{ company }}."},
                         {"role": "user", "content": "{{ question }}"}]}"#;
        let from_json = parse(json, false).expect("JSON by its first character");
        assert_eq!(from_json.messages, from_toml.messages);
        assert_eq!(from_json.model, from_toml.model);
        let minimal = parse("[[messages]]\nrole = \"user\"\ncontent = \"hi\"\n", false).expect("minimal");
        assert_eq!((minimal.parameters_json.as_str(), minimal.model.as_str()), ("", ""));
    }

    #[test]
    fn mistakes_are_named() {
        let error = |text: &str| parse(text, false).expect_err("refused");
        assert!(error("model = \"m\"").contains("`messages` is missing"));
        assert!(error("messages = 3").contains("array"));
        assert!(error("mesages = []").contains("unknown key `mesages`"));
        assert!(error("[[messages]]\nrole = \"user\"\n").contains("message 1: `content` is missing"));
        assert!(error("[[messages]]\nrole = \"user\"\ncontent = \"x\"\ncontnt = 1\n").contains("unknown key `contnt`"));
        assert!(error("parameters = 3\nmessages = []").contains("`parameters` must be a table"));
        assert!(error("{\"messages\": [").contains("not valid JSON"));
        assert!(error("messages = [").contains("not valid TOML"));
    }
}
