//! A chat request that names a registry prompt: `metadata.prompt = "NAME@REF"` with `metadata.variables` (an
//! object, or that object JSON-encoded as a string, since OpenAI's `metadata` values are strings), or the headers
//! `x-llmops-prompt: NAME@REF` and `x-llmops-prompt-variables: {json}` (headers win). A bare `NAME` means
//! `NAME@production`. The prompt is resolved from the registry's memory at request time (a label move applies to
//! the next request), rendered, put before the client's messages, its default parameters filled in where the
//! client set none, and its name, version and content hash stamped on the trace. Whatever fails is a 400 whose
//! `param` says where to look.
use super::error::GatewayError;
use super::request::ClientRequest;
use crate::prompts::{limits, PromptError, PromptRef, PromptRegistry, RefKind};
use axum::http::HeaderMap;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const PROMPT_HEADER: &str = "x-llmops-prompt";
pub const VARIABLES_HEADER: &str = "x-llmops-prompt-variables";
const PROMPT_PARAM: &str = "metadata.prompt";
const VARIABLES_PARAM: &str = "metadata.variables";
/// Each pair counts as one: a client's `max_completion_tokens` means a prompt's `max_tokens` is not wanted.
const ALIASES: [(&str, &str); 1] = [("max_tokens", "max_completion_tokens")];

/// What a request says about a registry prompt, read and bounded but not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptCall {
    pub reference: PromptRef,
    pub variables: BTreeMap<String, String>,
    /// Where the ref and the variables came from, for the `param` of a refusal.
    pub source: &'static str,
    pub variables_source: &'static str,
}

/// The prompt parts of a request's `metadata` (`prompt`, `variables`), before the headers are read.
#[derive(Debug, Default)]
pub struct MetadataPrompt {
    pub prompt: Option<String>,
    pub variables: Option<Value>,
}

/// `metadata`'s string values (tags) apart from the registry prompt's `prompt` and `variables`; any other value
/// that is not a string is refused, naming it.
pub fn split_metadata(
    metadata: serde_json::Map<String, Value>,
) -> Result<(Vec<(String, String)>, MetadataPrompt), GatewayError> {
    let mut tags = Vec::new();
    let mut prompt = MetadataPrompt::default();
    for (key, value) in metadata {
        match (key.as_str(), value) {
            ("prompt", Value::String(reference)) => prompt.prompt = Some(reference),
            ("prompt", _) => {
                return Err(GatewayError::invalid_param(
                    "metadata.prompt",
                    "`metadata.prompt` must be a string such as \"support@production\"",
                ));
            }
            ("variables", value) => prompt.variables = Some(value),
            (_, Value::String(value)) => tags.push((key, value)),
            (_, other) => {
                let key: String = key.chars().take(super::request::MAX_TAG_KEY_BYTES).collect();
                let kind = match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                return Err(GatewayError::invalid_param(
                    format!("metadata.{key}"),
                    format!("invalid value for `metadata.{key}`: {kind}, expected a string"),
                ));
            }
        }
    }
    Ok((tags, prompt))
}

/// Combines `metadata` and the headers into the request's prompt call, if it names one.
pub fn read(metadata: MetadataPrompt, headers: &HeaderMap) -> Result<Option<PromptCall>, GatewayError> {
    let header = |name: &str| -> Result<Option<String>, GatewayError> {
        match headers.get(name) {
            None => Ok(None),
            Some(value) => value.to_str().map(|v| Some(v.trim().to_string())).map_err(|_| {
                GatewayError::invalid_param(name, format!("`{name}` must be visible ASCII (JSON escapes non-ASCII)"))
            }),
        }
    };
    let (reference, source) = match (header(PROMPT_HEADER)?, metadata.prompt) {
        (Some(reference), _) => (reference, PROMPT_HEADER),
        (None, Some(reference)) => (reference, PROMPT_PARAM),
        (None, None) => {
            if metadata.variables.is_some() || headers.contains_key(VARIABLES_HEADER) {
                return Err(GatewayError::invalid_param(
                    VARIABLES_PARAM,
                    "prompt variables were given but no prompt is named (metadata.prompt or x-llmops-prompt)",
                ));
            }
            return Ok(None);
        }
    };
    let reference = PromptRef::parse(&reference)
        .map_err(|error| GatewayError::invalid_param(source, format!("invalid `{source}`: {error}")))?;
    let (variables, variables_source) = match (header(VARIABLES_HEADER)?, metadata.variables) {
        (Some(text), _) => (variables_from_json(&text, VARIABLES_HEADER)?, VARIABLES_HEADER),
        (None, Some(Value::String(text))) => (variables_from_json(&text, VARIABLES_PARAM)?, VARIABLES_PARAM),
        (None, Some(value)) => (variables_from_value(value, VARIABLES_PARAM)?, VARIABLES_PARAM),
        (None, None) => (BTreeMap::new(), VARIABLES_PARAM),
    };
    Ok(Some(PromptCall { reference, variables, source, variables_source }))
}

/// Variables sent as JSON text (a header, or `metadata.variables` as a string), bounded before parsing.
fn variables_from_json(text: &str, param: &str) -> Result<BTreeMap<String, String>, GatewayError> {
    if text.len() > limits::MAX_VARIABLES_BYTES + 1024 {
        return Err(too_large(param, text.len()));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| GatewayError::invalid_param(param, format!("`{param}` is not a JSON object: {e}")))?;
    variables_from_value(value, param)
}

/// An object of strings (numbers and booleans are taken as their JSON text): at most 64 names of 1 to 64 bytes,
/// 64 KiB of names and values together.
fn variables_from_value(value: Value, param: &str) -> Result<BTreeMap<String, String>, GatewayError> {
    let Value::Object(object) = value else {
        return Err(GatewayError::invalid_param(param, format!("`{param}` must be a JSON object of strings")));
    };
    if object.len() > limits::MAX_VARIABLES {
        return Err(GatewayError::invalid_param(
            param,
            format!("`{param}` has {} variables; at most {} are accepted", object.len(), limits::MAX_VARIABLES),
        ));
    }
    let mut variables = BTreeMap::new();
    let mut bytes = 0usize;
    for (name, value) in object {
        if name.is_empty() || name.len() > limits::MAX_NAME_BYTES {
            let shown: String = name.chars().take(limits::MAX_NAME_BYTES).collect();
            return Err(GatewayError::invalid_param(
                param,
                format!("variable name {shown:?} must be 1 to {} bytes long", limits::MAX_NAME_BYTES),
            ));
        }
        let value = match value {
            Value::String(text) => text,
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => {
                return Err(GatewayError::invalid_param(
                    format!("{param}.{name}"),
                    format!("variable `{name}` must be a string (or a number or boolean)"),
                ))
            }
        };
        bytes = bytes.saturating_add(name.len() + value.len());
        if bytes > limits::MAX_VARIABLES_BYTES {
            return Err(too_large(param, bytes));
        }
        variables.insert(name, value);
    }
    Ok(variables)
}

fn too_large(param: &str, bytes: usize) -> GatewayError {
    GatewayError::invalid_param(
        param,
        format!("`{param}` is over {} bytes (names and values together; {bytes} or more)", limits::MAX_VARIABLES_BYTES),
    )
}

/// Resolves, renders and applies the request's prompt, if it names one; stamps the trace fields. A failure
/// leaves `prompt_id` set to the name asked for, so the refused request's trace shows it.
pub fn apply(registry: &PromptRegistry, request: &mut ClientRequest) -> Result<(), GatewayError> {
    let Some(call) = request.prompt.take() else { return Ok(()) };
    request.prompt_id = call.reference.name.clone();
    request.prompt_version.clear();
    let version = registry
        .resolve(&call.reference, RefKind::Label(crate::prompts::refs::PRODUCTION.into()))
        .map_err(|error| refusal(&call, error))?;
    request.prompt_version = version.version.to_string();
    request.prompt_hash = version.sha256.clone();
    let rendered = registry.render(&version, &call.variables).map_err(|error| refusal(&call, error))?;
    let Some(body) = request.body.as_object_mut() else {
        return Err(GatewayError::invalid("request body must be a JSON object"));
    };
    let mut messages: Vec<Value> =
        rendered.messages.into_iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
    if let Some(Value::Array(client)) = body.remove("messages") {
        messages.extend(client);
    }
    body.insert("messages".into(), Value::Array(messages));
    for (key, value) in &version.content.parameters {
        if !is_set(body, key) {
            body.insert(key.clone(), value.clone());
        }
    }
    if request.model.is_empty() {
        if version.content.model.is_empty() {
            return Err(GatewayError::invalid_param(
                "model",
                format!("`model` is required: the request names none and prompt {} has no model", call.reference),
            ));
        }
        request.model = version.content.model.clone();
        body.insert("model".into(), Value::String(request.model.clone()));
    }
    strip_prompt_metadata(body);
    request.refresh_prompt_text();
    Ok(())
}

/// Whether the client set `key` (or its alias).
fn is_set(body: &Map<String, Value>, key: &str) -> bool {
    body.contains_key(key)
        || ALIASES.iter().any(|(a, b)| (key == *a && body.contains_key(*b)) || (key == *b && body.contains_key(*a)))
}

/// `metadata.prompt` and `metadata.variables` are the gateway's: not forwarded (OpenAI's `metadata` takes strings
/// only), and `metadata` itself dropped when nothing else was in it.
fn strip_prompt_metadata(body: &mut Map<String, Value>) {
    let Some(Value::Object(metadata)) = body.get_mut("metadata") else { return };
    metadata.remove("prompt");
    metadata.remove("variables");
    if metadata.is_empty() {
        body.remove("metadata");
    }
}

/// A 400 naming where to look: the ref's source for unknown prompts, labels and versions and template
/// errors, the variables' source for a missing variable.
fn refusal(call: &PromptCall, error: PromptError) -> GatewayError {
    let reference = &call.reference;
    match error {
        PromptError::Render { message, variable: Some(_) } => GatewayError::invalid_param(
            call.variables_source,
            format!("prompt {reference}: {message}; give it in `{}`", call.variables_source),
        ),
        PromptError::Render { message, variable: None } => {
            GatewayError::invalid_param(call.source, format!("prompt {reference} did not render: {message}"))
        }
        PromptError::Store(message) => GatewayError::Internal(format!("prompt {reference}: {message}")),
        other => GatewayError::invalid_param(call.source, format!("`{}` = \"{reference}\": {other}", call.source)),
    }
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
