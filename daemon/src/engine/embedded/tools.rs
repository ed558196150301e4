//! Tool calls on the embedded engine: the request's `tools` and `tool_choice` read and bounded, the tools
//! described to the model in the system turn, and the grammar its answer is held to. Calls are written in the
//! Hermes format that Qwen, Hermes and SmolLM2 were trained on (`<tool_call>{"name": .., "arguments": ..}
//! </tool_call>`); `tool_output` reads them back into OpenAI's `tool_calls`.
use super::constraint::{self, Constraint};
use super::request::Refusal;
use super::schema;
use serde_json::{json, Value};

/// OpenAI's own limit.
pub const MAX_TOOLS: usize = 128;
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
pub const OPEN_TAG: &str = "<tool_call>";
pub const CLOSE_TAG: &str = "</tool_call>";

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The tools a request offers and how the model may use them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub functions: Vec<Function>,
    pub choice: ToolChoice,
    /// Several calls in one answer (`parallel_tool_calls`, true by default as OpenAI's).
    pub parallel: bool,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`; None when the request offers no tools.
pub fn parse(tools: Option<&Value>, choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<Tools>, Refusal> {
    let tools = match tools {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(tools)) => tools.as_slice(),
        Some(_) => return Err(Refusal::invalid("tools", "`tools` must be an array")),
    };
    if tools.len() > MAX_TOOLS {
        return Err(Refusal::invalid("tools", format!("{} tools; at most {MAX_TOOLS} are accepted", tools.len())));
    }
    let functions = tools.iter().enumerate().map(|(i, tool)| function(i, tool)).collect::<Result<Vec<_>, _>>()?;
    for (i, function) in functions.iter().enumerate() {
        if functions[..i].iter().any(|f| f.name == function.name) {
            return Err(Refusal::invalid("tools", format!("two tools are named `{}`", function.name)));
        }
    }
    let choice = tool_choice(choice, &functions)?;
    if functions.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tools { functions, choice, parallel: parallel.unwrap_or(true) }))
}

fn function(i: usize, tool: &Value) -> Result<Function, Refusal> {
    let bad = |what: String| Refusal::invalid("tools", format!("tools[{i}]: {what}"));
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad("only tools of `\"type\": \"function\"` are supported".into()));
    }
    let Some(function) = tool.get("function").and_then(Value::as_object) else {
        return Err(bad("`function` must be an object".into()));
    };
    let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
    if !valid_name(name) {
        let shown: String = name.chars().take(80).collect();
        return Err(bad(format!("the name {shown:?} must be 1 to 64 letters, digits, `_` or `-`")));
    }
    let description = function.get("description").and_then(Value::as_str).unwrap_or_default();
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(bad(format!("the description is longer than {MAX_DESCRIPTION_BYTES} bytes")));
    }
    // No parameters: a call takes an empty object, as OpenAI reads it.
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(parameters) => parameters.clone(),
    };
    schema::check(&parameters).map_err(|e| bad(format!("`parameters` {e}")))?;
    Ok(Function { name: name.to_string(), description: description.to_string(), parameters })
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool_choice(choice: Option<&Value>, functions: &[Function]) -> Result<ToolChoice, Refusal> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(if functions.is_empty() { ToolChoice::None } else { ToolChoice::Auto }),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(Refusal::invalid(
                    "tool_choice",
                    format!("`tool_choice` {shown:?} is not one of none, auto, required or a named function"),
                ));
            }
        },
        Some(named) => {
            let name = named.pointer("/function/name").and_then(Value::as_str);
            match (named.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => ToolChoice::Named(name.to_string()),
                _ => {
                    return Err(Refusal::invalid(
                        "tool_choice",
                        "a named `tool_choice` is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ))
                }
            }
        }
    };
    let wanted = match &choice {
        ToolChoice::None => return Ok(choice),
        ToolChoice::Named(name) => Some(name),
        _ => None,
    };
    if functions.is_empty() {
        return Err(Refusal::invalid("tool_choice", "`tool_choice` asks for a tool call but `tools` is empty"));
    }
    if let Some(name) = wanted.filter(|name| !functions.iter().any(|f| &f.name == *name)) {
        let shown: String = name.chars().take(64).collect();
        return Err(Refusal::invalid("tool_choice", format!("`tool_choice` names `{shown}`, which is not in `tools`")));
    }
    Ok(choice)
}

impl Tools {
    /// Whether the model is told of the tools and its answer read for calls.
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The tools as the system turn describes them (the Hermes prompt).
    pub fn system_text(&self) -> String {
        let mut text = String::from(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with \
             function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for function in self.offered() {
            let signature = json!({"type": "function", "function": {
                "name": function.name, "description": function.description, "parameters": function.parameters}});
            text.push('\n');
            text.push_str(&signature.to_string());
        }
        text.push_str(
            "\n</tools>\n\nFor each function call, return a json object with function name and arguments within \
             <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": \
             <args-json-object>}\n</tool_call>",
        );
        text
    }

    fn offered(&self) -> impl Iterator<Item = &Function> {
        let named = match &self.choice {
            ToolChoice::Named(name) => Some(name),
            _ => None,
        };
        self.functions.iter().filter(move |f| named.is_none_or(|name| &f.name == name))
    }

    /// The grammar of the answer: calls only (`required`, a named function), or free text until the model
    /// opens a call, which the grammar then holds to the tools' schemas (`auto`).
    pub fn constraint(&self) -> Result<Constraint, Refusal> {
        let calls: Vec<Value> = self
            .offered()
            .map(|f| {
                json!({"type": "object", "properties": {"name": {"const": f.name}, "arguments": f.parameters},
                       "required": ["name", "arguments"], "additionalProperties": false})
            })
            .collect();
        let schema = if calls.len() == 1 { calls[0].clone() } else { json!({"anyOf": calls}) };
        let grammar = constraint::from_schema(&schema).map_err(|e| Refusal::invalid("tools", e))?;
        // A named function is called once; otherwise the model may go on with more calls if parallel calls are on.
        let several = self.parallel && !matches!(self.choice, ToolChoice::Named(_));
        let repeat = if several { " (\"\\n\" llmops-call)*" } else { "" };
        let grammar = format!(
            "{grammar}\nllmops-call ::= \"{OPEN_TAG}\\n\" root \"\\n{CLOSE_TAG}\"\nllmops-calls ::= llmops-call{repeat}\n"
        );
        let trigger = (self.choice == ToolChoice::Auto).then(|| OPEN_TAG.to_string());
        Ok(Constraint { grammar, root: "llmops-calls".into(), trigger })
    }
}

/// An assistant turn's `tool_calls` as the model writes them, to render a conversation's earlier calls.
pub fn render_calls(calls: &Value) -> Result<String, String> {
    let Some(calls) = calls.as_array() else { return Err("`tool_calls` must be an array".into()) };
    let mut text = String::new();
    for call in calls {
        let name = call.pointer("/function/name").and_then(Value::as_str).ok_or("a tool call without a name")?;
        // OpenAI sends arguments as a JSON string; the model wrote (and reads) them as an object.
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::String(text.clone())),
            Some(other) => other.clone(),
            None => json!({}),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{OPEN_TAG}\n{}\n{CLOSE_TAG}", json!({"name": name, "arguments": arguments})));
    }
    Ok(text)
}

/// A `tool` turn's result, as the Hermes format wraps it.
pub fn render_result(content: &str) -> String {
    format!("<tool_response>\n{content}\n</tool_response>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    }

    #[test]
    fn tools_and_choice_are_read() {
        let tools = parse(Some(&weather()), None, None).expect("valid").expect("some");
        assert_eq!(tools.choice, ToolChoice::Auto);
        assert!(tools.parallel);
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let tools = parse(Some(&weather()), Some(&named), Some(false)).expect("valid").expect("some");
        assert_eq!(tools.choice, ToolChoice::Named("get_weather".into()));
        assert!(tools.system_text().contains("\"name\":\"get_weather\""));
        assert_eq!(parse(Some(&json!([])), None, None), Ok(None));
    }

    #[test]
    fn hostile_tools_are_refused_by_name() {
        let refused = |tools: Value, choice: Option<Value>| {
            parse(Some(&tools), choice.as_ref(), None).expect_err("refused").param
        };
        let many: Vec<Value> =
            (0..129).map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}})).collect();
        assert_eq!(refused(Value::Array(many), None).as_deref(), Some("tools"));
        let bad_name = json!([{"type": "function", "function": {"name": "no spaces allowed"}}]);
        assert_eq!(refused(bad_name, None).as_deref(), Some("tools"));
        let long_name = json!([{"type": "function", "function": {"name": "x".repeat(65)}}]);
        assert_eq!(refused(long_name, None).as_deref(), Some("tools"));
        let missing = json!({"type": "function", "function": {"name": "get_time"}});
        assert_eq!(refused(weather(), Some(missing)).as_deref(), Some("tool_choice"));
        assert_eq!(refused(weather(), Some(json!("sometimes"))).as_deref(), Some("tool_choice"));
        let unenforceable = json!([{"type": "function", "function": {"name": "f",
            "parameters": {"type": "object", "patternProperties": {"^a$": {}}}}}]);
        let error = parse(Some(&unenforceable), None, None).expect_err("refused");
        assert!(error.message.contains("`patternProperties`"), "{}", error.message);
        assert_eq!(
            parse(Some(&json!([])), Some(&json!("required")), None).expect_err("no tools").param.as_deref(),
            Some("tool_choice")
        );
    }

    #[test]
    fn earlier_calls_render_as_the_model_writes_them() {
        let calls = json!([{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
        assert_eq!(
            render_calls(&calls).expect("valid"),
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
        );
    }
}
