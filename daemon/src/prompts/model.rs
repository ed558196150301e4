//! A prompt version and what the registry says about prompts: the content rules a version must pass, its
//! canonical form (what the content hash covers and what `diff` compares), and the audit entries.
use super::{limits, PromptError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The roles a template message may have (tool results belong to the client's turns, not to a prompt).
pub const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// Request fields a prompt may not set as defaults: the gateway sets or reads them itself.
const RESERVED_PARAMETERS: [&str; 7] = ["model", "messages", "metadata", "stream", "stream_options", "prompt", "input"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: String,
    /// A minijinja template.
    pub content: String,
}

/// The content of a version, as pushed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewVersion {
    pub messages: Vec<PromptMessage>,
    /// Default request parameters, applied where the request sets none.
    pub parameters: Map<String, Value>,
    /// The route used when the request names no model; empty: none.
    pub model: String,
}

impl NewVersion {
    /// Reads the parts the API sends (`parameters_json` empty: none) and checks them. The size is checked
    /// first, so an oversized `parameters_json` is never parsed.
    pub fn from_parts(messages: Vec<PromptMessage>, parameters_json: &str, model: &str) -> Result<Self, PromptError> {
        let bytes = messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>()
            + parameters_json.len()
            + model.len();
        if bytes > limits::MAX_VERSION_BYTES {
            return Err(too_big(bytes));
        }
        let parameters = match parameters_json.trim() {
            "" => Map::new(),
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(PromptError::Invalid("`parameters` must be a JSON object".into())),
                Err(error) => return Err(PromptError::Invalid(format!("`parameters` is not valid JSON: {error}"))),
            },
        };
        let version = Self { messages, parameters, model: model.trim().to_string() };
        version.check()?;
        Ok(version)
    }

    /// The content rules: 1 to 32 messages of known roles, at most 64 KiB in all, at most 32 parameters none of
    /// which the gateway reserves, a bounded model name without control characters.
    pub fn check(&self) -> Result<(), PromptError> {
        if self.messages.is_empty() || self.messages.len() > limits::MAX_MESSAGES {
            return Err(PromptError::Invalid(format!(
                "a prompt version has 1 to {} messages; this one has {}",
                limits::MAX_MESSAGES,
                self.messages.len()
            )));
        }
        for (index, message) in self.messages.iter().enumerate() {
            if !ROLES.contains(&message.role.as_str()) {
                let role: String = message.role.chars().take(32).collect();
                return Err(PromptError::Invalid(format!(
                    "message {}: role {role:?} is not one of {}",
                    index + 1,
                    ROLES.join(", ")
                )));
            }
        }
        if self.parameters.len() > limits::MAX_PARAMETERS {
            return Err(PromptError::Invalid(format!(
                "at most {} parameters; this version has {}",
                limits::MAX_PARAMETERS,
                self.parameters.len()
            )));
        }
        if let Some(key) = self.parameters.keys().find(|key| RESERVED_PARAMETERS.contains(&key.as_str())) {
            return Err(PromptError::Invalid(format!(
                "parameter `{key}` cannot be a prompt default (reserved: {}; a prompt's route is `model`)",
                RESERVED_PARAMETERS.join(", ")
            )));
        }
        if self.model.len() > limits::MAX_MODEL_BYTES || self.model.chars().any(char::is_control) {
            return Err(PromptError::Invalid(format!(
                "`model` must be at most {} bytes without control characters",
                limits::MAX_MODEL_BYTES
            )));
        }
        let bytes = self.messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>()
            + Value::Object(self.parameters.clone()).to_string().len()
            + self.model.len();
        if bytes > limits::MAX_VERSION_BYTES {
            return Err(too_big(bytes));
        }
        Ok(())
    }

    /// JSON with every object's keys sorted and no insignificant whitespace: the same content always gives
    /// the same bytes, whatever order a file or client wrote the keys in.
    pub fn canonical_json(&self) -> String {
        let messages: Vec<Value> =
            self.messages.iter().map(|m| sorted(&serde_json::json!({"role": m.role, "content": m.content}))).collect();
        let value = sorted(&serde_json::json!({
            "messages": messages,
            "parameters": Value::Object(self.parameters.clone()),
            "model": self.model,
        }));
        value.to_string()
    }

    /// SHA-256 (hex) of [`Self::canonical_json`]: the content hash stamped on traces.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.canonical_json().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The version as text for people and for `diff`: model, parameters, then each message under a
    /// `[N role]` line.
    pub fn canonical_text(&self) -> String {
        let mut text = String::new();
        if !self.model.is_empty() {
            text.push_str(&format!("model = {:?}\n", self.model));
        }
        if !self.parameters.is_empty() {
            text.push_str(&format!("parameters = {}\n", sorted(&Value::Object(self.parameters.clone()))));
        }
        for (index, message) in self.messages.iter().enumerate() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("[{} {}]\n{}", index + 1, message.role, message.content));
            if !message.content.ends_with('\n') {
                text.push('\n');
            }
        }
        text
    }
}

fn too_big(bytes: usize) -> PromptError {
    PromptError::Invalid(format!(
        "a prompt version is at most {} bytes (templates, parameters and model); this one is {bytes}",
        limits::MAX_VERSION_BYTES
    ))
}

/// `value` with every object's keys in sorted order (serde_json keeps insertion order in this workspace).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptVersion {
    pub name: String,
    pub version: u32,
    pub content: NewVersion,
    pub sha256: String,
    pub created_at_unix_ms: i64,
    pub created_by: String,
    /// The variables its templates use, sorted.
    pub variables: Vec<String>,
}

/// A prompt's newest version and labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptSummary {
    pub name: String,
    pub latest: u32,
    pub labels: BTreeMap<String, u32>,
    pub updated_at_unix_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Push,
    Label,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Label => "label",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "push" => Some(Self::Push),
            "label" => Some(Self::Label),
            _ => None,
        }
    }
}

/// One push or label move.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at_unix_ms: i64,
    pub by: String,
    pub action: AuditAction,
    /// Empty for pushes.
    pub label: String,
    pub from_version: Option<u32>,
    pub to_version: u32,
    /// Label moves: the evaluation run that gated it.
    pub gate: Gate,
}

/// The evaluation run a label move was gated on (`prompts label --gate`); empty `run`: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    pub run: String,
    /// Moved although the run did not pass.
    pub forced: bool,
}

/// A unified diff of two versions' canonical text; empty when they are the same.
pub fn unified_diff(name: &str, from: &PromptVersion, to: &PromptVersion) -> String {
    let (old, new) = (from.content.canonical_text(), to.content.canonical_text());
    if old == new {
        return String::new();
    }
    similar::TextDiff::configure()
        .timeout(std::time::Duration::from_millis(200))
        .diff_lines(old.as_str(), new.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name}@{}", from.version), &format!("{name}@{}", to.version))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> PromptMessage {
        PromptMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn the_hash_ignores_key_order_and_whitespace_but_not_content() {
        let a = NewVersion::from_parts(
            vec![message("system", "Hi {{ name }}")],
            r#"{"temperature":0.2,"max_tokens":9}"#,
            "m",
        )
        .expect("valid");
        let b = NewVersion::from_parts(
            vec![message("system", "Hi {{ name }}")],
            "{ \"max_tokens\": 9, \"temperature\": 0.2 }",
            "m",
        )
        .expect("valid");
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.sha256().len(), 64);
        assert_eq!(
            a.canonical_json(),
            r#"{"messages":[{"content":"Hi {{ name }}","role":"system"}],"model":"m","parameters":{"max_tokens":9,"temperature":0.2}}"#
        );
        let c = NewVersion::from_parts(vec![message("system", "Hi {{ name }}!")], "", "m").expect("valid");
        assert_ne!(a.sha256(), c.sha256());
    }

    #[test]
    fn content_rules_name_what_is_wrong() {
        let refused = |messages: Vec<PromptMessage>, parameters: &str, model: &str| {
            NewVersion::from_parts(messages, parameters, model).expect_err("refused").to_string()
        };
        assert!(refused(vec![], "", "").contains("1 to 32 messages"));
        assert!(refused(vec![message("user", "x"); 33], "", "").contains("1 to 32 messages; this one has 33"));
        assert!(refused(vec![message("tool", "x")], "", "").contains("role \"tool\""));
        assert!(refused(vec![message("user", "x")], "[1]", "").contains("JSON object"));
        assert!(refused(vec![message("user", "x")], "{", "").contains("not valid JSON"));
        assert!(refused(vec![message("user", "x")], r#"{"stream":true}"#, "").contains("`stream`"));
        assert!(refused(vec![message("user", "x")], "", &"m".repeat(257)).contains("`model`"));
        let many: Vec<String> = (0..33).map(|i| format!("\"p{i}\":1")).collect();
        assert!(refused(vec![message("user", "x")], &format!("{{{}}}", many.join(",")), "").contains("at most 32"));
        let huge = refused(vec![message("user", &"x".repeat(64 * 1024))], "", "");
        assert!(huge.contains("at most 65536 bytes"), "{huge}");
        assert!(NewVersion::from_parts(vec![message("user", &"x".repeat(60 * 1024))], "", "").is_ok());
    }

    #[test]
    fn diff_is_unified_and_empty_when_identical() {
        let version = |n: u32, content: &str| PromptVersion {
            name: "support".into(),
            version: n,
            content: NewVersion::from_parts(vec![message("system", "Be kind."), message("user", content)], "", "")
                .expect("valid"),
            sha256: String::new(),
            created_at_unix_ms: 0,
            created_by: "t".into(),
            variables: vec![],
        };
        let diff = unified_diff("support", &version(1, "Hello"), &version(2, "Hi"));
        assert!(diff.starts_with("--- support@1\n+++ support@2\n@@"), "{diff}");
        assert!(diff.contains("\n-Hello\n+Hi\n"), "{diff}");
        assert_eq!(unified_diff("support", &version(1, "Hello"), &version(2, "Hello")), "");
    }
}
