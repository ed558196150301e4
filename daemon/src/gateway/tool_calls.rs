//! Tool calls in an answer, for the trace: the calls (function and arguments) are written after the answer's
//! text, one line each, so the console's detail view, search and replay's comparison see them. Streams send a
//! call in pieces (`delta.tool_calls`), gathered here within bounds.
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// Calls kept per answer (OpenAI accepts at most 128 tools; a model may call one several times).
const MAX_CALLS: usize = 128;
/// Argument text kept per call.
const MAX_ARGUMENT_BYTES: usize = 64 * 1024;

/// One call's piece in a streamed chunk.
#[derive(Deserialize)]
pub struct CallDelta<'a> {
    #[serde(default)]
    index: usize,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// The calls of an answer: (function name, arguments as JSON text).
#[derive(Debug, Default, PartialEq)]
pub struct ToolCalls(Vec<(String, String)>);

impl ToolCalls {
    /// The calls of a whole chat answer's message.
    pub fn from_message(message: Option<&Value>) -> Self {
        Self::from_list(message.and_then(|m| m.get("tool_calls")))
    }

    /// The calls of a message's `tool_calls` list.
    pub fn from_list(list: Option<&Value>) -> Self {
        let mut calls = Self::default();
        let listed = list.and_then(Value::as_array);
        for (index, call) in listed.into_iter().flatten().enumerate().take(MAX_CALLS) {
            let text = |field: &str| call.pointer(field).and_then(Value::as_str).unwrap_or_default();
            calls.add(index, text("/function/name"), text("/function/arguments"));
        }
        calls
    }

    /// Adds a streamed chunk's pieces.
    pub fn observe(&mut self, deltas: &[CallDelta<'_>]) {
        for delta in deltas {
            let Some(function) = &delta.function else { continue };
            self.add(
                delta.index,
                function.name.as_deref().unwrap_or_default(),
                function.arguments.as_deref().unwrap_or_default(),
            );
        }
    }

    fn add(&mut self, index: usize, name: &str, arguments: &str) {
        if index >= MAX_CALLS {
            return;
        }
        if self.0.len() <= index {
            self.0.resize(index + 1, (String::new(), String::new()));
        }
        let (call_name, call_arguments) = &mut self.0[index];
        if call_name.len() < 256 {
            call_name.push_str(name);
        }
        if call_arguments.len() + arguments.len() <= MAX_ARGUMENT_BYTES {
            call_arguments.push_str(arguments);
        }
    }

    /// `text` followed by one line per call: `tool_call name(arguments)`.
    pub fn append_to(&self, text: &mut String) {
        for (name, arguments) in &self.0 {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("tool_call {name}({arguments})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_and_streamed_calls_read_the_same() {
        let message = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]});
        let whole = ToolCalls::from_message(Some(&message));
        let mut streamed = ToolCalls::default();
        for chunk in [
            r#"[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]"#,
            r#"[{"index":0,"function":{"arguments":"{\"city\":"}}]"#,
            r#"[{"index":0,"function":{"arguments":"\"Paris\"}"}}]"#,
        ] {
            let deltas: Vec<CallDelta<'_>> = serde_json::from_str(chunk).expect("valid");
            streamed.observe(&deltas);
        }
        assert_eq!(whole, streamed);
        let mut text = String::from("Checking.");
        whole.append_to(&mut text);
        assert_eq!(text, "Checking.\ntool_call get_weather({\"city\":\"Paris\"})");
    }

    #[test]
    fn hostile_streams_are_bounded() {
        let mut calls = ToolCalls::default();
        let far: Vec<CallDelta<'_>> =
            serde_json::from_str(r#"[{"index":1000000000,"function":{"name":"x"}}]"#).expect("valid");
        calls.observe(&far);
        assert!(calls.0.is_empty(), "an index past the bound is not a reason to allocate");
        let piece = "x".repeat(1024);
        let json = format!(r#"[{{"index":0,"function":{{"arguments":"{piece}"}}}}]"#);
        for _ in 0..1000 {
            let deltas: Vec<CallDelta<'_>> = serde_json::from_str(&json).expect("valid");
            calls.observe(&deltas);
        }
        assert!(calls.0[0].1.len() <= MAX_ARGUMENT_BYTES);
    }
}
