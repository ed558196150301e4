//! Reading a client request: JSON checked against the shape of each endpoint (errors name the field), the
//! parts a trace records pulled out, and the body kept whole so every parameter passes through untouched.
use super::error::GatewayError;
use super::prompt::PromptCall;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub use crate::engine::Endpoint;

/// Bounds on what a client names, before it reaches a trace, a metric label or a monitor: longer or more get a
/// 400 that names the limit.
pub const MAX_MODEL_BYTES: usize = 256;
/// `user`, session and prompt ids and versions, and each tag's value.
pub const MAX_TAG_VALUE_BYTES: usize = 256;
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Tags from `metadata` and `x-llmops-tag-*` headers together.
pub const MAX_TAGS: usize = 32;

/// What the gateway needs to know about a request; `body` is forwarded.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for a usage chunk at the end of the stream.
    pub wants_stream_usage: bool,
    pub user: String,
    pub session_id: String,
    pub prompt_id: String,
    pub prompt_version: String,
    /// The registry prompt the request names (`metadata.prompt`, `x-llmops-prompt`), until the gateway applies it.
    pub prompt: Option<PromptCall>,
    /// SHA-256 of the applied registry prompt version's content; empty when none.
    pub prompt_hash: String,
    pub tags: BTreeMap<String, String>,
    /// The prompt rendered as text for the trace (and for search).
    pub prompt_text: String,
    pub body: Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant turn's calls, for the trace's prompt text.
    #[serde(default)]
    tool_calls: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

/// The fields every endpoint shares, with the types OpenAI documents. Unknown fields pass through. The
/// sampling fields are only type-checked here (so a wrong type gets a 400 naming it); the body forwards them.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Common {
    /// Optional only for requests naming a registry prompt with a model of its own (checked after parsing).
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
    /// OpenAI's successor of `user`; the trace's user when `user` is absent.
    #[serde(default)]
    safety_identifier: Option<String>,
    /// String values are tags; `prompt` and `variables` name a registry prompt (see `prompt`).
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    seed: Option<i64>,
}

// Read apart from `Common` (rather than flattened into it) so type errors keep their field path.
#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<ChatMessage>,
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: Prompt,
}

#[derive(Deserialize)]
struct EmbeddingBody {
    model: String,
    input: Prompt,
    #[serde(default)]
    user: Option<String>,
}

/// A string, a list of strings, or token ids (kept as text).
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl Prompt {
    fn render(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Texts(texts) => texts.join("\n"),
            Self::Tokens(tokens) => format!("{tokens:?}"),
            Self::TokenLists(lists) => format!("{lists:?}"),
        }
    }
}

/// Reads a typed view of the already parsed body; a type error names the field's path.
fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, GatewayError> {
    serde_path_to_error::deserialize(body).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            GatewayError::invalid(format!("invalid request body: {inner}"))
        } else {
            GatewayError::invalid_param(path.clone(), format!("invalid value for `{path}`: {inner}"))
        }
    })
}

impl ClientRequest {
    pub fn parse(endpoint: Endpoint, bytes: &[u8], headers: &HeaderMap) -> Result<Self, GatewayError> {
        let body: Value =
            serde_json::from_slice(bytes).map_err(|e| GatewayError::invalid(format!("invalid JSON body: {e}")))?;
        if !body.is_object() {
            return Err(GatewayError::invalid("request body must be a JSON object"));
        }
        let (common, prompt_text, no_messages) = read_common(endpoint, &body)?;
        let (tags, metadata_prompt) = super::prompt::split_metadata(common.metadata.unwrap_or_default())?;
        let prompt = super::prompt::read(metadata_prompt, headers)?;
        if prompt.is_some() && endpoint != Endpoint::ChatCompletions {
            return Err(GatewayError::invalid_param(
                "metadata.prompt",
                "registry prompts apply to /v1/chat/completions only",
            ));
        }
        // A registry prompt brings messages (and may bring the model): checked again once it is applied.
        if prompt.is_none() && no_messages {
            return Err(GatewayError::invalid_param("messages", "`messages` must not be empty"));
        }
        let model = checked_model(common.model, prompt.is_some())?;
        let stream = common.stream.unwrap_or(false);
        let mut request = ClientRequest {
            model,
            stream,
            wants_stream_usage: stream && common.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
            user: match (common.user, common.safety_identifier) {
                (Some(user), _) => bounded("user", user)?,
                (None, identifier) => bounded("safety_identifier", identifier.unwrap_or_default())?,
            },
            session_id: String::new(),
            prompt_id: String::new(),
            prompt_version: String::new(),
            prompt,
            prompt_hash: String::new(),
            tags: BTreeMap::new(),
            prompt_text,
            body,
        };
        for (key, value) in tags {
            request.set_tag(&key, value)?;
        }
        request.read_tag_headers(headers)?;
        Ok(request)
    }

    /// `x-llmops-session-id`, `x-llmops-prompt-id`, `x-llmops-prompt-version`, `x-llmops-user` and
    /// `x-llmops-tag-<name>` headers; headers win over `metadata`.
    fn read_tag_headers(&mut self, headers: &HeaderMap) -> Result<(), GatewayError> {
        for (name, value) in headers {
            let Some(key) = name.as_str().strip_prefix("x-llmops-") else { continue };
            let Ok(value) = value.to_str() else { continue };
            match key {
                // A registry prompt and its variables (see `prompt`), not tags.
                "prompt" | "prompt-variables" => {}
                "user" => self.user = bounded("x-llmops-user", value.to_string())?,
                _ => self.set_tag(key.strip_prefix("tag-").unwrap_or(key), value.to_string())?,
            }
        }
        Ok(())
    }

    fn set_tag(&mut self, key: &str, value: String) -> Result<(), GatewayError> {
        let value = bounded(key, value)?;
        match key.replace('-', "_").as_str() {
            "session_id" => self.session_id = value,
            "prompt_id" => self.prompt_id = value,
            "prompt_version" => self.prompt_version = value,
            _ => {
                if key.len() > MAX_TAG_KEY_BYTES || key.is_empty() {
                    let shown: String = key.chars().take(MAX_TAG_KEY_BYTES).collect();
                    return Err(GatewayError::invalid_param(
                        "metadata",
                        format!("tag name {shown:?}... must be 1 to {MAX_TAG_KEY_BYTES} bytes long"),
                    ));
                }
                if self.tags.len() >= MAX_TAGS && !self.tags.contains_key(key) {
                    return Err(GatewayError::invalid_param(
                        "metadata",
                        format!("more than {MAX_TAGS} tags (metadata and x-llmops-tag-* headers together)"),
                    ));
                }
                self.tags.insert(key.to_string(), value);
            }
        }
        Ok(())
    }

    /// Re-reads the prompt text from the body's messages, after a registry prompt was put before them.
    pub fn refresh_prompt_text(&mut self) {
        if let Ok(chat) = typed::<ChatBody>(&self.body) {
            self.prompt_text = render_messages(&chat.messages);
        }
    }

    /// The body for the engine: its model name, and usage requested in streams so token counts are exact.
    /// Edited in place (no copy per request); each attempt sets its own model.
    pub fn upstream_body(&mut self, engine_model: &str) -> &Value {
        if let Some(object) = self.body.as_object_mut() {
            object.insert("model".into(), Value::String(engine_model.to_string()));
            if self.stream {
                let options = object.entry("stream_options").or_insert_with(|| Value::Object(Default::default()));
                if let Some(options) = options.as_object_mut() {
                    options.insert("include_usage".into(), Value::Bool(true));
                }
            }
        }
        &self.body
    }
}

/// The typed fields every endpoint shares, the prompt as text for the trace, and whether a chat request
/// came without messages (allowed only when a registry prompt brings them).
fn read_common(endpoint: Endpoint, body: &Value) -> Result<(Common, String, bool), GatewayError> {
    Ok(match endpoint {
        Endpoint::ChatCompletions => {
            let common: Common = typed(body)?;
            let chat: ChatBody = typed(body)?;
            let no_messages = chat.messages.is_empty();
            (common, render_messages(&chat.messages), no_messages)
        }
        Endpoint::Completions => {
            let common: Common = typed(body)?;
            let completion: CompletionBody = typed(body)?;
            (common, completion.prompt.render(), false)
        }
        Endpoint::Embeddings => {
            let embedding: EmbeddingBody = typed(body)?;
            let common = Common {
                model: Some(embedding.model),
                stream: None,
                stream_options: None,
                user: embedding.user,
                safety_identifier: None,
                metadata: None,
                max_tokens: None,
                max_completion_tokens: None,
                temperature: None,
                top_p: None,
                n: None,
                seed: None,
            };
            (common, embedding.input.render(), false)
        }
    })
}

/// The requested model, bounded; it may be left out only when a registry prompt names one.
fn checked_model(model: Option<String>, has_prompt: bool) -> Result<String, GatewayError> {
    let model = match model {
        None if !has_prompt => return Err(GatewayError::invalid_param("model", "`model` is required")),
        None => String::new(),
        Some(model) if model.trim().is_empty() => {
            if !has_prompt {
                return Err(GatewayError::invalid_param("model", "`model` must not be empty"));
            }
            String::new()
        }
        Some(model) => model,
    };
    if model.len() > MAX_MODEL_BYTES {
        return Err(GatewayError::invalid_param(
            "model",
            format!("`model` is {} bytes long; at most {MAX_MODEL_BYTES} are accepted", model.len()),
        ));
    }
    Ok(model)
}

/// `value` if it is within [`MAX_TAG_VALUE_BYTES`], else a 400 naming `what`.
fn bounded(what: &str, value: String) -> Result<String, GatewayError> {
    if value.len() <= MAX_TAG_VALUE_BYTES {
        return Ok(value);
    }
    let what: String = what.chars().take(MAX_TAG_KEY_BYTES).collect();
    Err(GatewayError::invalid_param(
        what.clone(),
        format!("`{what}` is {} bytes long; at most {MAX_TAG_VALUE_BYTES} are accepted", value.len()),
    ))
}

fn render_messages(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for message in messages {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&message.role);
        text.push_str(": ");
        match &message.content {
            Some(Content::Text(content)) => text.push_str(content),
            Some(Content::Parts(parts)) => {
                let joined: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                text.push_str(&joined.join(" "));
            }
            None => {}
        }
        super::tool_calls::ToolCalls::from_list(message.tool_calls.as_ref()).append_to(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, body: &str) -> Result<ClientRequest, GatewayError> {
        ClientRequest::parse(endpoint, body.as_bytes(), &HeaderMap::new())
    }

    fn message_of(result: Result<ClientRequest, GatewayError>) -> String {
        result.expect_err("must be refused").to_string()
    }

    #[test]
    fn chat_request_is_read_and_rendered() {
        let request = parse(
            Endpoint::ChatCompletions,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"user":"u1",
               "metadata":{"session_id":"s9","team":"x"},
               "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
        )
        .expect("valid");
        assert_eq!(request.model, "m");
        assert!(request.stream && request.wants_stream_usage);
        assert_eq!(request.user, "u1");
        assert_eq!(request.session_id, "s9");
        assert_eq!(request.tags.get("team").map(String::as_str), Some("x"));
        assert_eq!(request.prompt_text, "system: be brief\nuser: hi");
    }

    #[test]
    fn bad_input_names_the_field() {
        assert!(message_of(parse(Endpoint::ChatCompletions, "{not json")).starts_with("invalid JSON body"));
        assert!(message_of(parse(Endpoint::ChatCompletions, "[1]")).contains("JSON object"));
        assert!(message_of(parse(Endpoint::ChatCompletions, r#"{"model":"m"}"#)).contains("messages"));
        let wrong = message_of(parse(Endpoint::ChatCompletions, r#"{"model":"m","messages":[],"temperature":"hot"}"#));
        assert!(wrong.contains("`temperature`"), "{wrong}");
        let nested = message_of(parse(Endpoint::ChatCompletions, r#"{"model":"m","messages":[{"role":7}]}"#));
        assert!(nested.contains("`messages[0].role`"), "{nested}");
        assert!(message_of(parse(Endpoint::ChatCompletions, r#"{"model":"m","messages":[]}"#))
            .contains("must not be empty"));
        assert!(message_of(parse(Endpoint::Completions, r#"{"model":"m"}"#)).contains("prompt"));
        assert!(message_of(parse(Endpoint::Embeddings, r#"{"model":"m","input":{}}"#)).contains("`input`"));
        assert!(message_of(parse(Endpoint::ChatCompletions, r#"{"model":5,"messages":[]}"#)).contains("`model`"));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let bytes = b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}";
        let error = ClientRequest::parse(Endpoint::ChatCompletions, bytes, &HeaderMap::new()).expect_err("refused");
        assert!(error.to_string().contains("invalid JSON body"), "{error}");
    }

    #[test]
    fn headers_set_tags_and_win_over_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("x-llmops-prompt-version", "v2".parse().expect("header"));
        headers.insert("x-llmops-tag-env", "prod".parse().expect("header"));
        let request = ClientRequest::parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"p","metadata":{"prompt_version":"v1"}}"#,
            &headers,
        )
        .expect("valid");
        assert_eq!(request.prompt_version, "v2");
        assert_eq!(request.tags.get("env").map(String::as_str), Some("prod"));
    }

    #[test]
    fn client_named_values_are_bounded() {
        let long = "m".repeat(MAX_MODEL_BYTES + 1);
        let refused = message_of(parse(Endpoint::Completions, &format!(r#"{{"model":"{long}","prompt":"p"}}"#)));
        assert!(refused.contains("`model` is 257 bytes long; at most 256"), "{refused}");
        let at_limit = "m".repeat(MAX_MODEL_BYTES);
        assert!(parse(Endpoint::Completions, &format!(r#"{{"model":"{at_limit}","prompt":"p"}}"#)).is_ok());

        let value = "v".repeat(MAX_TAG_VALUE_BYTES + 1);
        for field in ["session_id", "prompt_version", "team"] {
            let body = format!(r#"{{"model":"m","prompt":"p","metadata":{{"{field}":"{value}"}}}}"#);
            assert!(message_of(parse(Endpoint::Completions, &body)).contains("at most 256"), "{field}");
        }
        let body = format!(r#"{{"model":"m","prompt":"p","user":"{value}"}}"#);
        assert!(message_of(parse(Endpoint::Completions, &body)).contains("`user`"));

        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!(r#""t{i}":"x""#)).collect();
        let body = format!(r#"{{"model":"m","prompt":"p","metadata":{{{}}}}}"#, many.join(","));
        assert!(message_of(parse(Endpoint::Completions, &body)).contains("more than 32 tags"));
        let key = "k".repeat(MAX_TAG_KEY_BYTES + 1);
        let body = format!(r#"{{"model":"m","prompt":"p","metadata":{{"{key}":"x"}}}}"#);
        assert!(message_of(parse(Endpoint::Completions, &body)).contains("must be 1 to 64 bytes"));

        let mut headers = HeaderMap::new();
        headers.insert("x-llmops-prompt-version", value.parse().expect("header"));
        let refused = ClientRequest::parse(Endpoint::Completions, br#"{"model":"m","prompt":"p"}"#, &headers);
        assert!(message_of(refused).contains("prompt-version"));
    }

    #[test]
    fn upstream_body_asks_for_stream_usage_and_keeps_other_parameters() {
        let mut request = parse(
            Endpoint::ChatCompletions,
            r#"{"model":"public","stream":true,"top_k":5,"messages":[{"role":"user","content":"x"}]}"#,
        )
        .expect("valid");
        assert!(!request.wants_stream_usage);
        let body = request.upstream_body("engine-model").clone();
        assert_eq!(body["model"], "engine-model");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["top_k"], 5);
    }
}
