//! The prompt registry: named prompts with immutable versions (chat message templates, default parameters, an
//! optional model), movable labels pointing at a version, and an audit of every push and label move, kept in
//! `state.db`. The gateway resolves `NAME@REF` through an in-memory cache ([`registry`]) and renders it with
//! minijinja ([`render`]); the gRPC `PromptService` writes through the same registry.
pub mod model;
pub mod refs;
pub mod registry;
pub mod render;
mod store;

pub use model::{AuditAction, AuditEntry, Gate, NewVersion, PromptMessage, PromptSummary, PromptVersion};
pub use refs::{PromptRef, RefKind};
pub use registry::PromptRegistry;
pub use render::Rendered;

/// Bounds on what a client or an operator may store or send (hostile input): past them, a refusal that names
/// the bound.
pub mod limits {
    /// Prompt names and labels.
    pub const MAX_NAME_BYTES: usize = 64;
    pub const MAX_MESSAGES: usize = 32;
    /// Templates, parameters and model of one version together.
    pub const MAX_VERSION_BYTES: usize = 64 * 1024;
    pub const MAX_VERSIONS: u32 = 1_000;
    pub const MAX_PROMPTS: usize = 1_000;
    pub const MAX_LABELS_PER_PROMPT: usize = 32;
    pub const MAX_PARAMETERS: usize = 32;
    /// Same as the gateway's bound on a request's `model`.
    pub const MAX_MODEL_BYTES: usize = 256;
    /// Who pushed or moved a label.
    pub const MAX_BY_BYTES: usize = 128;
    pub const MAX_VARIABLES: usize = 64;
    /// Names and values of a request's variables together.
    pub const MAX_VARIABLES_BYTES: usize = 64 * 1024;
    /// All rendered messages of one request together.
    pub const MAX_RENDERED_BYTES: usize = 256 * 1024;
    /// Audit entries kept per prompt (the oldest go first).
    pub const MAX_AUDIT_PER_PROMPT: usize = 10_000;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    /// A name, label, ref, version or its content breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error("no prompt named `{0}` (see `llmopsctl prompts list`)")]
    NoSuchPrompt(String),
    #[error("prompt `{name}` has no label `{label}` (its labels: {known})")]
    NoSuchLabel { name: String, label: String, known: String },
    #[error("prompt `{name}` has no version {version} (its versions: 1 to {latest})")]
    NoSuchVersion { name: String, version: u32, latest: u32 },
    /// A count bound (prompts, versions, labels) would be passed.
    #[error("{0}")]
    Full(String),
    /// Rendering failed: a missing variable or a template error at run time.
    #[error("{message}")]
    Render { message: String, variable: Option<String> },
    #[error("prompt store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for PromptError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// Checks a prompt name or label: 1 to 64 bytes of `[a-zA-Z0-9_.-]`.
pub fn check_name(what: &str, name: &str) -> Result<(), PromptError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > limits::MAX_NAME_BYTES || !name.chars().all(allowed) {
        let shown: String = name.chars().take(limits::MAX_NAME_BYTES).collect();
        return Err(PromptError::Invalid(format!(
            "{what} {shown:?} must be 1 to {} bytes of letters, digits, `_`, `.` and `-`",
            limits::MAX_NAME_BYTES
        )));
    }
    Ok(())
}

/// Checks a label: a name that is neither all digits (a version number) nor `latest`.
pub fn check_label(label: &str) -> Result<(), PromptError> {
    check_name("label", label)?;
    if label.bytes().all(|b| b.is_ascii_digit()) || label == refs::LATEST {
        return Err(PromptError::Invalid(format!(
            "label {label:?} is reserved: all-digit refs are version numbers and `latest` is the newest version"
        )));
    }
    Ok(())
}

/// Who made a change, as the audit keeps it: the client's claim (bounded, printable; `local` when it gave
/// none), and the uid the kernel reports for a Unix-socket peer, which the client cannot choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author(String);

impl Author {
    pub fn new(claim: &str, peer_uid: Option<u32>) -> Result<Self, PromptError> {
        let claim = claim.trim();
        if claim.len() > limits::MAX_BY_BYTES || claim.chars().any(char::is_control) {
            return Err(PromptError::Invalid(format!(
                "`by` must be at most {} bytes without control characters",
                limits::MAX_BY_BYTES
            )));
        }
        let claim = if claim.is_empty() { "local" } else { claim };
        Ok(Self(match peer_uid {
            Some(uid) => format!("{claim} (uid {uid})"),
            None => claim.to_string(),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_bounded() {
        assert!(check_name("prompt name", "support.v2_en-GB").is_ok());
        assert!(check_name("prompt name", &"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a@b", "ü", "a/b", "a\nb"] {
            assert!(check_name("prompt name", bad).is_err(), "{bad:?}");
        }
        let long = check_name("prompt name", &"a".repeat(65)).expect_err("too long").to_string();
        assert!(long.contains("1 to 64 bytes"), "{long}");
        assert!(check_label("production").is_ok());
        assert!(check_label("v2").is_ok());
        assert!(check_label("2").is_err(), "a version number, not a label");
        assert!(check_label("latest").is_err());
    }

    #[test]
    fn authors_are_bounded_and_default_to_local() {
        let author = |claim: &str, uid| Author::new(claim, uid).map(|a| a.as_str().to_string());
        assert_eq!(author("", None).expect("empty"), "local");
        assert_eq!(author(" alice ", Some(1000)).expect("alice"), "alice (uid 1000)");
        assert!(author(&"x".repeat(129), None).is_err());
        assert!(author("a\u{1b}[31m", None).is_err());
    }
}
