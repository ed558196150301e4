//! A dataset item: the chat messages to send, the expected answer, and what else the request carried (prompt
//! variables, a registry prompt, parameters), in one JSONL shape for import and export:
//! `{"messages": [...], "reference": "...", "variables": {...}, "prompt": "NAME@REF", "parameters": {...},
//! "metadata": {...}}`. Items come from clients (hostile) or recorded traces; both pass the same checks.
use super::{limits, EvalError};
use crate::trace::{Trace, TraceStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Request fields an item never carries as parameters: the run decides them.
const RUN_OWNED: [&str; 6] = ["model", "messages", "stream", "stream_options", "metadata", "user"];

/// An item before it is stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    #[serde(default)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub reference: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Not part of the JSONL shape (set for items made from traces).
    #[serde(skip)]
    pub source_trace_id: String,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetItem {
    /// 1, 2, ... in the order added.
    pub id: u32,
    pub item: NewItem,
    pub created_at_unix_ms: i64,
}

impl NewItem {
    /// One JSONL line, checked.
    pub fn from_json(line: &str) -> Result<Self, EvalError> {
        if line.len() > limits::MAX_ITEM_BYTES {
            return Err(EvalError::Invalid(format!(
                "an item is {} bytes; at most {} are accepted",
                line.len(),
                limits::MAX_ITEM_BYTES
            )));
        }
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let item: NewItem = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            EvalError::Invalid(format!("item field `{path}`: {}", error.inner()))
        })?;
        item.check()?;
        Ok(item)
    }

    /// The item made from a recorded chat request: its messages, parameters and prompt, with the recorded
    /// answer as the reference. `Err` says why the trace cannot be one.
    pub fn from_trace(trace: &Trace) -> Result<Self, String> {
        let id = &trace.id;
        if trace.endpoint != "chat.completions" {
            return Err(format!("trace {id} is a {} request, not a chat completion", trace.endpoint));
        }
        if trace.status != TraceStatus::Ok {
            return Err(format!("trace {id} did not succeed ({:?}), so it has no answer to keep", trace.status));
        }
        if trace.request_json.is_empty() {
            return Err(format!("trace {id} kept no request body (privacy mode)"));
        }
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&trace.request_json) else {
            return Err(format!("trace {id}'s request body is not a JSON object"));
        };
        let Some(Value::Array(messages)) = body.remove("messages") else {
            return Err(format!("trace {id}'s request has no messages"));
        };
        let mut metadata = match body.remove("metadata") {
            Some(Value::Object(metadata)) => metadata,
            _ => Map::new(),
        };
        let mut prompt = match metadata.remove("prompt") {
            Some(Value::String(prompt)) => prompt,
            _ => String::new(),
        };
        // Headers (`x-llmops-prompt`) are not kept, but the trace knows what was rendered.
        if prompt.is_empty() && !trace.prompt_id.is_empty() {
            prompt = format!("{}@{}", trace.prompt_id, trace.prompt_version);
        }
        let variables = match metadata.remove("variables") {
            Some(Value::Object(variables)) => variables,
            Some(Value::String(encoded)) => match serde_json::from_str(&encoded) {
                Ok(Value::Object(variables)) => variables,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        for key in RUN_OWNED {
            body.remove(key);
        }
        let mut about = Map::new();
        about.insert("route".into(), Value::String(trace.route.clone()));
        about.insert("model".into(), Value::String(trace.model_served.clone()));
        let item = NewItem {
            messages,
            reference: trace.response_text.clone(),
            variables,
            prompt,
            parameters: body,
            metadata: about,
            source_trace_id: trace.id.clone(),
        };
        item.check().map_err(|error| format!("trace {id}: {error}"))?;
        Ok(item)
    }

    /// The item's bounds and shape: up to 256 messages that are objects with a role (none only when a
    /// registry prompt brings them: the item names a prompt or has variables for the run's), string variables,
    /// no run-owned parameter, at most 256 KiB in all.
    pub fn check(&self) -> Result<(), EvalError> {
        let invalid = |message: String| Err(EvalError::Invalid(message));
        if self.messages.is_empty() && self.prompt.is_empty() && self.variables.is_empty() {
            return invalid(
                "an item needs messages, or a prompt (or variables for the run's prompt) to bring them".into(),
            );
        }
        if self.messages.len() > limits::MAX_MESSAGES_PER_ITEM {
            return invalid(format!(
                "an item has {} messages; at most {} are accepted",
                self.messages.len(),
                limits::MAX_MESSAGES_PER_ITEM
            ));
        }
        for (index, message) in self.messages.iter().enumerate() {
            if !message.get("role").is_some_and(Value::is_string) {
                return invalid(format!("messages[{index}] must be an object with a string `role`"));
            }
        }
        if let Some((name, _)) = self.variables.iter().find(|(_, value)| !value.is_string()) {
            return invalid(format!("variables.{} must be a string", super::truncate(name, 64)));
        }
        if let Some(key) = RUN_OWNED.iter().find(|key| self.parameters.contains_key(**key)) {
            return invalid(format!("parameters.{key} is set by the run, not by an item"));
        }
        if !self.prompt.is_empty() {
            crate::prompts::PromptRef::parse(&self.prompt)
                .map_err(|error| EvalError::Invalid(format!("prompt: {error}")))?;
        }
        let size = self.to_json().len();
        if size > limits::MAX_ITEM_BYTES {
            return invalid(format!("an item is {size} bytes; at most {} are accepted", limits::MAX_ITEM_BYTES));
        }
        Ok(())
    }

    /// The JSONL shape (one line).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The last user message's text, for display.
    pub fn input_preview(&self) -> String {
        let last_user = self.messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        let text = match last_user.and_then(|m| m.get("content")) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        };
        super::truncate(&text, 512).to_string()
    }
}
