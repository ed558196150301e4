//! `NAME@REF`: how requests, the CLI and the gRPC API name a prompt version. REF is a version number (`3`),
//! `latest`, or a label (`production`); a bare `NAME` leaves the choice to the caller ([`RefKind::Default`]):
//! the gateway reads it as `production`, `GetPrompt` as `latest`.
use super::{check_label, check_name, PromptError};
use std::fmt;

/// The ref that means the newest version.
pub const LATEST: &str = "latest";
/// The label a request's bare `NAME` resolves to.
pub const PRODUCTION: &str = "production";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefKind {
    Version(u32),
    Latest,
    Label(String),
    /// No `@REF` was given.
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub name: String,
    pub kind: RefKind,
}

impl PromptRef {
    /// Parses `NAME`, `NAME@3`, `NAME@latest` or `NAME@LABEL`.
    pub fn parse(text: &str) -> Result<Self, PromptError> {
        let (name, reference) = match text.split_once('@') {
            Some((name, reference)) => (name, Some(reference)),
            None => (text, None),
        };
        check_name("prompt name", name)?;
        let kind = match reference {
            None => RefKind::Default,
            Some(reference) => parse_ref(reference)?,
        };
        Ok(Self { name: name.to_string(), kind })
    }

    /// `kind` with the caller's meaning of a bare name filled in.
    pub fn or_default(&self, default: RefKind) -> RefKind {
        match &self.kind {
            RefKind::Default => default,
            other => other.clone(),
        }
    }
}

/// Parses what follows `@`: a version number (from 1), `latest` or a label.
pub fn parse_ref(reference: &str) -> Result<RefKind, PromptError> {
    if reference == LATEST {
        return Ok(RefKind::Latest);
    }
    if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_digit()) {
        return match reference.parse::<u32>() {
            Ok(version) if version > 0 => Ok(RefKind::Version(version)),
            _ => Err(PromptError::Invalid(format!(
                "version {reference:?} is not a version number (versions count from 1)"
            ))),
        };
    }
    check_label(reference).map_err(|_| {
        let shown: String = reference.chars().take(super::limits::MAX_NAME_BYTES).collect();
        PromptError::Invalid(format!(
            "ref {shown:?} is not a version number, `latest` or a label (1 to 64 bytes of letters, digits, `_`, `.`, `-`)"
        ))
    })?;
    Ok(RefKind::Label(reference.to_string()))
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(version) => write!(f, "{version}"),
            Self::Latest => f.write_str(LATEST),
            Self::Label(label) => f.write_str(label),
            Self::Default => Ok(()),
        }
    }
}

impl fmt::Display for PromptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RefKind::Default => f.write_str(&self.name),
            kind => write!(f, "{}@{kind}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse() {
        let parsed = |text: &str| PromptRef::parse(text).expect(text);
        assert_eq!(parsed("support@3").kind, RefKind::Version(3));
        assert_eq!(parsed("support@latest").kind, RefKind::Latest);
        assert_eq!(parsed("support@production").kind, RefKind::Label("production".into()));
        assert_eq!(parsed("support").kind, RefKind::Default);
        assert_eq!(parsed("support").name, "support");
        assert_eq!(parsed("support@staging").to_string(), "support@staging");
        assert_eq!(
            parsed("support").or_default(RefKind::Label(PRODUCTION.into())),
            RefKind::Label("production".into())
        );
    }

    #[test]
    fn hostile_refs_are_refused_with_a_reason() {
        for bad in ["", "@3", "support@", "support@0", "support@99999999999", "a@b@c", "sup port@1", "x@prod uction"] {
            assert!(PromptRef::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("support@{}", "l".repeat(65));
        let message = PromptRef::parse(&long).expect_err("too long").to_string();
        assert!(message.contains("not a version number, `latest` or a label"), "{message}");
        let zero = PromptRef::parse("support@0").expect_err("zero").to_string();
        assert!(zero.contains("count from 1"), "{zero}");
    }
}
