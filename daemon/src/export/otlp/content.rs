//! Prompt and answer text, built only when the exporter's settings allow content. Each side (the input
//! messages, the prompt text, the answer) has a budget of `max_content_chars` characters across all its texts:
//! a per-text cap alone would let a 10,000-message request through at full size.
use super::attrs::{label, truncate};
use crate::trace::Trace;
use serde_json::{json, Map, Value};

/// Messages past this many are dropped (and the span marked truncated): each becomes several attributes in
/// the OpenInference profile.
const MAX_MESSAGES: usize = 128;
const MAX_ROLE_CHARS: usize = 64;
const MAX_ID_CHARS: usize = 256;
/// Tool calls kept per message (each becomes several attributes in the phoenix profile).
const MAX_TOOL_CALLS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message as the OpenAI chat API has it, its text parts joined (images and audio are not exported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub role: String,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// Set on `tool` messages: the call this one answers.
    pub tool_call_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    /// From the body's `messages`; else the prompt text as one user message.
    pub input: Vec<Message>,
    /// Whether `input` came from the body's messages (not a flattened prompt).
    pub structured_input: bool,
    pub prompt_text: String,
    pub response_text: String,
    /// Some text was cut or some messages dropped.
    pub truncated: bool,
}

struct Budget {
    left: usize,
    cut: bool,
}

impl Budget {
    fn take(&mut self, text: &str) -> String {
        let (kept, cut) = truncate(text, self.left);
        self.left -= kept.chars().count();
        self.cut |= cut;
        kept.to_string()
    }
}

impl Content {
    pub fn build(trace: &Trace, body: Option<&Map<String, Value>>, max_chars: usize) -> Self {
        let mut budget = Budget { left: max_chars, cut: false };
        let (prompt_text, prompt_cut) = truncate(&trace.prompt_text, max_chars);
        let (response_text, response_cut) = truncate(&trace.response_text, max_chars);
        // `request_json` is the body as the client sent it: with a registry prompt, the messages the engine got
        // (the prompt rendered before them) are only in the trace's prompt text.
        let messages = body
            .filter(|_| trace.prompt_id.is_empty())
            .and_then(|body| body.get("messages"))
            .and_then(Value::as_array)
            .filter(|messages| !messages.is_empty());
        let (input, structured_input) = match messages {
            Some(messages) => (read_messages(messages, &mut budget), true),
            None if prompt_text.is_empty() => (Vec::new(), false),
            None => {
                let message = Message { role: "user".into(), text: prompt_text.to_string(), ..Message::default() };
                (vec![message], false)
            }
        };
        Self {
            input,
            structured_input,
            prompt_text: prompt_text.to_string(),
            response_text: response_text.to_string(),
            truncated: budget.cut || prompt_cut || response_cut,
        }
    }

    /// `gen_ai.input.messages`: the conventions' shape, `[{"role", "parts": [{"type": "text", "content"}]}]`.
    pub fn genai_input(&self) -> String {
        let messages: Vec<Value> = self.input.iter().map(genai_message).collect();
        Value::Array(messages).to_string()
    }

    /// `gen_ai.output.messages`, or `None` without an answer (embeddings, refused requests).
    pub fn genai_output(&self, finish_reason: &str) -> Option<String> {
        if self.response_text.is_empty() {
            return None;
        }
        let part = json!({"type": "text", "content": self.response_text});
        let message = json!({"role": "assistant", "parts": [part], "finish_reason": label(finish_reason)});
        Some(Value::Array(vec![message]).to_string())
    }

    /// The input in the OpenAI chat shape, `[{"role", "content"}]`, which Langfuse renders as a conversation.
    pub fn chat_input(&self) -> String {
        let messages: Vec<Value> = self
            .input
            .iter()
            .map(|message| {
                let mut object = Map::new();
                object.insert("role".into(), message.role.clone().into());
                object.insert("content".into(), message.text.clone().into());
                if !message.tool_call_id.is_empty() {
                    object.insert("tool_call_id".into(), message.tool_call_id.clone().into());
                }
                if !message.tool_calls.is_empty() {
                    let calls = message.tool_calls.iter().map(|call| {
                        json!({"id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": call.arguments}})
                    });
                    object.insert("tool_calls".into(), Value::Array(calls.collect()));
                }
                Value::Object(object)
            })
            .collect();
        Value::Array(messages).to_string()
    }
}

fn genai_message(message: &Message) -> Value {
    let mut parts = Vec::new();
    if message.role == "tool" && !message.tool_call_id.is_empty() {
        parts.push(json!({"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}));
    } else if !message.text.is_empty() {
        parts.push(json!({"type": "text", "content": message.text}));
    }
    for call in &message.tool_calls {
        // The conventions allow the arguments as a string when they are not a JSON object.
        let arguments =
            serde_json::from_str::<Value>(&call.arguments).unwrap_or_else(|_| call.arguments.clone().into());
        parts.push(json!({"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}));
    }
    json!({"role": message.role, "parts": parts})
}

fn read_messages(messages: &[Value], budget: &mut Budget) -> Vec<Message> {
    let mut read = Vec::new();
    for message in messages {
        if read.len() == MAX_MESSAGES || budget.left == 0 {
            budget.cut = true;
            break;
        }
        let field = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or("");
        let role = truncate(field("role"), MAX_ROLE_CHARS).0.to_string();
        let tool_call_id = truncate(field("tool_call_id"), MAX_ID_CHARS).0.to_string();
        let text = budget.take(&text_of(message.get("content")));
        let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut tool_calls = Vec::new();
        if calls.len() > MAX_TOOL_CALLS {
            budget.cut = true;
        }
        for call in calls.iter().take(MAX_TOOL_CALLS) {
            let function = call.get("function");
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
            let arguments = function.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            tool_calls.push(ToolCall {
                id: truncate(id, MAX_ID_CHARS).0.to_string(),
                name: truncate(name, MAX_ID_CHARS).0.to_string(),
                arguments: budget.take(arguments),
            });
        }
        read.push(Message { role, text, tool_calls, tool_call_id });
    }
    read
}

/// A message's text: a string, or the text parts of a part list joined by spaces (as the trace's prompt text
/// joins them).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect();
            texts.join(" ")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::otlp::request::parse;

    fn content(body: &str, max_chars: usize) -> Content {
        let trace = Trace { prompt_text: "user: hi".into(), response_text: "héllo".into(), ..Trace::default() };
        Content::build(&trace, parse(body).as_ref(), max_chars)
    }

    #[test]
    fn one_budget_across_the_messages() {
        let body = r#"{"messages":[{"role":"system","content":"abcdef"},{"role":"user","content":"ghij"},
                      {"role":"user","content":"never"}]}"#;
        let content = content(body, 8);
        let texts: Vec<&str> = content.input.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["abcdef", "gh"]);
        assert!(content.truncated && content.structured_input);
        assert_eq!(content.response_text, "héllo");
    }

    #[test]
    fn falls_back_to_the_prompt_text() {
        let content = content(r#"{"prompt":"x"}"#, 100);
        assert!(!content.structured_input && !content.truncated);
        assert_eq!(content.genai_input(), r#"[{"role":"user","parts":[{"type":"text","content":"user: hi"}]}]"#);
    }

    #[test]
    fn a_registry_prompt_run_reads_the_rendered_prompt_text() {
        let trace =
            Trace { prompt_id: "greeting".into(), prompt_text: "system: hi\nuser: yo".into(), ..Trace::default() };
        let body = parse(r#"{"messages":[{"role":"user","content":"yo"}]}"#);
        let content = Content::build(&trace, body.as_ref(), 100);
        assert!(!content.structured_input);
        assert_eq!(content.input[0].text, "system: hi\nuser: yo");
    }

    #[test]
    fn tool_calls_and_answers_keep_their_shape() {
        let body = r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
            "function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}]}"#;
        let content = content(body, 100);
        assert_eq!(
            content.genai_input(),
            concat!(
                r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"f","arguments":{"a":1}}]},"#,
                r#"{"role":"tool","parts":[{"type":"tool_call_response","id":"c1","response":"42"}]}]"#
            )
        );
    }
}
